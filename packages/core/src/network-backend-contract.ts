/**
 * The contract every `NetworkBackend` must pass, as a reusable vitest suite.
 * A backend's own test file calls `describeNetworkBackendContract` with a
 * factory for a fresh backend and a spec that attaches in the test's sandbox
 * (a network namespace the test made, a temp state dir), plus a probe of what
 * the backend may leave on the host. Plugin authors run it against theirs the
 * same way. It checks what the supervisor relies on: `validate` is pure and
 * reports problems as `{path, value, expected}`; `podPorts`, when present,
 * names TCP or UDP ports and touches nothing; `probe`, when present, leaves
 * nothing behind and names a fix for what is not ok; `detach` is idempotent and
 * safe before any attach or after a crash; `attach` hands back NICs qemu can
 * use, and after `detach` the host is as it was. A subject that offers
 * `createWithRunner` is also aborted in the middle of attach (right after one
 * of its commands returns): attach must throw and leave nothing behind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SilentLogger } from './logger.js';
import type { NetworkAttachSpec, NetworkAttachment, NetworkBackend, NetworkHooks, PluginWarning } from './ports.js';
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from './process-runner.js';

export interface NetworkBackendContractSubject {
  /** A new backend instance; called more than once per test (a second instance plays a restarted podvisor). */
  create: () => NetworkBackend;
  /**
   * Optional: a new backend like `create`'s, whose commands go through
   * `wrap(runner)`, `runner` being the ProcessRunner `create` gives it (the
   * outermost one, e.g. a `NetnsProcessRunner`). With it, the kit counts the
   * commands (`run` and `spawn`) of a clean attach, then aborts `spec.signal`
   * right after the first, the middle and the second-to-last of them returns,
   * each in a fresh attach, and checks that attach throws and leaves nothing
   * behind (a SIGTERM while the network is set up). An attach may return only
   * when it started no command after the abort (it had nothing left to stop);
   * a detach must then clean up.
   */
  createWithRunner?: (wrap: (runner: ProcessRunner) => ProcessRunner) => NetworkBackend;
  /** A spec that attaches in the sandbox: state and disk dirs of its own, settings that work there. */
  spec: NetworkAttachSpec;
  /**
   * What the backend has left on the host (links, rules, processes, files), as
   * strings; `[]` when the host is as before attach. Compared before and after.
   */
  leftovers: () => Promise<string[]>;
  /** A spec change that `validate` must refuse (merged into `spec`, e.g. resolved `settings` holding a bad value), and the problem path it must name. */
  invalid?: { spec: Partial<NetworkAttachSpec>; path: string };
  /** Removes the sandbox; runs after every test, even a failed one. */
  cleanup: () => Promise<void>;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const NIC_KINDS = ['tap', 'tap-fd', 'stream', 'user'];

/**
 * A ProcessRunner that passes everything to `inner`, keeps the argv of each
 * command (`run` and `spawn`) started while `counting`, and aborts `cut.controller`
 * as soon as command number `cut.after` (1-based) has returned or thrown, before
 * the backend sees its result.
 */
class CountingRunner implements ProcessRunner {
  readonly commands: string[] = [];
  /** The commands started once the cut has aborted the signal. */
  readonly afterCut: string[] = [];
  counting = true;
  cut: { after: number; controller: AbortController } | undefined;

  constructor(private readonly inner: ProcessRunner) {}

  private async counted<T>(argv: string, go: () => Promise<T>): Promise<T> {
    if (!this.counting) return go();
    if (this.cut?.controller.signal.aborted === true) this.afterCut.push(argv);
    this.commands.push(argv);
    const n = this.commands.length;
    try {
      return await go();
    } finally {
      if (this.cut !== undefined && n === this.cut.after) this.cut.controller.abort(new Error(`contract: aborted after command ${n} (${argv})`));
    }
  }

  // Forwards `file` as it comes, like NetnsProcessRunner (the spawned-binaries scan knows `file`).
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.counted([file, ...args].join(' '), () => this.inner.run(file, args, options));
  }
  spawn(file: string, args: readonly string[], options: SpawnOptions): Promise<ChildHandle> {
    return this.counted([file, ...args].join(' '), () => this.inner.spawn(file, args, options));
  }
  children(): readonly ChildHandle[] {
    return this.inner.children();
  }
  ownedPids(): ReadonlySet<number> {
    return this.inner.ownedPids();
  }
  stopAll(graceMs: number): Promise<void> {
    return this.inner.stopAll(graceMs);
  }
}

/** Where the kit aborts an attach of `n` commands: after the first, the middle and the second-to-last (1-based, each once; none when `n < 2`). */
export function abortCutPoints(n: number): number[] {
  return [...new Set([1, Math.ceil(n / 2), n - 1])].filter((k) => k >= 1 && k <= n - 1).sort((a, b) => a - b);
}

function recordingHooks(): NetworkHooks & { warnings: PluginWarning[] } {
  const warnings: PluginWarning[] = [];
  return { log: new SilentLogger(), warnings, warn: (w) => warnings.push(w), notice: () => undefined };
}

/** Registers the `NetworkBackend` contract tests under `describe(name)`. */
export function describeNetworkBackendContract(name: string, make: () => Promise<NetworkBackendContractSubject>): void {
  describe(`NetworkBackend contract: ${name}`, () => {
    let subject: NetworkBackendContractSubject;
    let attached: NetworkBackend[] = [];

    beforeEach(async () => {
      subject = await make();
      attached = [];
    });

    afterEach(async () => {
      for (const b of attached) await b.detach(subject.spec).catch(() => undefined);
      await subject.cleanup();
    });

    it('has a name and a pure validate that accepts the sandbox spec', () => {
      const backend = subject.create();
      expect(typeof backend.name).toBe('string');
      expect(backend.name).not.toBe('');
      expect(backend.validate(subject.spec)).toEqual([]);
      expect(backend.validate(subject.spec)).toEqual([]);
    });

    it('reports a bad setting as {path, value, expected}, naming it', () => {
      if (subject.invalid === undefined) return;
      const problems = subject.create().validate({ ...subject.spec, ...subject.invalid.spec });
      expect(problems.length).toBeGreaterThan(0);
      for (const p of problems) {
        expect(typeof p.path).toBe('string');
        expect(typeof p.expected).toBe('string');
      }
      expect(problems.map((p) => p.path)).toContain(subject.invalid.path);
    });

    it('declares prerequisites without touching the host', async () => {
      const before = await subject.leftovers();
      const needs = subject.create().prerequisites?.(subject.spec) ?? {};
      for (const b of needs.binaries ?? []) expect(b.name).not.toBe('');
      for (const c of needs.capabilities ?? []) expect(c.name).toMatch(/^[A-Z_]+$/);
      expect(await subject.leftovers()).toEqual(before);
    });

    it('declares its own pod ports (podPorts, when it has it) as TCP or UDP ports, without touching the host', async () => {
      const backend = subject.create();
      if (backend.podPorts === undefined) return;
      const before = await subject.leftovers();
      const ports = await backend.podPorts(subject.spec);
      for (const p of ports) {
        expect(['tcp', 'udp']).toContain(p.proto);
        expect(Number.isInteger(p.port) && p.port >= 1 && p.port <= 65535).toBe(true);
      }
      expect(await subject.leftovers()).toEqual(before);
    });

    it('probes the host (probe, when it has it) with findings that name a fix when not ok, and leaves nothing behind', async () => {
      const backend = subject.create();
      if (backend.probe === undefined) return;
      const before = await subject.leftovers();
      const findings = await backend.probe(subject.spec);
      for (const f of findings) {
        expect(f.id).not.toBe('');
        expect(['ok', 'warn', 'fail']).toContain(f.status);
        if (f.status !== 'ok') expect(f.fix ?? '').not.toBe('');
      }
      expect(await subject.leftovers()).toEqual(before);
    });

    it('detach before any attach is a no-op, twice', async () => {
      expect(await subject.leftovers()).toEqual([]);
      const backend = subject.create();
      await backend.detach(subject.spec);
      await backend.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
    });

    it('attach hands back usable NICs; detach leaves the host as it was, and is idempotent', async () => {
      const backend = subject.create();
      const hooks = recordingHooks();
      const attachment: NetworkAttachment = await backend.attach(subject.spec, hooks);
      attached.push(backend);
      const ids = attachment.nics.map((n) => n.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const nic of attachment.nics) {
        expect(nic.id).toMatch(/^[A-Za-z][A-Za-z0-9_.-]*$/);
        expect(nic.mac).toMatch(MAC);
        expect(NIC_KINDS).toContain(nic.backend.kind);
        expect(Array.isArray(nic.addresses)).toBe(true);
      }
      expect(typeof attachment.detail).toBe('object');
      await backend.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
      await backend.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
    });

    it('a new instance cleans up after one that was never detached (a crashed run), and attaches again', async () => {
      const crashed = subject.create();
      await crashed.attach(subject.spec, recordingHooks());
      attached.push(crashed);
      const next = subject.create();
      await next.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
      await next.attach(subject.spec, recordingHooks());
      attached.push(next);
      await next.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
    });

    it('an aborted attach throws and leaves nothing behind', async () => {
      const backend = subject.create();
      const controller = new AbortController();
      controller.abort(new Error('contract: aborted'));
      await expect(backend.attach({ ...subject.spec, signal: controller.signal }, recordingHooks())).rejects.toThrow();
      await backend.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);
    });

    it('aborted in the middle of attach (createWithRunner, when the subject has it), attach throws and leaves nothing behind', async () => {
      const createWithRunner = subject.createWithRunner;
      if (createWithRunner === undefined) return;
      const make = (): { backend: NetworkBackend; runner: CountingRunner } => {
        let wrapped: CountingRunner | undefined;
        const backend = createWithRunner((inner) => (wrapped = new CountingRunner(inner)));
        if (wrapped === undefined) throw new Error('contract: createWithRunner did not call wrap(runner) while creating the backend');
        return { backend, runner: wrapped };
      };
      // A clean attach, counted: its commands are where an abort can land.
      const clean = make();
      attached.push(clean.backend);
      await clean.backend.attach(subject.spec, recordingHooks());
      clean.runner.counting = false;
      const commands = [...clean.runner.commands];
      expect(commands.length, 'a clean attach through createWithRunner runs its commands through wrap(runner)').toBeGreaterThan(0);
      await clean.backend.detach(subject.spec);
      expect(await subject.leftovers()).toEqual([]);

      for (const after of abortCutPoints(commands.length)) {
        const cut = make();
        const controller = new AbortController();
        cut.runner.cut = { after, controller };
        attached.push(cut.backend);
        const outcome = await cut.backend.attach({ ...subject.spec, signal: controller.signal }, recordingHooks()).then(
          () => 'returned',
          (err: unknown) => `threw: ${err instanceof Error ? err.message : String(err)}`,
        );
        cut.runner.counting = false;
        const where = `aborted after command ${after} (${cut.runner.commands[after - 1] ?? 'never run'}; a clean attach runs ${commands.length})`;
        if (outcome === 'returned') {
          // Only right when this attach (its commands may differ from the clean one's: a retry, a node that
          // already exists) had run its last command when the abort came, or ran too few for it to come:
          // nothing was left to stop. The supervisor detaches then, as after any attach.
          expect(cut.runner.afterCut, `${where}: attach returned, yet ran commands after the abort`).toEqual([]);
          await cut.backend.detach(subject.spec);
        } else {
          expect(controller.signal.aborted, `${where}: attach failed without the abort: ${outcome}`).toBe(true);
          // The port: attach throws and leaves nothing behind on failure, before any detach.
          expect(await subject.leftovers(), `${where}: leftovers before any detach`).toEqual([]);
          await subject.create().detach(subject.spec);
        }
        expect(await subject.leftovers(), `${where}: leftovers after a detach`).toEqual([]);
      }
    });
  });
}
