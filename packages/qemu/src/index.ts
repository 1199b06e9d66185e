/**
 * @podvisor/qemu: everything podvisor knows about qemu. The argv builder, the
 * QMP client with its error tree, the accelerator probe, and `QemuVmRuntime`,
 * the implementation of core's `VmRuntime` port, bound by `qemuModule`.
 */
export { buildQemuArgv, planProblems } from './build-qemu-argv.js';
export type { QemuArgv, QemuArgvOptions } from './build-qemu-argv.js';
export { stableUuid } from './stable-uuid.js';
export { QmpClient } from './qmp-client.js';
export type { QmpClientOptions, QmpConnectOptions, QmpConnectionState, QmpGreeting } from './qmp-client.js';
export { QmpError, QmpConnectError, QmpProtocolError, QmpCommandError, QmpInterruptedError } from './qmp-error.js';
export { QmpTranscript } from './qmp-transcript.js';
export type { QmpTranscriptEntry } from './qmp-transcript.js';
export { JsonLineDecoder } from './json-line-decoder.js';
export type { DecodedLine } from './json-line-decoder.js';
export { probeAccelerator, runFirmwareProbe, DEFAULT_PROBE_TIMEOUT_MS } from './accel-probe.js';
export type { AcceleratorProbeOptions, FirmwareProbeOutcome } from './accel-probe.js';
export { kvmProbeFirmware, PROBE_EXIT_STATUS } from './kvm-probe-firmware.js';
export { QemuVmRuntime, QemuRuntimeSettings } from './qemu-vm-runtime.js';
export type { QemuVmHandle } from './qemu-vm-runtime.js';
export { qemuModule, qemuPlugin } from './qemu-module.js';

export { qemuPlugin as default } from './qemu-module.js';
