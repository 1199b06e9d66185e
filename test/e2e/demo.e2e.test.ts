/**
 * `make demo` end to end: test/demo/demo.sh creates a Calico-style pod wired
 * to the real root namespace, boots the test guest in it under podvisor with
 * the NAT bridge, and must remove everything it created when it ends: in CI
 * mode (`DEMO_CHECK=1`, which curls the page from the root namespace and
 * checks it), and when the user presses Ctrl-C in interactive mode (SIGINT to
 * the whole process group, as a terminal sends it). The commands its banner
 * prints for the operator work while it runs.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO, requireBuilt } from './support/podvisor-process.js';

const DEMO = path.join(REPO, 'test/demo/demo.sh');
const POD_SH = path.join(REPO, 'test/support/pod.sh');

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
  facts: Record<string, string>;
}

let name = '';
let child: ReturnType<typeof spawn> | null = null;
/** The demo's temp dir, as soon as it says it: what a failed test must still remove. */
let work = '';

/** Runs demo.sh in a process group of its own; `onStdout` may signal that group, as a terminal does. Resolves when it has exited. */
function runDemo(env: Record<string, string>, onStdout?: (all: string, signal: (s: NodeJS.Signals) => void) => void): Promise<DemoRun> {
  const c = spawn(DEMO, [], { env: { ...process.env, DEMO_NAME: name, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child = c;
  let stdout = '';
  let stderr = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    work = /^DEMO_WORK=(.+)$/m.exec(stdout)?.[1] ?? work;
    onStdout?.(stdout, (s) => process.kill(-(c.pid as number), s));
  });
  c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) =>
    c.once('close', (code) => {
      const facts = Object.fromEntries(stdout.split('\n').filter((l) => l.startsWith('DEMO_')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      resolve({ code, stdout, stderr, facts });
    }),
  );
}

/** Every process whose command line (or, with `environ`, environment) mentions `needle`. */
function processesMentioning(needle: string, environ = false): string[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        const env = environ ? readFileSync(`/proc/${pid}/environ`, 'utf8') : '';
        return cmdline.includes(needle) || env.includes(needle) ? [`${pid}: ${cmdline}`] : [];
      } catch {
        return [];
      }
    });
}

/** Nothing the demo created may remain: namespace, veth, route, resolv.conf, temp dir, processes. */
function expectNothingLeft(run: DemoRun): void {
  const { DEMO_POD: pod, DEMO_POD_IP: podIp, DEMO_VETH: veth, DEMO_WORK: work } = run.facts;
  expect(pod).toBe(name);
  expect(podIp).toMatch(/^10\.244\.\d+\.\d+$/);
  expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toMatch(new RegExp(`^${name}\\b`, 'm'));
  expect(existsSync(`/run/netns/${name}`)).toBe(false);
  expect(existsSync(`/etc/netns/${name}`)).toBe(false);
  expect(execFileSync('ip', ['-br', 'link', 'show'], { encoding: 'utf8' })).not.toContain(veth as string);
  expect(execFileSync('ip', ['-4', 'route', 'show', `${podIp}/32`], { encoding: 'utf8' })).toBe('');
  expect(existsSync(work as string)).toBe(false);
  expect(processesMentioning(work as string, true)).toEqual([]);
}

beforeAll(() => requireBuilt());

afterEach(() => {
  if (child !== null && child.exitCode === null && child.signalCode === null) process.kill(-(child.pid as number), 'SIGKILL');
  child = null;
  // podvisor runs in a session of its own, qemu and dnsmasq in their own groups: each process of this demo, by its work dir.
  if (work !== '') {
    for (const p of processesMentioning(work, true)) process.kill(Number(p.slice(0, p.indexOf(':'))), 'SIGKILL');
    rmSync(work, { recursive: true, force: true });
    work = '';
  }
  // If the demo failed to clean up, do it here (pod.sh destroy is idempotent).
  if (name !== '') execFileSync(POD_SH, ['destroy', name], { stdio: 'ignore' });
});

describe('make demo (test/demo/demo.sh)', () => {
  it('DEMO_CHECK=1 boots the guest in a pod on the root namespace, curls its page from the root namespace, shuts down and removes everything', async () => {
    name = `pvdemoe-${randomBytes(3).toString('hex')}`;
    const run = await runDemo({ DEMO_CHECK: '1' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`check passed: http://${run.facts['DEMO_POD_IP']}/ served the guest's page with instance-id demo-${name}`);
    expect(run.stderr).toContain('podvisor exited with status 0');
    expectNothingLeft(run);
  });

  it('interactive: prints the pod IP, page URL, VNC and control endpoint and the podvisor commands, which work; Ctrl-C shuts the VM down and removes everything', async () => {
    name = `pvdemoe-${randomBytes(3).toString('hex')}`;
    let signalled = false;
    let status: Promise<{ stdout: string; stderr: string }> | null = null;
    let password: Promise<{ stdout: string; stderr: string }> | null = null;
    const run = await runDemo({}, (all, signal) => {
      if (!signalled && all.includes('Ctrl-C shuts the VM down')) {
        signalled = true;
        // What the banner tells the operator to run, while the VM runs; then Ctrl-C.
        const stateDir = /export PODVISOR_STATE_DIR=(\S+)/.exec(all)?.[1] ?? 'missing from the banner';
        const podvisor = (...args: string[]): Promise<{ stdout: string; stderr: string }> => promisify(execFile)(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', PODVISOR_STATE_DIR: stateDir } });
        status = podvisor('ctl', 'status');
        password = podvisor('ctl', 'vnc-password');
        void Promise.allSettled([status, password]).then(() => signal('SIGINT'));
      }
    });
    expect(signalled).toBe(true);
    expect(run.code, run.stderr).toBe(0);
    expect((await (status as unknown as Promise<{ stdout: string }>)).stdout).toMatch(new RegExp(`^${name}  Running\n`));
    expect((await (password as unknown as Promise<{ stdout: string }>)).stdout).toMatch(/^\S{1,8}\n$/);
    expect(run.stdout).toContain(`alias podvisor='node ${CLI}'`);
    // The terminal's SIGINT reached the script only, which stopped podvisor with SIGTERM.
    expect(run.stderr).toContain('shutting the VM down (SIGTERM to podvisor');
    expect(run.stderr).not.toContain('exited by itself');
    const podIp = run.facts['DEMO_POD_IP'] as string;
    expect(run.stdout).toContain(`guest page     curl http://${podIp}/`);
    expect(run.stdout).toContain(`VNC            ${podIp}:5900`);
    expect(run.stdout).toContain(`control        http://${podIp}:5800`);
    expect(run.stdout).toContain(`unix socket ${run.facts['DEMO_WORK']}/disk/.podvisor/control.sock`);
    expect(run.stderr).toContain('podvisor exited with status 0');
    expectNothingLeft(run);
  });
});
