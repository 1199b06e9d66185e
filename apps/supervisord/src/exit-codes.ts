/**
 * Every exit code of the `podvisor` command, in one place (docs/cli.md lists
 * them; a unit test checks the docs against this file). Core returns
 * outcomes; only the app turns an outcome or an error code into an exit code.
 */
import type { LifecycleOutcome } from '@podvisor/core';

/** `podvisor run` (the daemon). The other commands use the same numbers for the same meanings. */
export const ExitCode = {
  /** The VM stopped cleanly: an ACPI shutdown on request, or the guest powered off and the restart policy does not restart it. */
  Ok: 0,
  /** An unexpected internal error. */
  Internal: 1,
  /** Invalid configuration or usage: nothing was started or created. */
  Config: 2,
  /** Preparation failed: image, pet disk, config drive, network or the first qemu launch. */
  Prepare: 3,
  /** PODVISOR_ACCEL=kvm and KVM does not work here. */
  Accelerator: 4,
  /** The VM crashed more often than the restart limit allows. */
  CrashLoop: 5,
  /** qemu failed and the restart policy does not restart it. */
  VmFailed: 6,
  /** The stop needed QMP quit, SIGKILL or giving up (the guest ignored ACPI for its slice of the stop budget), or SIGQUIT asked for it. */
  ShutdownForced: 7,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** `podvisor ctl` and `podvisor console` (docs/api.md). */
export const CtlExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  /** Nothing answers at the socket or URL. */
  Unreachable: 3,
  /** The VM's current state refuses the action (HTTP 409). */
  Refused: 4,
  /** No token, a wrong token, or a token without the role (HTTP 401, 403). */
  NotAuthorized: 5,
  /** Any other error answer (bad request, QMP error, timeout). */
  Failed: 6,
} as const;

/** `podvisor image` (docs/cli.md). */
export const ImageExitCode = { Ok: ExitCode.Ok, Internal: ExitCode.Internal, Usage: ExitCode.Config, Image: ExitCode.Prepare } as const;

/** The exit code of a run's outcome. */
export function runExitCode(outcome: LifecycleOutcome): ExitCode {
  switch (outcome.kind) {
    case 'stopped':
    case 'guest-stopped':
      return ExitCode.Ok;
    case 'forced':
      return ExitCode.ShutdownForced;
    case 'vm-failed':
      return ExitCode.VmFailed;
    case 'crash-loop':
      return ExitCode.CrashLoop;
    case 'failed':
      return failureExitCode(outcome.code);
    default: {
      const never: never = outcome;
      return never;
    }
  }
}

/** The exit code of a failed preparation or command, by error code. */
export function failureExitCode(code: string): ExitCode {
  if (code === 'ERR_ACCEL_KVM_UNAVAILABLE') return ExitCode.Accelerator;
  if (code === 'ERR_INTERNAL') return ExitCode.Internal;
  if (code === 'ERR_CONFIG' || code.startsWith('ERR_PLUGIN')) return ExitCode.Config;
  return ExitCode.Prepare;
}
