/**
 * The ports: what the supervisor needs from the world, and what a plugin
 * implements. Implementations live in other packages; the composition root
 * binds them. Each port documents when a call is allowed, what it throws and
 * what it changes on the host.
 */
import type { Observable } from 'rxjs';
import type { ConfigProblem } from './errors.js';
import type { Accelerator, AcceleratorChoice, VmExitInfo } from './events.js';
import type { Logger } from './logger.js';
import type { PluginSettings } from './plugin-settings.js';

// ---------------------------------------------------------------- prerequisites

/**
 * What an adapter needs from the host before it can work, declared so that
 * `podvisor doctor` (and the preflight of `podvisor run`) checks it before
 * anything is pulled or created, and so that the container image can be
 * checked to hold every binary. Each need says why, in words an operator
 * reads next to the fix.
 */
export interface Prerequisites {
  /** Executables the adapter spawns by name through the `ProcessRunner` (looked up on PATH). */
  binaries?: readonly BinaryNeed[];
  /** Linux capabilities, by their Kubernetes name without `CAP_` (`NET_ADMIN`). */
  capabilities?: readonly CapabilityNeed[];
  /** Device nodes that must open read-write. */
  devices?: readonly DeviceNeed[];
  /** Sysctls of the pod's namespaces. */
  sysctls?: readonly SysctlNeed[];
}

export interface BinaryNeed {
  name: string;
  why: string;
  /** True when the adapter works without it (less well); a missing one is a warning. */
  optional?: boolean;
}

export interface CapabilityNeed {
  name: string;
  why: string;
}

export interface DeviceNeed {
  path: string;
  why: string;
  /** How to give the container the device, e.g. a hostPath CharDevice or a device plugin. */
  fix: string;
  /** True when the adapter falls back without it; a missing one is a warning. */
  optional?: boolean;
}

export interface SysctlNeed {
  name: string;
  value: string;
  why: string;
  /** True when the adapter writes the value itself if it differs and `/proc/sys` is writable. */
  setsItself: boolean;
}

// ---------------------------------------------------------------- network

/** How one guest NIC is backed on the host. */
export type NicBackend =
  /** A tap device that the backend created; qemu opens it by name (`-netdev tap,ifname=`). */
  | { kind: 'tap'; ifname: string }
  /** An already-open tap/macvtap char device; qemu inherits it (`-netdev tap,fd=`), optionally with vhost-net. */
  | { kind: 'tap-fd'; fd: number; vhostFd?: number }
  /**
   * A unix stream socket that a user-space network daemon listens on (passt);
   * qemu connects to it as a client (`-netdev stream,server=off,addr.type=unix`, qemu 7.2 and later).
   */
  | { kind: 'stream'; path: string }
  /** qemu's user-mode network (slirp); for `none`-like local use only. */
  | { kind: 'user' };

export interface VmNic {
  /** The qemu id, e.g. `net0`. Order of the list is the order of NICs in the guest. */
  id: string;
  /** The guest MAC, `52:54:00:..` style, stable across restarts. */
  mac: string;
  backend: NicBackend;
  /** The addresses the guest will have on this NIC (CIDR), for events and `/v1/vm`. */
  addresses: string[];
  /** The MTU the guest's driver starts with (virtio-net `host_mtu`, VIRTIO_NET_F_MTU); unset: the guest's default (1500). */
  mtu?: number;
}

/** Where qemu's VNC server should listen, decided by the network design. */
export type VncListen = { kind: 'tcp'; host: string; display: number } | { kind: 'unix'; path: string };

export interface NetworkAttachSpec {
  /** The VM's name (the pod's hostname). */
  vmName: string;
  /** The state dir: sockets, leases, pid files belong here. */
  stateDir: string;
  /** The VM's own volume, for things that must survive restarts (a persisted MAC). */
  diskDir: string;
  /**
   * The settings the backend's manifest declares, resolved and type-checked
   * (from `network.settings.*` and their variables such as `VM_IP`). A
   * backend never reads the environment itself.
   */
  settings: PluginSettings;
  /**
   * Whether qemu serves VNC, and on which TCP port. Decided once, by podvisor
   * (`NO_VNC`): when enabled, the port is podvisor's and is never forwarded to
   * the VM; when disabled, it is the VM's like any other port.
   */
  vnc: { enabled: boolean; port: number };
  /** The control endpoint's TCP port (kept out of NAT). */
  controlPort: number;
  /**
   * Plugin API 2.1, for the primary backend: the pod ports the stacked
   * backends (`PODVISOR_NETWORK_EXTRA`) listen on themselves, from their
   * `podPorts`, known before the primary attaches. A primary that forwards
   * pod ports to the VM keeps these with the pod (the NAT bridge does not
   * DNAT them). Absent or empty when there are none.
   */
  stackedPorts?: readonly StackedPodPort[];
  /**
   * Aborted when podvisor stops while attaching: attach stops at its next step,
   * throws and leaves nothing behind, as on any failure. An abort after its
   * last step may go unnoticed: podvisor's teardown detaches anyway.
   */
  signal?: AbortSignal;
}

/** A port in the pod's network namespace, e.g. `{ proto: 'udp', port: 51820 }`. */
export interface PodPort {
  proto: 'tcp' | 'udp';
  port: number;
}

/** A pod port a stacked backend listens on, with that backend's name. */
export interface StackedPodPort extends PodPort {
  backend: string;
}

export interface NetworkAttachment {
  nics: VmNic[];
  /** Where VNC should listen; `undefined` lets the supervisor choose. */
  vnc?: VncListen;
  /** Facts for the `NetworkAttached` event and `/v1/vm` (addresses, bridge names...). */
  detail: Record<string, unknown>;
}

/** A warning a plugin wants recorded as a `WarningRaised` event. */
export interface PluginWarning {
  code: string;
  message: string;
  hint?: string;
}

/**
 * A network design. `validate` runs before anything is created, so that bad
 * input is reported together with every other config problem. `attach` is
 * called once per supervisor run, before the first qemu launch; `detach` is
 * idempotent, safe after a crash of a previous run, and is also called before
 * `attach` to remove leftovers.
 */
export interface NetworkBackend {
  readonly name: string;
  /**
   * True when the backend only adds NICs of its own next to a primary
   * backend's and touches nothing the primary owns, so that it may be named
   * in `PODVISOR_NETWORK_EXTRA`. Its NIC ids must not be `net0`.
   */
  readonly stackable?: boolean;
  /** Pure checks across `spec.settings` (each value is already type-checked); returns every problem found. */
  validate(spec: NetworkAttachSpec): ConfigProblem[];
  /** Sets up the host side. Throws a `PodvisorError` and leaves nothing behind on failure. */
  attach(spec: NetworkAttachSpec, hooks: NetworkHooks): Promise<NetworkAttachment>;
  /** Removes everything attach (of this or an earlier, crashed run) created. Never throws for "already gone". */
  detach(spec: NetworkAttachSpec): Promise<void>;
  /**
   * Optional, pure: what `attach` and the processes it starts need from the
   * host (capabilities, devices, sysctls, binaries), for the preflight. May be
   * called before `validate`; must not touch the host.
   */
  prerequisites?(spec: NetworkAttachSpec): Prerequisites;
  /**
   * Optional (plugin API 2.1), for a stackable backend: the pod ports it will
   * listen on itself (WireGuard's UDP port, say). podvisor asks before any
   * backend attaches, and hands them to the primary in `spec.stackedPorts`,
   * so the answer comes from the settings and the files they name, not from
   * `attach`. Must not change the host; should not throw (when a file it
   * needs is unreadable, the ports it uses by default: `attach` reports the
   * file).
   */
  podPorts?(spec: NetworkAttachSpec): Promise<PodPort[]>;
  /**
   * Optional (plugin API 2.2): checks on this host what `prerequisites`
   * cannot declare, by trying it (macvtap: whether the device cgroup lets the
   * container open a macvtap device, whose major the kernel chooses). The
   * preflight (`podvisor doctor`, and `podvisor run` before any pull) calls it
   * after `validate` found no problem. It must leave nothing behind, also when
   * it fails or `spec.signal` aborts, and should not throw: what it cannot do
   * is a `fail` finding naming the fix.
   */
  probe?(spec: NetworkAttachSpec): Promise<ProbeFinding[]>;
}

/** One finding of the preflight (`podvisor doctor` prints them), also what `NetworkBackend.probe` returns. */
export interface ProbeFinding {
  /** Stable id: `capability.NET_ADMIN`, `device./dev/net/tun`, `device.macvtap`... */
  id: string;
  /** What is checked, in words. */
  check: string;
  status: 'ok' | 'warn' | 'fail';
  /** What the probe saw. */
  finding: string;
  /** What to change; set on every `warn` and `fail`. */
  fix?: string;
}

export interface NetworkHooks {
  log: Logger;
  /** Records a `WarningRaised` event. */
  warn(warning: PluginWarning): void;
  /** Records a fact worth an event that is not a warning (e.g. a helper daemon restarted). */
  notice(warning: PluginWarning): void;
}

export const NetworkBackend = Symbol.for('podvisor.NetworkBackend');

// ---------------------------------------------------------------- images

export interface FetchProgress {
  bytes: number;
  total: number | undefined;
}

/** What tells whether a source changed without transferring it (HTTP ETag / Last-Modified, a local file's identity). */
export interface SourceValidators {
  etag?: string;
  lastModified?: string;
  /** A local file's size, mtime and inode. */
  fingerprint?: string;
}

/** One failed attempt that the source retries. */
export interface FetchRetry {
  /** The attempt that failed (1 = the first). */
  attempt: number;
  delayMs: number;
  /** The byte offset the next attempt asks for with `Range` (0 = from the start). */
  resumeFrom: number;
  reason: string;
}

export interface ImageFetchOptions {
  signal?: AbortSignal;
  onProgress?: (p: FetchProgress) => void;
  onRetry?: (r: FetchRetry) => void;
  /** Validators of the content already cached: a source that can tell it is unchanged returns `{notModified: true}` and writes nothing. */
  ifChanged?: SourceValidators;
}

export type ImageFetchResult =
  | { notModified: false; bytes: number; sha256: string; validators: SourceValidators }
  | { notModified: true };

/**
 * The URI schemes it serves (`file`, `http`, `https`); it is bound once per
 * scheme, each an `image-source` provision named after the scheme. Writes the content to `dest`, a
 * new file in the images volume that must not exist yet, fsynced before it
 * resolves. Throws `ERR_IMAGE_*` naming the URI without credentials; on
 * failure `dest` is removed.
 */
export interface ImageSource {
  readonly schemes: readonly string[];
  fetch(uri: string, dest: string, options: ImageFetchOptions): Promise<ImageFetchResult>;
}

export const ImageSource = Symbol.for('podvisor.ImageSource');

/**
 * The image sources by scheme, as the plugin registry has them (every
 * `image-source` provision). The composition root binds it; the image store
 * asks it for the source of a URI's scheme.
 */
export interface ImageSourceCatalog {
  /** The schemes served, sorted. */
  readonly schemes: readonly string[];
  /** The source bound for `scheme`, or undefined. */
  forScheme(scheme: string): ImageSource | undefined;
}

export const ImageSourceCatalog = Symbol.for('podvisor.ImageSourceCatalog');

/** A catalog of a fixed list of sources (each serving its `schemes`), for code that builds an image store by hand. */
export function imageSourceCatalogOf(sources: readonly ImageSource[]): ImageSourceCatalog {
  return {
    schemes: sources.flatMap((s) => s.schemes).sort(),
    forScheme: (scheme) => sources.find((s) => s.schemes.includes(scheme)),
  };
}

export interface BaseImage {
  /** The absolute path of the base content in the images dir. */
  path: string;
  /** The human name (IMG_TARGET). */
  target: string;
  sha256: string;
  bytes: number;
  format: 'qcow2' | 'raw';
  /** True when nothing was transferred or copied. */
  reused: boolean;
}

export interface Overlay {
  path: string;
  /** True when it was created by this call; false when an existing pet disk was kept. */
  created: boolean;
  backingFile: string | null;
  backingFormat: string | null;
  /** The virtual size, after any growth. */
  virtualSize: number;
  /** Set when this call grew the disk (PODVISOR_DISK_SIZE). */
  resizedFrom?: number;
  /** The sha256 of the backing base when it is cache content, else null. */
  backingSha256: string | null;
  /** True when an existing disk is backed by something other than the requested base (a newer base exists). */
  behindBase: boolean;
}

/** Throttled progress of a base download, for events, log lines and a progress bar. */
export interface ImagePullProgress {
  target: string;
  bytes: number;
  total: number | null;
  percent: number | null;
  bytesPerSecond: number;
  done: boolean;
}

export interface EnsureBaseRequest {
  source: string;
  target?: string;
  sha256?: string;
  signal?: AbortSignal;
  onProgress?: (p: ImagePullProgress) => void;
  onRetry?: (r: FetchRetry & { target: string }) => void;
}

export interface RebaseResult {
  path: string;
  fromBacking: string;
  toBacking: string;
  /** False when the disk was already on that base (nothing changed). */
  changed: boolean;
  durationMs: number;
}

export interface ImageStore {
  /**
   * Makes the base available in the images dir. Throws `ERR_IMAGE_*`; on any
   * error nothing is left under the cache's content dir.
   */
  ensureBase(request: EnsureBaseRequest): Promise<BaseImage>;
  /**
   * Creates the pet disk once; never recreates or overwrites an existing one.
   * `sizeBytes` grows it (never shrinks). Throws `ERR_IMAGE_*`.
   */
  ensureOverlay(request: { base: BaseImage | null; diskDir: string; name: string; sizeBytes?: number }): Promise<Overlay>;
  /**
   * Moves the pet disk at `path` onto `base` with a safe `qemu-img rebase`
   * (the guest sees the same data), working on a copy that replaces the disk
   * only once it checks out. The disk must not be in use. Throws `ERR_IMAGE_REBASE_*`.
   */
  rebaseOverlay(request: { path: string; base: BaseImage }): Promise<RebaseResult>;
  /** Optional, pure: the binaries it spawns, for the preflight. */
  prerequisites?(): Prerequisites;
}

export const ImageStore = Symbol.for('podvisor.ImageStore');

// ---------------------------------------------------------------- config drive

/** A config-drive format is the name of a `config-drive` plugin provision (`config-2`, `nocloud`, or a plugin's). */
export type ConfigDriveFormat = string;

export interface ConfigDriveRequest {
  format: ConfigDriveFormat;
  /** Paths of the mounted sources; a missing file means "not given". */
  userDataPath: string;
  metaDataPath: string;
  networkConfigPath?: string;
  /** Defaults when meta-data does not say: the VM's name. */
  defaultInstanceId: string;
  defaultHostname: string;
  /** Where to write the ISO. */
  outputPath: string;
}

export interface ConfigDrive {
  path: string;
  format: ConfigDriveFormat;
  instanceId: string;
  hostname: string;
  bytes: number;
}

export interface ConfigDriveBuilder {
  /** Returns `null` when neither user-data nor meta-data exists. Throws `ERR_CONFIGDRIVE_*` with file and line. */
  build(request: ConfigDriveRequest): Promise<ConfigDrive | null>;
  /** Optional, pure: the binaries it spawns, for the preflight. */
  prerequisites?(): Prerequisites;
}

export const ConfigDriveBuilder = Symbol.for('podvisor.ConfigDriveBuilder');

// ---------------------------------------------------------------- vm runtime

export interface AcceleratorProbeResult {
  requested: AcceleratorChoice;
  selected: Accelerator;
  kvmWorks: boolean;
  probeMs: number;
  /** Why: what the probe saw. */
  detail: string;
}

export interface VmLaunchPlan {
  name: string;
  /** SMBIOS uuid; when absent the runtime derives one from `name`, stable across restarts. */
  uuid?: string;
  accel: Accelerator;
  vcpus: number;
  memoryMb: number;
  disk: { path: string; format: 'qcow2' | 'raw' };
  cdrom: string | null;
  nics: VmNic[];
  vnc: VncListen | null;
  /** Where the QMP unix socket goes. */
  qmpSocket: string;
  /** Extra qemu arguments, appended as given (the container's CMD). */
  extraArgs: string[];
  /** Where qemu writes its pid file. */
  pidFile: string;
}

/** A QMP event as qemu sent it (QMP spec, section 2.5). */
export interface QmpEventMessage {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface VmHandle {
  readonly pid: number;
  readonly argv: readonly string[];
  readonly qmpVersion: string;
  /** The guest's serial console output. */
  readonly serial: NodeJS.ReadableStream | null;
  /** Input to the guest's serial console. */
  readonly serialInput: NodeJS.WritableStream | null;
  /** QMP events, from connection to disconnect. */
  readonly events: Observable<QmpEventMessage>;
  /** Runs one QMP command; throws a QMP error (with the command named) or an interrupted error on disconnect. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  /** Resolves when qemu has exited; `reason` is left for the supervisor to classify. */
  readonly exited: Promise<{ code: number | null; signal: string | null; stderrTail: string }>;
  /** Sends a signal to qemu. */
  kill(signal: NodeJS.Signals): void;
}

export interface VmRuntime {
  /** Decides the accelerator; `kvm` throws `ERR_ACCEL_KVM_UNAVAILABLE` when it does not work. */
  probeAccelerator(choice: AcceleratorChoice, options?: { timeoutMs?: number }): Promise<AcceleratorProbeResult>;
  /** Starts qemu paused, connects QMP, and resumes it. Throws `ERR_QEMU_*` with qemu's stderr. */
  launch(plan: VmLaunchPlan): Promise<VmHandle>;
  /** Optional, pure: the binaries it spawns, for the preflight (the accelerator has its own probe). */
  prerequisites?(): Prerequisites;
}

export const VmRuntime = Symbol.for('podvisor.VmRuntime');

export type { VmExitInfo };
