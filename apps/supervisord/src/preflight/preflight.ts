/**
 * The preflight of a configuration: gathers what its adapters declare they
 * need (`prerequisites` on the network backend, the qemu runtime, the image
 * store, the config drive builder, and the process runner), adds the volumes
 * and the accelerator, probes this host, runs the network backends' own
 * `probe()`, and returns the findings.
 * `podvisor doctor` prints them; `podvisor run` stops on a failing one before
 * anything is pulled. The adapters' declarations are the one list of what
 * podvisor spawns: `spawnableBinaries` exposes it for the container image test.
 */
import { existsSync, statSync } from 'node:fs';
import type { Container } from 'inversify';
import {
  ConfigDriveBuilder,
  ImageStore,
  NetworkBackend,
  PROCESS_RUNNER_PREREQUISITES,
  VmRuntime,
  errorMessage,
  isPodvisorError,
  type NetworkAttachSpec,
  type Prerequisites,
} from '@podvisor/core';
import { ImageCacheLayout, deriveTarget, localPath, schemeOf } from '@podvisor/image-store';
import { buildAppContainer } from '../app-container.js';
import { FIELDS } from '../config/config-fields.js';
import type { PodvisorConfig } from '../config/load-config.js';
import { evaluatePreflight, probeList, type AcceleratorProbe, type ComponentPrerequisites, type PreflightFinding, type PreflightNeeds, type VolumeNeed } from './preflight-model.js';
import { probeHost } from './preflight-probes.js';

/**
 * The documented minimum free space of each volume (docs/cli.md): below it,
 * a warning. The images volume needs the image's size when it is known (a
 * local file not yet cached): less is a failure.
 */
export const PREFLIGHT_MIN_FREE_BYTES = { images: 1024 ** 3, disk: 256 * 1024 ** 2, state: 16 * 1024 ** 2 } as const;

/**
 * The prerequisites each adapter of this container declares, plus the
 * network backends' (the primary, when there is one, and the stacked ones). Resolving an adapter builds its
 * singleton, and `run` binds settings (the VNC password) only after the
 * preflight: the container is restored afterwards, so the adapters built
 * here are dropped and `run` builds them with their final settings.
 */
export function configuredPrerequisites(
  container: Container,
  chosen: Pick<PodvisorConfig, 'vmRuntime' | 'configDriveFormat'>,
  network: NetworkBackend | null,
  spec: NetworkAttachSpec,
  extraNetworks: ReadonlyArray<{ backend: NetworkBackend; spec: NetworkAttachSpec }> = [],
): ComponentPrerequisites[] {
  container.snapshot();
  let declared: [string, Prerequisites | undefined][];
  try {
    declared = [
      ['process runner', PROCESS_RUNNER_PREREQUISITES],
      [chosen.vmRuntime, container.getNamed<VmRuntime>(VmRuntime, chosen.vmRuntime).prerequisites?.()],
      ['image store', container.get<ImageStore>(ImageStore).prerequisites?.()],
      ['config drive', container.getNamed<ConfigDriveBuilder>(ConfigDriveBuilder, chosen.configDriveFormat).prerequisites?.()],
      ...(network === null ? [] : [[network.name, network.prerequisites?.(spec)] as [string, Prerequisites | undefined]]),
      ...extraNetworks.map((e) => [e.backend.name, e.backend.prerequisites?.(e.spec)] as [string, Prerequisites | undefined]),
    ];
  } finally {
    container.restore();
  }
  return declared.filter((d): d is [string, Prerequisites] => d[1] !== undefined).map(([component, prerequisites]) => ({ component, prerequisites }));
}

/** The volumes of `config`, with what each must hold; reads only the image cache's name entry and a local source's size. */
export function volumeNeeds(config: PodvisorConfig): VolumeNeed[] {
  const volumes: VolumeNeed[] = [];
  if (config.imageSource !== undefined) {
    const image = imageNeed(config.imageSource, config.imageTarget, config.imagesDir);
    volumes.push({ role: 'images', path: config.imagesDir, setting: settingName('imagesDir'), why: `${FIELDS.imagesDir.doc}: ${image.why}`, neededBytes: image.bytes, minFreeBytes: image.minFree });
  }
  volumes.push({ role: 'disk', path: config.diskDir, setting: settingName('diskDir'), why: FIELDS.diskDir.doc, neededBytes: null, minFreeBytes: PREFLIGHT_MIN_FREE_BYTES.disk });
  volumes.push({ role: 'state', path: config.stateDir, setting: settingName('stateDir'), why: FIELDS.stateDir.doc, neededBytes: null, minFreeBytes: PREFLIGHT_MIN_FREE_BYTES.state });
  return volumes;
}

/** How an operator sets a path: its environment variable (the YAML key and flag are in docs/configuration.md). */
function settingName(field: 'imagesDir' | 'diskDir' | 'stateDir'): string {
  return FIELDS[field].env?.[0] ?? FIELDS[field].key;
}

function imageNeed(source: string, target: string | undefined, imagesDir: string): { bytes: number | null; minFree: number; why: string } {
  let name = 'the image';
  try {
    name = target ?? deriveTarget(source);
    if (existsSync(new ImageCacheLayout(imagesDir).namePath(name))) return { bytes: null, minFree: 0, why: `${name} is cached already` };
    if (schemeOf(source) === 'file') {
      const bytes = statSync(localPath(source)).size;
      return { bytes, minFree: 0, why: `${name} is copied in from ${localPath(source)}` };
    }
  } catch {
    // An unreadable local source or a bad name is the image store's error to report, with its code.
  }
  return { bytes: null, minFree: PREFLIGHT_MIN_FREE_BYTES.images, why: `the size of ${name} is known only once it is pulled` };
}

export interface PreflightRequest {
  config: PodvisorConfig;
  container: Container;
  network: NetworkBackend | null;
  networkSpec: NetworkAttachSpec;
  /** The stacked network backends, whose prerequisites are checked too. */
  extraNetworks?: ReadonlyArray<{ backend: NetworkBackend; spec: NetworkAttachSpec }>;
  /** Run the bounded KVM probe (doctor). `run` leaves the accelerator to the supervisor, which probes it before any pull. */
  probeAccelerator: boolean;
}

export interface PreflightReport {
  needs: PreflightNeeds;
  findings: PreflightFinding[];
  durationMs: number;
}

/** Gathers the needs, probes the host, evaluates, adds the backends' probes. Never throws for what it finds; leaves nothing on the host. */
export async function runPreflight(request: PreflightRequest): Promise<PreflightReport> {
  const started = performance.now();
  const { config, container } = request;
  const needs: PreflightNeeds = {
    components: configuredPrerequisites(container, config, request.network, request.networkSpec, request.extraNetworks),
    volumes: volumeNeeds(config),
    accelerator: request.probeAccelerator ? config.accel : null,
  };
  const facts = await probeHost(probeList(needs), {
    // Only doctor probes KVM, and it binds nothing afterwards.
    ...(request.probeAccelerator && config.accel !== 'tcg' ? { accelerator: () => probeKvm(container.getNamed<VmRuntime>(VmRuntime, config.vmRuntime), config) } : {}),
  });
  const probed = await backendProbes([...(request.network === null ? [] : [{ backend: request.network, spec: request.networkSpec }]), ...(request.extraNetworks ?? [])]);
  return { needs, findings: [...evaluatePreflight(needs, facts), ...probed], durationMs: Math.round(performance.now() - started) };
}

/**
 * The findings of the network backends' own probes (`NetworkBackend.probe`,
 * plugin API 2.2), in order; a probe that throws is a failing finding naming
 * the backend.
 */
export async function backendProbes(networks: ReadonlyArray<{ backend: NetworkBackend; spec: NetworkAttachSpec }>): Promise<PreflightFinding[]> {
  const findings: PreflightFinding[] = [];
  for (const { backend, spec } of networks) {
    if (backend.probe === undefined) continue;
    try {
      findings.push(...(await backend.probe(spec)));
    } catch (err) {
      findings.push({ id: `probe.${backend.name}`, check: `the ${backend.name} backend's own probe`, status: 'fail', finding: `the probe threw: ${errorMessage(err)}`, fix: `a bug of the ${backend.name} backend: report it with this message` });
    }
  }
  return findings;
}

async function probeKvm(runtime: VmRuntime, config: PodvisorConfig): Promise<AcceleratorProbe> {
  try {
    // `auto` never throws for KVM that does not work; a `kvm` request does, with what the probe saw.
    const r = await runtime.probeAccelerator('auto', { timeoutMs: config.accelProbeTimeoutMs });
    return { selected: r.selected, kvmWorks: r.kvmWorks, detail: r.detail };
  } catch (err) {
    return isPodvisorError(err) ? { error: err.message, ...(err.hint === undefined ? {} : { hint: err.hint }) } : { error: errorMessage(err) };
  }
}

/**
 * Every executable podvisor can spawn, with every built-in plugin loaded:
 * the union of the adapters' `prerequisites` declarations, sorted. The
 * container image must hold each one (optional ones included: they make
 * podvisor work better). Builds a throwaway container; touches nothing.
 */
export async function spawnableBinaries(): Promise<string[]> {
  const { container, registry } = await buildAppContainer({ logLevel: 'error', imagesDir: '/var/lib/podvisor/images', maxVirtualSizeBytes: 1, plugins: [], logSink: { write: () => true } });
  const spec: NetworkAttachSpec = { vmName: 'podvisor', stateDir: '/var/lib/podvisor/disk/.podvisor', diskDir: '/var/lib/podvisor/disk', settings: {}, vnc: { enabled: true, port: 5900 }, controlPort: 5800 };
  const components = [
    ...registry.names('vm-runtime').flatMap((vmRuntime) => registry.names('config-drive').flatMap((configDriveFormat) => configuredPrerequisites(container, { vmRuntime, configDriveFormat }, null, spec))),
    ...registry.names('network-backend').map((name) => {
      const backend = container.getNamed<NetworkBackend>(NetworkBackend, name);
      return { component: name, prerequisites: backend.prerequisites?.(spec) ?? {} };
    }),
  ];
  return [...new Set(components.flatMap((c) => (c.prerequisites.binaries ?? []).map((b) => b.name)))].sort();
}
