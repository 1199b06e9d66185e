/** `podvisor plugins`: lists the loaded plugins and what each provides. */
import { parseArgs } from 'node:util';
import { PLUGIN_API_VERSION, parseLogLevel } from '@podvisor/core';
import { buildAppContainer } from '../app-container.js';
import type { CommandIo } from './run-command.js';
import { reportStartupError } from './run-command.js';
import { ExitCode } from '../exit-codes.js';

const PLUGINS_HELP = `Usage: podvisor plugins [--json]

Lists the plugin API version, the built-in plugins and those named in PODVISOR_PLUGINS:
what each provides (kind:name) and the settings each provision owns.
  --json      one JSON object: {apiVersion, plugins: [{name, apiRange, from, provides}]}
  -h, --help  this help
Exit codes: 0 ok, 2 usage error or a plugin cannot be loaded.
`;

export async function pluginsCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.stderr.write(`podvisor plugins: ${(err as Error).message}\n\n${PLUGINS_HELP}`);
    return ExitCode.Config;
  }
  if (values.help === true) {
    io.stdout.write(PLUGINS_HELP);
    return ExitCode.Ok;
  }
  try {
    const extra = (io.env['PODVISOR_PLUGINS'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    const { registry } = await buildAppContainer({ logLevel: parseLogLevel(io.env['PODVISOR_LOG_LEVEL']) ?? 'warn', imagesDir: '/nonexistent', maxVirtualSizeBytes: 1, plugins: extra });
    const list = registry.list().map((p) => ({ name: p.manifest.name, apiRange: p.manifest.apiRange, from: p.from, provides: p.manifest.provides }));
    if (values.json === true) io.stdout.write(`${JSON.stringify({ apiVersion: PLUGIN_API_VERSION, plugins: list })}\n`);
    else {
      io.stdout.write(`plugin API ${PLUGIN_API_VERSION}\n`);
      for (const p of list) {
        io.stdout.write(`${p.name}\tapi ${p.apiRange}\t${p.provides.map((x) => `${x.kind}:${x.name}`).join(', ')}\t(${p.from})\n`);
        for (const x of p.provides) {
          for (const s of x.settings ?? []) io.stdout.write(`  ${x.kind}:${x.name} ${s.key}${(s.env ?? []).length === 0 ? '' : ` [${(s.env ?? []).join(', ')}]`} (${s.type}${s.default === undefined ? '' : `, default ${JSON.stringify(s.default)}`}): ${s.doc}\n`);
        }
      }
    }
    return ExitCode.Ok;
  } catch (err) {
    return reportStartupError(err, io);
  }
}
