/**
 * `make demo` end to end: test/demo/demo.sh creates a Calico-style pod wired
 * to the real root namespace, boots the test guest in it under podvisor with
 * the NAT bridge, and must remove everything it created when it ends: in CI
 * mode (`DEMO_CHECK=1`, which curls the page from the root namespace and
 * checks it), and when the user presses Ctrl-C (SIGINT) in interactive mode.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO, requireBuilt } from './support/podvisor-process.js';

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

/** Runs demo.sh; `onStdout` may signal it. Resolves when it has exited. */
function runDemo(env: Record<string, string>, onStdout?: (all: string, signal: (s: NodeJS.Signals) => void) => void): Promise<DemoRun> {
  const c = spawn(DEMO, [], { env: { ...process.env, DEMO_NAME: name, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child = c;
  let stdout = '';
  let stderr = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    onStdout?.(stdout, (s) => c.kill(s));
  });
  c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) =>
    c.once('close', (code) => {
      const facts = Object.fromEntries(stdout.split('\n').filter((l) => l.startsWith('DEMO_')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      resolve({ code, stdout, stderr, facts });
    }),
  );
}

/** Every process whose command line mentions `needle`. */
function processesMentioning(needle: string): string[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        return cmdline.includes(needle) ? [`${pid}: ${cmdline}`] : [];
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
  expect(processesMentioning(work as string)).toEqual([]);
}

beforeAll(() => requireBuilt());

afterEach(() => {
  if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = null;
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

  it('interactive: prints the pod IP, page URL, VNC and control endpoint, and Ctrl-C shuts the VM down and removes everything', async () => {
    name = `pvdemoe-${randomBytes(3).toString('hex')}`;
    let signalled = false;
    const run = await runDemo({}, (all, signal) => {
      if (!signalled && all.includes('Ctrl-C shuts the VM down')) {
        signalled = true;
        signal('SIGINT');
      }
    });
    expect(signalled).toBe(true);
    expect(run.code, run.stderr).toBe(0);
    const podIp = run.facts['DEMO_POD_IP'] as string;
    expect(run.stdout).toContain(`guest page     curl http://${podIp}/`);
    expect(run.stdout).toContain(`VNC            ${podIp}:5900`);
    expect(run.stdout).toContain(`control        http://${podIp}:5800`);
    expect(run.stdout).toContain(`unix socket ${run.facts['DEMO_WORK']}/disk/.podvisor/control.sock`);
    expect(run.stderr).toContain('podvisor exited with status 0');
    expectNothingLeft(run);
  });
});
