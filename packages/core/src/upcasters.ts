/**
 * Read-time upcasting of stored events. Rows are never rewritten: an event keeps
 * the `schemaVersion` it was appended with, and readers get it lifted step by
 * step (`fromVersion` to `fromVersion + 1`) up to the current version listed in
 * `EVENT_SCHEMA_VERSIONS`. Every event is at version 1 today, so the shipped
 * list `UPCASTERS` is empty; a shape change adds a version bump there plus one
 * upcaster here. Events this podvisor cannot interpret, because a newer podvisor
 * wrote them (an unknown type, or a version above the current one), pass through
 * unchanged with their stored version, so that old readers never crash on new
 * logs; consumers must ignore types they do not know.
 */
import { PodvisorError } from './errors.js';
import { EVENT_SCHEMA_VERSIONS } from './events.js';

/** One step of one event type's history: data at `fromVersion` to data at `fromVersion + 1`. */
export interface Upcaster {
  readonly type: string;
  readonly fromVersion: number;
  /** Pure: returns the data at the next version and never mutates its input. */
  up(data: unknown): unknown;
}

/** The upcasters podvisor ships. Add one for every `EVENT_SCHEMA_VERSIONS` bump. */
export const UPCASTERS: readonly Upcaster[] = [];

export interface UpcasterRegistryOptions {
  /** Defaults to `UPCASTERS`. */
  upcasters?: readonly Upcaster[];
  /** The current version per type; defaults to `EVENT_SCHEMA_VERSIONS`. Tests pass their own. */
  currentVersions?: Readonly<Record<string, number>>;
}

/** The part of an envelope that upcasting reads and rewrites. */
export interface VersionedEvent {
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: unknown;
}

/** Upcasters keyed by `(type, fromVersion)`, and the current version of every known type. */
export class UpcasterRegistry {
  private readonly steps = new Map<string, Upcaster>();
  private readonly current: Readonly<Record<string, number>>;

  /**
   * Throws `ERR_EVENTSTORE_UPCASTER_INVALID` for a step of an unknown type, a
   * `fromVersion` that is not an integer in `[1, current)`, or a type whose steps
   * leave a hole below its current version; `ERR_EVENTSTORE_UPCASTER_DUPLICATE`
   * when two steps share `(type, fromVersion)`.
   */
  constructor(options: UpcasterRegistryOptions = {}) {
    this.current = options.currentVersions ?? EVENT_SCHEMA_VERSIONS;
    const lowest = new Map<string, number>();
    for (const step of options.upcasters ?? UPCASTERS) {
      const current = this.currentVersion(step.type);
      if (current === undefined || !Number.isInteger(step.fromVersion) || step.fromVersion < 1 || step.fromVersion >= current) {
        throw new PodvisorError(
          'ERR_EVENTSTORE_UPCASTER_INVALID',
          `upcaster ${step.type} v${step.fromVersion} does not lead to a known version (current: ${current ?? 'unknown type'})`,
          { hint: 'an upcaster lifts a known event type from a version below its EVENT_SCHEMA_VERSIONS entry' },
        );
      }
      const key = stepKey(step.type, step.fromVersion);
      if (this.steps.has(key)) {
        throw new PodvisorError('ERR_EVENTSTORE_UPCASTER_DUPLICATE', `two upcasters for ${step.type} v${step.fromVersion}`);
      }
      this.steps.set(key, step);
      lowest.set(step.type, Math.min(lowest.get(step.type) ?? step.fromVersion, step.fromVersion));
    }
    for (const [type, from] of lowest) {
      for (let v = from; v < (this.currentVersion(type) ?? from); v++) {
        if (!this.steps.has(stepKey(type, v))) {
          throw new PodvisorError('ERR_EVENTSTORE_UPCASTER_INVALID', `${type} has upcasters from v${from} but none for v${v}`, {
            hint: `add the ${type} v${v} -> v${v + 1} upcaster`,
          });
        }
      }
    }
  }

  /** The version new events of `type` are written at; undefined for a type this podvisor does not know. */
  currentVersion(type: string): number | undefined {
    return Object.hasOwn(this.current, type) ? this.current[type] : undefined;
  }

  /**
   * The event lifted to its type's current version: the same object when there
   * is nothing to do (current already, unknown type, or a newer version), else a
   * copy with the new `data` and `schemaVersion`. Throws
   * `ERR_EVENTSTORE_UPCASTER_MISSING` when a step between its version and the
   * current one is not registered.
   */
  upcast<E extends VersionedEvent>(event: E): E {
    const target = this.currentVersion(event.type);
    if (target === undefined || event.schemaVersion >= target) return event;
    let data = event.data;
    for (let v = event.schemaVersion; v < target; v++) {
      const step = this.steps.get(stepKey(event.type, v));
      if (step === undefined) {
        throw new PodvisorError('ERR_EVENTSTORE_UPCASTER_MISSING', `no upcaster for ${event.type} v${v} (current is v${target})`, {
          hint: `register an upcaster for ${event.type} from v${v}; stored events are never rewritten`,
        });
      }
      data = step.up(data);
    }
    return { ...event, schemaVersion: target, data };
  }
}

function stepKey(type: string, fromVersion: number): string {
  return `${type}@${fromVersion}`;
}
