/**
 * Preparing a VM, one effect of the lifecycle: the accelerator probe, the
 * base image, the pet disk (create, resize, rebase), the config drive and the
 * network, each step recording what it found. It ends with the launch plan,
 * or throws. An abort (a stop) is checked between steps and passed to the
 * image pull. The runner owns the result, including the network attachment it
 * must detach at teardown, even when attaching failed halfway.
 */
import path from 'node:path';
import type { Clock } from './clock.js';
import { PodvisorError, redactUrl } from './errors.js';
import type { DomainEvent } from './events.js';
import type { Logger } from './logger.js';
import type { NetworkAttachSpec, NetworkAttachment, NetworkBackend, VmLaunchPlan, VmNic, VncListen } from './ports.js';
import type { SupervisorDeps, SupervisorSettings } from './supervisor.js';

export interface VmPreparationHooks {
  record(events: DomainEvent[]): void;
  /** Called just before the network backend is asked to attach: from then on, teardown must detach. */
  onNetworkAttaching(): void;
  signal: AbortSignal;
  log: Logger;
  clock: Clock;
}

export interface PreparedVm {
  plan: VmLaunchPlan;
  network: NetworkAttachment | null;
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new PodvisorError('ERR_SUPERVISOR_STOPPING', 'stopping');
}

/**
 * Where qemu serves VNC: nowhere when VNC is off (`NO_VNC`); else where the
 * network design says (a unix socket once the VM owns the pod's address), or
 * on every address at the configured port.
 */
export function vncListen(vnc: SupervisorSettings['vnc'], network: Pick<NetworkAttachment, 'vnc'> | null): VncListen | null {
  return !vnc.enabled ? null : (network?.vnc ?? { kind: 'tcp', host: '0.0.0.0', display: vnc.port - 5900 });
}

/** Runs every preparation step. Throws the first step's error (coded), or the abort reason. */
export async function prepareVm(s: SupervisorSettings, d: SupervisorDeps, h: VmPreparationHooks): Promise<PreparedVm> {
  const { record } = h;
  const probe = await d.runtime.probeAccelerator(s.accel, { timeoutMs: s.accelProbeTimeoutMs });
  record([{ type: 'AcceleratorProbed', data: { ...probe } }]);
  if (probe.requested === 'auto' && probe.selected === 'tcg' && !probe.kvmWorks) {
    record([{ type: 'AcceleratorFellBack', data: { from: 'kvm', to: 'tcg', reason: probe.detail } }]);
  }
  throwIfAborted(h.signal);

  let base = null;
  if (s.image.source !== null) {
    const source = redactUrl(s.image.source);
    // Progress every 5 s of a long pull, and the final figures: a quick pull records one event.
    let lastProgressAt = h.clock.now().getTime();
    base = await d.images.ensureBase({
      source: s.image.source,
      ...(s.image.target === undefined ? {} : { target: s.image.target }),
      ...(s.image.sha256 === undefined ? {} : { sha256: s.image.sha256 }),
      signal: h.signal,
      onProgress: (p) => {
        const now = h.clock.now().getTime();
        if (!p.done && now - lastProgressAt < 5000) return;
        lastProgressAt = now;
        record([{ type: 'ImagePullProgressed', data: { source, target: p.target, bytes: p.bytes, total: p.total, percent: p.percent, bytesPerSecond: p.bytesPerSecond } }]);
      },
      onRetry: (r) => record([{ type: 'ImagePullRetried', data: { source, ...r } }]),
    });
    record([{ type: 'ImageImported', data: { source, target: base.target, path: base.path, bytes: base.bytes, sha256: base.sha256, reused: base.reused } }]);
  }
  throwIfAborted(h.signal);
  const overlay = await d.images.ensureOverlay({
    base,
    diskDir: s.diskDir,
    name: s.vmName,
    ...(s.diskSizeBytes === undefined ? {} : { sizeBytes: s.diskSizeBytes }),
  });
  record([
    overlay.created
      ? { type: 'DiskCreated', data: { path: overlay.path, backingFile: overlay.backingFile ?? '', backingFormat: overlay.backingFormat ?? '' } }
      : { type: 'DiskReused', data: { path: overlay.path, backingFile: overlay.backingFile } },
  ]);
  if (overlay.resizedFrom !== undefined) {
    record([{ type: 'DiskResized', data: { path: overlay.path, fromBytes: overlay.resizedFrom, toBytes: overlay.virtualSize } }]);
  }
  if (base !== null && overlay.behindBase) {
    // The pet keeps booting on the base it was made from until a rebase is asked for.
    record([
      {
        type: 'ImageNewerBaseAvailable',
        data: { disk: overlay.path, currentBacking: overlay.backingFile ?? '', currentSha256: overlay.backingSha256, newerPath: base.path, newerSha256: base.sha256, target: base.target },
      },
    ]);
    if (s.image.rebase === true) {
      throwIfAborted(h.signal);
      const r = await d.images.rebaseOverlay({ path: overlay.path, base });
      record([{ type: 'DiskRebased', data: { path: r.path, fromBacking: r.fromBacking, toBacking: r.toBacking, sha256: base.sha256, durationMs: r.durationMs } }]);
    }
  }

  const drive = await d.configDrive.build({
    format: s.configDrive.format,
    userDataPath: s.configDrive.userDataPath,
    metaDataPath: s.configDrive.metaDataPath,
    ...(s.configDrive.networkConfigPath === undefined ? {} : { networkConfigPath: s.configDrive.networkConfigPath }),
    defaultInstanceId: s.vmName,
    defaultHostname: s.vmName,
    outputPath: path.join(s.stateDir, 'configdrive.iso'),
  });
  if (drive !== null) {
    record([{ type: 'ConfigDriveBuilt', data: { path: drive.path, format: drive.format, instanceId: drive.instanceId, bytes: drive.bytes } }]);
  }
  throwIfAborted(h.signal);

  let network: NetworkAttachment | null = null;
  const nics: VmNic[] = [];
  const extras = d.extraNetworks ?? [];
  if (d.network !== null || extras.length > 0) h.onNetworkAttaching();
  const attach = async (backend: NetworkBackend, spec: NetworkAttachSpec): Promise<NetworkAttachment> => {
    const attached = await backend.attach(spec, {
      log: h.log.child({ name: backend.name }),
      warn: (w) => record([{ type: 'WarningRaised', data: { ...w } }]),
      notice: (w) => record([{ type: 'WarningRaised', data: { ...w } }]),
    });
    record([
      {
        type: 'NetworkAttached',
        data: { backend: backend.name, nics: attached.nics.map((n) => ({ id: n.id, mac: n.mac, addresses: n.addresses })), detail: attached.detail },
      },
    ]);
    return attached;
  };
  if (d.network !== null) {
    network = await attach(d.network, s.networkSpec);
    nics.push(...network.nics);
  }
  // Stacked backends add their NICs after the primary's, in the order configured.
  for (const extra of extras) {
    throwIfAborted(h.signal);
    nics.push(...(await attach(extra.backend, extra.spec)).nics);
  }
  const vnc = vncListen(s.vnc, network);
  return {
    network,
    plan: {
      name: s.vmName,
      accel: probe.selected,
      vcpus: s.vcpus,
      memoryMb: s.memoryMb,
      disk: { path: overlay.path, format: 'qcow2' },
      cdrom: drive?.path ?? null,
      nics,
      vnc,
      qmpSocket: path.join(s.stateDir, 'qmp.sock'),
      extraArgs: s.extraArgs,
      pidFile: path.join(s.stateDir, 'qemu.pid'),
    },
  };
}
