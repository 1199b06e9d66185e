/**
 * `podvisor doctor`: checks that this container can run the configuration
 * that `podvisor run` would use (same flags, environment and YAML): the
 * capabilities, devices, sysctls and binaries that the chosen backends
 * declare, the volumes, and KVM through the bounded probe. Prints each
 * finding with its fix. Pulls nothing and creates nothing that outlives it.
 */
import { parseArgs } from 'node:util';
import { ExitCode } from '../exit-codes.js';
import { formatFindings, worstStatus } from '../preflight/preflight-model.js';
import { runPreflight } from '../preflight/preflight.js';
import { DEFAULT_CONFIG_FILE, RUN_FLAGS, reportStartupError, resolveRunSetup, type CommandIo, type RunSetup } from './run-command.js';

export const DOCTOR_HELP = `Usage: podvisor doctor [--json] [run's flags]

Checks, before anything is pulled, that this container can run the VM that
'podvisor run' with the same flags, environment and YAML (--config, default
${DEFAULT_CONFIG_FILE} if it exists) would run:
  - the capabilities the chosen network backends need (CapEff and CapBnd);
  - the devices it needs (/dev/net/tun; /dev/vhost-net, optional);
  - the network backends' own probes (macvtap: a throwaway macvtap's tap
    device opens read-write, i.e. the device-cgroup rule c MAJOR:* rwm);
  - sysctls (net.ipv4.ip_forward: already 1, or /proc/sys writable);
  - the images, disk and state volumes: writable, with free space for the image;
  - every binary the backends, qemu, the image store and the config drive spawn;
  - KVM, through the bounded probe (PODVISOR_ACCEL=auto: a warning when TCG
    will be used; kvm: a failure).
Each finding that is not ok names its fix. 'podvisor run' performs the same
checks (without the KVM probe) and stops before any pull when one fails.

  --json      one JSON object: {status, network, accel, durationMs, findings: [{id, check, status, finding, fix}]}
  -h, --help  this help

Exit codes: 0 nothing failed (warnings allowed), 2 invalid configuration or
usage, 3 at least one check failed.
`;

export async function doctorCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...RUN_FLAGS, config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.stderr.write(`podvisor doctor: ${(err as Error).message}\n\n${DOCTOR_HELP}`);
    return ExitCode.Config;
  }
  if (parsed.values.help === true) {
    io.stdout.write(DOCTOR_HELP);
    return ExitCode.Ok;
  }
  const { json, help: _help, ...flags } = parsed.values;
  let setup: RunSetup;
  try {
    setup = await resolveRunSetup(flags as Record<string, string | undefined>, parsed.positionals, io);
  } catch (err) {
    return reportStartupError(err, io);
  }
  const { config, app, network, networkSpec, extraNetworks } = setup;
  const report = await runPreflight({ config, container: app.container, network, networkSpec, extraNetworks, probeAccelerator: true });
  const status = worstStatus(report.findings);
  if (json === true) {
    io.stdout.write(`${JSON.stringify({ status, network: config.network, accel: config.accel, durationMs: report.durationMs, findings: report.findings })}\n`);
  } else {
    const counts = (['fail', 'warn', 'ok'] as const).map((s) => `${report.findings.filter((f) => f.status === s).length} ${s}`).join(', ');
    io.stdout.write(`podvisor doctor: network ${[config.network, ...Object.keys(config.networkExtra)].join(' + ')}, accelerator ${config.accel}, VM ${config.name}\n\n${formatFindings(report.findings)}\n${status === 'fail' ? 'FAILED' : 'passed'}: ${counts}\n`);
  }
  return status === 'fail' ? ExitCode.Prepare : ExitCode.Ok;
}
