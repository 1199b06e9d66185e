/**
 * One host-changing step of a network backend (create a link,
 * apply rules, start dnsmasq). A failure becomes the step's own coded error,
 * named after what it was doing, unless it is already one of this backend's
 * coded errors; the hint and details of a wrapped coded error are kept.
 */
import { PodvisorError, errorMessage } from '@podvisor/core';

export interface NetworkStep {
  /** The backend's name, first in the message (`nat-bridge: cannot ...`). */
  backend: string;
  /** The prefix of this backend's own codes, e.g. `ERR_NAT_`: errors that carry it pass through. */
  codePrefix: string;
  /** The code for a failure of this step. */
  code: string;
  /** What the step does, e.g. `create the bridge pvbr0`. */
  what: string;
  /** An abort before the step starts throws the signal's reason. */
  signal?: AbortSignal;
}

export async function networkStep<T>(step: NetworkStep, fn: () => Promise<T>): Promise<T> {
  step.signal?.throwIfAborted();
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PodvisorError && err.code.startsWith(step.codePrefix)) throw err;
    const coded = err instanceof PodvisorError ? err : undefined;
    throw new PodvisorError(step.code, `${step.backend}: cannot ${step.what}: ${errorMessage(err)}`, {
      cause: err,
      hint: coded?.hint,
      details: coded?.details,
    });
  }
}
