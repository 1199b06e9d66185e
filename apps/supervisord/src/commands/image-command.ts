/**
 * `podvisor image pull|ls|gc|rebase`: the shared image cache from the command
 * line, with the same store, sources and validation as `podvisor run`. `pull`
 * shows a progress bar on a TTY; every subcommand prints JSON with `--json`.
 * `gc` is a dry run unless `--yes` is given, because only the operator knows
 * whether the disk dirs named are all the disk dirs that use the cache.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  ConfigError,
  PluginSettings,
  ProcessRunner,
  isPodvisorError,
  pluginSettingsName,
  redactUrl,
  resolvePluginSettings,
  type ImagePullProgress,
  type PluginRegistry,
} from '@podvisor/core';
import { SqliteEventStore } from '@podvisor/core/sqlite';
import { ContentImageStore, DEFAULT_MAX_VIRTUAL_SIZE, collectImageGarbage, deriveTarget, listImageCache, schemeOf } from '@podvisor/image-store';
import { buildAppContainer, type AppContainer } from '../app-container.js';
import { ImageExitCode } from '../exit-codes.js';
import type { CommandIo } from './run-command.js';

export { ImageExitCode };

const DEFAULT_IMAGES_DIR = '/var/lib/podvisor/images';
const DEFAULT_DISK_DIR = '/var/lib/podvisor/disk';


const EXIT_CODES = 'Exit codes: 0 ok, 1 internal error, 2 usage error (or a plugin that cannot load, or its invalid settings), 3 image error (the message names the URL, path and values).';

export const IMAGE_HELP = `Usage: podvisor image <pull|ls|gc|rebase> [options]

  pull     download (or copy) a base into the shared cache, verified
  ls       list the names and contents of the cache
  gc       remove bases that no overlay uses (dry run unless --yes)
  rebase   move a pet disk onto a newer base, keeping the guest's data

Run 'podvisor image <subcommand> --help' for its options.
${EXIT_CODES}
`;

/** The options every subcommand takes, their descriptions starting at `width` + 2, as the subcommand's own rows do. */
function common(width: number): string {
  return [
    ['--images-dir DIR', `the shared cache (default $PODVISOR_IMAGES_DIR, else ${DEFAULT_IMAGES_DIR})`],
    ['--json', 'print the result as one JSON document on stdout'],
    ['-v, --verbose', 'JSON log lines on stderr (info level)'],
    ['-h, --help', 'this help'],
  ]
    .map(([flag, doc]) => `  ${(flag as string).padEnd(width)}${doc}`)
    .join('\n');
}

const HELP: Record<string, string> = {
  pull: `Usage: podvisor image pull [SOURCE] [--target NAME] [--sha256 HEX] [options]

Downloads SOURCE (http(s) URL, local path, or a URL of a scheme an image-source
plugin in PODVISOR_PLUGINS serves; default $IMG_SOURCE) into the cache
under NAME (default $IMG_TARGET, else the last segment of SOURCE). Resumes with
Range after an interruption, also by a later process (the partial download is
kept under .tmp when a pull is interrupted or killed), retries 5xx and network
errors, refuses a wrong sha256, a base that names a backing or data file, a
body that is no disk image (an HTML page), a corrupt or oversized image, and a
body larger than the free space of the volume. A body that is no qcow2 is
taken as raw only with --format raw. A cached pinned image (checked again), or
an unchanged source (ETag/Last-Modified), transfers nothing.
  --target NAME            the name in the cache [IMG_TARGET]
  --sha256 HEX             the expected sha256 [IMG_SHA256]
  --format qcow2|raw       the base's format (default qcow2) [IMG_FORMAT]
  --lock-wait SECONDS      longest wait for another process pulling the same
                           name (default 3600), then an error naming its host
  --timeout SECONDS        headers and body-idle timeout (default 30)
  --retries N              attempts in a row without progress (default 5)
  --max-virtual-size-gb N  refuse larger images (default 2048)
${common(25)}
${EXIT_CODES}
`,
  ls: `Usage: podvisor image ls [options]

Lists each name (source, sha256, when fetched) and each content (size, names).
${common(19)}
${EXIT_CODES}
`,
  gc: `Usage: podvisor image gc --disk-dir DIR [--disk-dir DIR...] [--yes] [options]

Finds the bases that no overlay in the given disk dirs uses (anywhere in its
backing chain), that no name points at, and that landed more than --min-age ago,
and the leftovers of .tmp older than --min-age that no live pull owns.
Without --yes it only lists them. It fails closed: a disk dir that does not
exist, or a pet disk that cannot be read, is an error and nothing is removed.
Symlinked pet disks are followed.
  --disk-dir DIR       a directory of pet disks (repeat; default $PODVISOR_DISK_DIR)
  --yes                remove them
  --min-age SECONDS    keep contents younger than this (default 3600)
${common(21)}
${EXIT_CODES}
`,
  rebase: `Usage: podvisor image rebase [--disk PATH] [--to NAME|SHA256] [options]

Moves the pet disk onto the base that NAME now points at, with a safe qemu-img
rebase (not -u) on a copy that replaces the disk only when it checks out. The
VM must be stopped. Records a DiskRebased event when the disk dir has an event log.
  --disk PATH        the pet disk (default $PODVISOR_DISK_DIR/$HOSTNAME.qcow2)
  --to NAME|SHA256   the new base (default $IMG_TARGET, else derived from $IMG_SOURCE)
  --state-dir DIR    the event log's dir (default $PODVISOR_STATE_DIR, else <disk dir>/.podvisor)
${common(19)}
${EXIT_CODES}
`,
};

const OPTIONS = {
  'images-dir': { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
  target: { type: 'string' },
  sha256: { type: 'string' },
  format: { type: 'string' },
  'lock-wait': { type: 'string' },
  timeout: { type: 'string' },
  retries: { type: 'string' },
  'max-virtual-size-gb': { type: 'string' },
  'disk-dir': { type: 'string', multiple: true },
  yes: { type: 'boolean' },
  'min-age': { type: 'string' },
  disk: { type: 'string' },
  to: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

class UsageError extends Error {}

export async function imageCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? io.stderr : io.stdout).write(IMAGE_HELP);
    return sub === undefined ? ImageExitCode.Usage : ImageExitCode.Ok;
  }
  const help = HELP[sub];
  if (help === undefined) {
    io.stderr.write(`podvisor image: unknown subcommand ${JSON.stringify(sub)}\n\n${IMAGE_HELP}`);
    return ImageExitCode.Usage;
  }
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: [...rest], options: OPTIONS, allowPositionals: true, strict: true }));
    if (positionals.length > (sub === 'pull' ? 1 : 0)) throw new UsageError(`unexpected argument ${JSON.stringify(positionals.at(-1))}`);
  } catch (err) {
    io.stderr.write(`podvisor image ${sub}: ${(err as Error).message}\n\n${help}`);
    return ImageExitCode.Usage;
  }
  if (values.help === true) {
    io.stdout.write(help);
    return ImageExitCode.Ok;
  }
  let app: ImageApp | undefined;
  try {
    app = await imageApp(values, io);
    switch (sub) {
      case 'pull':
        return await pull(values, positionals[0], io, app);
      case 'ls':
        return await ls(values, io, app);
      case 'gc':
        return await gc(values, io, app);
      default:
        return await rebase(values, io, app);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`podvisor image ${sub}: ${err.message}\n\n${help}`);
      return ImageExitCode.Usage;
    }
    return reportImageError(sub, err, io);
  } finally {
    await app?.runner.stopAll(1000);
  }
}

interface ImageApp {
  store: ContentImageStore;
  runner: ProcessRunner;
  registry: PluginRegistry;
  container: AppContainer['container'];
}

/**
 * The image store of the app's container, with the same plugins as `podvisor
 * run` (the built-in ones and those in PODVISOR_PLUGINS): an image-source
 * plugin serves its scheme here too. Throws `ERR_PLUGIN_*` or a usage error.
 */
async function imageApp(values: Values, io: CommandIo): Promise<ImageApp> {
  const timeoutMs = values.timeout === undefined ? undefined : positive(values.timeout, '--timeout') * 1000;
  const retries = values.retries === undefined ? undefined : positive(values.retries, '--retries');
  const maxGb = values['max-virtual-size-gb'] === undefined ? undefined : positive(values['max-virtual-size-gb'], '--max-virtual-size-gb');
  const format = values.format ?? io.env['IMG_FORMAT'] ?? 'qcow2';
  if (format !== 'qcow2' && format !== 'raw') throw new UsageError(`--format (IMG_FORMAT): got ${JSON.stringify(format)}, expected qcow2 or raw`);
  const { container, registry } = await buildAppContainer({
    logLevel: values.verbose === true ? 'info' : 'warn',
    logSink: io.stderr,
    imagesDir: imagesDir(values, io),
    maxVirtualSizeBytes: maxGb === undefined ? DEFAULT_MAX_VIRTUAL_SIZE : maxGb * 1024 ** 3,
    allowRawImage: format === 'raw',
    progressIntervalMs: 200,
    ...(values['lock-wait'] === undefined ? {} : { lockMaxWaitMs: nonNegative(values['lock-wait'], '--lock-wait') * 1000 }),
    http: {
      ...(timeoutMs === undefined ? {} : { headersTimeoutMs: timeoutMs, bodyTimeoutMs: timeoutMs, connectTimeoutMs: timeoutMs }),
      ...(retries === undefined ? {} : { maxAttempts: retries }),
    },
    plugins: (io.env['PODVISOR_PLUGINS'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
  });
  return { store: container.get(ContentImageStore), runner: container.get<ProcessRunner>(ProcessRunner), registry, container };
}

async function pull(values: Values, sourceArg: string | undefined, io: CommandIo, app: ImageApp): Promise<number> {
  const source = sourceArg ?? io.env['IMG_SOURCE'];
  if (source === undefined || source === '') throw new UsageError('no SOURCE given and IMG_SOURCE is not set');
  bindImageSourceSettings(app, source, io);
  const sha = values.sha256 ?? io.env['IMG_SHA256'];
  if (sha !== undefined && sha !== '' && !/^(sha256:)?[0-9a-f]{64}$/i.test(sha)) throw new UsageError(`--sha256: got ${JSON.stringify(sha)}, expected 64 hex digits (optionally prefixed sha256:)`);
  const target = values.target ?? io.env['IMG_TARGET'];
  const { store } = app;
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true && values.json !== true;
  const bar = tty ? new ProgressBar(io.stderr) : null;
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const base = await store.ensureBase({
      source,
      ...(target === undefined || target === '' ? {} : { target }),
      ...(sha === undefined || sha === '' ? {} : { sha256: sha.replace(/^sha256:/i, '').toLowerCase() }),
      signal: controller.signal,
      onProgress: (p) => bar?.draw(p),
      onRetry: (r) => {
        bar?.clear();
        io.stderr.write(`podvisor image pull: attempt ${r.attempt} failed (${r.reason}); retrying in ${r.delayMs} ms${r.resumeFrom > 0 ? ` from byte ${r.resumeFrom}` : ''}\n`);
      },
    });
    bar?.clear();
    if (values.json === true) io.stdout.write(`${JSON.stringify({ source: redactUrl(source), ...base })}\n`);
    else io.stdout.write(`${base.target} sha256:${base.sha256} ${formatBytes(base.bytes)} ${base.format} ${base.reused ? 'cached' : 'pulled'} ${base.path}\n`);
    return ImageExitCode.Ok;
  } finally {
    bar?.clear();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * The settings of the image source that serves SOURCE's scheme, resolved from
 * the environment as `podvisor run` does (without the YAML file, which
 * `podvisor image` does not read), and bound for the plugin. Throws a
 * `ConfigError` listing the problems.
 */
function bindImageSourceSettings(app: ImageApp, source: string, io: CommandIo): void {
  const scheme = schemeOf(source);
  const provision = app.registry.provision('image-source', scheme);
  if (provision === undefined) return; // the store names the schemes it has
  const { settings, problems } = resolvePluginSettings(provision.settings ?? [], { env: io.env, yaml: {} });
  if (problems.length > 0) throw new ConfigError(problems);
  app.container.bind<PluginSettings>(PluginSettings).toConstantValue(settings).whenTargetNamed(pluginSettingsName('image-source', scheme));
}

async function ls(values: Values, io: CommandIo, app: ImageApp): Promise<number> {
  const listing = await listImageCache(app.store.layout);
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify(listing)}\n`);
    return ImageExitCode.Ok;
  }
  io.stdout.write(`NAME${' '.repeat(28)}SHA256${' '.repeat(9)}SIZE       FETCHED                   SOURCE\n`);
  for (const n of listing.names) {
    const c = listing.contents.find((x) => x.sha256 === n.sha256);
    io.stdout.write(`${n.target.padEnd(32)}${n.sha256.slice(0, 12)}   ${formatBytes(c?.bytes ?? 0).padEnd(11)}${(n.meta?.fetchedAt ?? '-').padEnd(26)}${n.meta?.source ?? '-'}\n`);
  }
  for (const c of listing.contents.filter((x) => x.names.length === 0)) {
    io.stdout.write(`${'(unnamed)'.padEnd(32)}${c.sha256.slice(0, 12)}   ${formatBytes(c.bytes).padEnd(11)}${c.landedAt.padEnd(26)}-\n`);
  }
  return ImageExitCode.Ok;
}

async function gc(values: Values, io: CommandIo, app: ImageApp): Promise<number> {
  const diskDirs = values['disk-dir'] ?? (io.env['PODVISOR_DISK_DIR'] === undefined ? [] : [io.env['PODVISOR_DISK_DIR']]);
  if (diskDirs.length === 0) throw new UsageError('give at least one --disk-dir (or set PODVISOR_DISK_DIR)');
  const minAgeMs = (values['min-age'] === undefined ? 3600 : nonNegative(values['min-age'], '--min-age')) * 1000;
  const report = await collectImageGarbage(app.store.layout, app.runner, { diskDirs, dryRun: values.yes !== true, minAgeMs });
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify(report)}\n`);
    return ImageExitCode.Ok;
  }
  const verb = report.dryRun ? 'would remove' : 'removed';
  for (const r of report.removed) io.stdout.write(`${verb} sha256:${r.sha256} (${formatBytes(r.bytes)})\n`);
  for (const k of report.kept) io.stdout.write(`kept sha256:${k.sha256}: ${k.reasons.join('; ')}\n`);
  for (const s of report.swept) io.stdout.write(`${verb} leftover ${s.path} (${formatBytes(s.bytes)})\n`);
  io.stdout.write(`${verb} ${report.removed.length} base(s) and ${report.swept.length} leftover(s), ${formatBytes(report.freedBytes)}${report.dryRun && report.removed.length > 0 ? '; run again with --yes to remove them' : ''}\n`);
  return ImageExitCode.Ok;
}

async function rebase(values: Values, io: CommandIo, app: ImageApp): Promise<number> {
  const diskDir = io.env['PODVISOR_DISK_DIR'] ?? DEFAULT_DISK_DIR;
  const disk = values.disk ?? path.join(diskDir, `${io.env['HOSTNAME'] ?? os.hostname()}.qcow2`);
  const imgSource = io.env['IMG_SOURCE'];
  const to = values.to ?? io.env['IMG_TARGET'] ?? (imgSource === undefined || imgSource === '' ? undefined : deriveTarget(imgSource));
  if (to === undefined) throw new UsageError('give --to NAME|SHA256 (or set IMG_TARGET / IMG_SOURCE)');
  if (!existsSync(disk)) throw new UsageError(`no pet disk at ${disk} (give --disk, or set PODVISOR_DISK_DIR and HOSTNAME)`);
  const { store } = app;
  const base = await store.resolveBase(to);
  const result = await store.rebaseOverlay({ path: disk, base });
  const stateDir = values['state-dir'] ?? io.env['PODVISOR_STATE_DIR'] ?? path.join(path.dirname(disk), '.podvisor');
  const eventsFile = path.join(stateDir, 'events.db');
  if (result.changed && existsSync(eventsFile)) {
    // The VM's history says its disk changed base, although the daemon did not do it.
    const events = SqliteEventStore.open({ path: eventsFile });
    try {
      const vm = path.basename(disk, '.qcow2');
      events.append(vm, [{ type: 'DiskRebased', data: { path: disk, fromBacking: result.fromBacking, toBacking: result.toBacking, sha256: base.sha256, durationMs: result.durationMs } }]);
    } finally {
      events.close();
    }
  }
  if (values.json === true) io.stdout.write(`${JSON.stringify({ ...result, sha256: base.sha256, target: base.target })}\n`);
  else if (result.changed) io.stdout.write(`rebased ${disk} from ${result.fromBacking} onto ${result.toBacking} (${base.target}) in ${result.durationMs} ms\n`);
  else io.stdout.write(`${disk} is already on ${result.toBacking}\n`);
  return ImageExitCode.Ok;
}

function imagesDir(values: Values, io: CommandIo): string {
  return values['images-dir'] ?? io.env['PODVISOR_IMAGES_DIR'] ?? DEFAULT_IMAGES_DIR;
}

function positive(raw: string, flag: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: got ${JSON.stringify(raw)}, expected an integer >= 1`);
  return n;
}

function nonNegative(raw: string, flag: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: got ${JSON.stringify(raw)}, expected an integer >= 0`);
  return n;
}

function reportImageError(sub: string, err: unknown, io: CommandIo): number {
  if (isPodvisorError(err)) {
    io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', logger: 'podvisor', msg: `image ${sub} failed`, err: err.toJSON() })}\n`);
    io.stderr.write(`podvisor image ${sub}: ${err.message}${err.hint === undefined ? '' : `\nhint: ${err.hint}`}\n`);
    if (err instanceof ConfigError || err.code.startsWith('ERR_PLUGIN')) return ImageExitCode.Usage;
    return err.code === 'ERR_INTERNAL' ? ImageExitCode.Internal : ImageExitCode.Image;
  }
  io.stderr.write(`podvisor image ${sub}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
  return ImageExitCode.Internal;
}

/** A one-line progress bar on a TTY, redrawn in place. */
class ProgressBar {
  private drawn = false;
  constructor(private readonly out: NodeJS.WritableStream) {}

  draw(p: ImagePullProgress): void {
    const width = 30;
    const filled = p.percent === null ? 0 : Math.round((p.percent / 100) * width);
    const bar = p.percent === null ? '?'.repeat(width) : `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    const pct = p.percent === null ? '   ?  ' : `${p.percent.toFixed(1).padStart(5)}%`;
    const total = p.total === null ? '' : ` / ${formatBytes(p.total)}`;
    this.out.write(`\r${p.target} [${bar}] ${pct} ${formatBytes(p.bytes)}${total} ${formatBytes(p.bytesPerSecond)}/s\x1b[K`);
    this.drawn = true;
  }

  clear(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
