/** `podvisor plugins`: lists the loaded plugins and what each provides. */
import { parseLogLevel } from '@podvisor/core';
import { buildAppContainer } from '../app-container.js';
import type { CommandIo } from './run-command.js';
import { reportStartupError } from './run-command.js';
import { ExitCode } from '../exit-codes.js';

export async function pluginsCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write('Usage: podvisor plugins [--json]\n\nLists the built-in plugins and those named in PODVISOR_PLUGINS.\nExit codes: 0 ok, 2 a plugin cannot be loaded.\n');
    return ExitCode.Ok;
  }
  try {
    const extra = (io.env['PODVISOR_PLUGINS'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    const { registry } = await buildAppContainer({ logLevel: parseLogLevel(io.env['PODVISOR_LOG_LEVEL']) ?? 'warn', imagesDir: '/nonexistent', maxVirtualSizeBytes: 1, plugins: extra });
    const list = registry.list().map((p) => ({ name: p.manifest.name, apiVersion: p.manifest.apiVersion, from: p.from, provides: p.manifest.provides }));
    if (argv.includes('--json')) io.stdout.write(`${JSON.stringify(list)}\n`);
    else for (const p of list) io.stdout.write(`${p.name}\tapi ${p.apiVersion}\t${p.provides.map((x) => `${x.kind}:${x.name}`).join(', ')}\t(${p.from})\n`);
    return ExitCode.Ok;
  } catch (err) {
    return reportStartupError(err, io);
  }
}
