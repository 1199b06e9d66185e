/**
 * The I/O half of the config drive: reads the mounted user-data, meta-data and
 * network-config files, lets `planConfigDrive` decide the layout, writes it to
 * a staging directory next to the output, runs `genisoimage` through the
 * `ProcessRunner`, and renames the finished ISO over the output path, so that
 * a reader never sees half an image. The staging directory and the temporary
 * ISO are removed whatever happens.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { inject, injectable } from 'inversify';
import {
  Logger,
  PodvisorError,
  ProcessRunner,
  errorMessage,
  isPodvisorError,
  type ConfigDrive,
  type ConfigDriveBuilder,
  type ConfigDriveRequest,
  type Prerequisites,
} from '@podvisor/core';
import {
  CONFIG_DRIVE_FORMATS,
  checkSourceSize,
  isGenisoimageFormat,
  planConfigDrive,
  type ConfigDriveLayout,
  type ConfigDriveSource,
  type ConfigDriveSourceRole,
} from './config-drive-layout.js';

/** genisoimage writes a few hundred KiB; a minute means something is wrong with the disk. */
const GENISOIMAGE_TIMEOUT_MS = 60_000;

/**
 * The genisoimage argv for one drive, as Nova's config drive builder runs it
 * (`-J -r`, Joliet plus rationalised Rock Ridge: long lower-case names, files
 * owned by root and readable by all). Pure.
 */
export function genisoimageArgs(output: string, volumeLabel: string, sourceDir: string): string[] {
  return ['-quiet', '-output', output, '-volid', volumeLabel, '-joliet', '-rational-rock', '-input-charset', 'utf-8', sourceDir];
}

@injectable()
export class GenisoimageConfigDriveBuilder implements ConfigDriveBuilder {
  private readonly log: Logger;

  constructor(
    @inject(ProcessRunner) private readonly runner: ProcessRunner,
    @inject(Logger) log: Logger,
  ) {
    this.log = log.child({ name: 'configdrive' });
  }

  /** Pure: the binary it spawns. */
  prerequisites(): Prerequisites {
    return { binaries: [{ name: 'genisoimage', why: 'writes the cloud-init config drive ISO from /userdata and /metadata' }] };
  }

  /**
   * Builds the drive at `request.outputPath`, replacing any previous one
   * atomically. Returns `null`, and writes nothing, when neither user-data nor
   * meta-data exists. Throws the `planConfigDrive` errors (`ERR_CONFIGDRIVE_YAML`,
   * `_INVALID`, `_TOO_LARGE`), `ERR_CONFIGDRIVE_READ` for a source that exists
   * but cannot be read as a file, `ERR_CONFIGDRIVE_WRITE` when the output
   * directory cannot take the files, `ERR_CONFIGDRIVE_ISO` when genisoimage
   * fails, and `ERR_PROCESS_NOT_FOUND` when it is not installed; on any
   * failure no temporary file is left behind and the previous drive is kept.
   */
  async build(request: ConfigDriveRequest): Promise<ConfigDrive | null> {
    const started = performance.now();
    const [userData, metaData, networkConfig] = await Promise.all([
      readSource('user-data', request.userDataPath),
      readSource('meta-data', request.metaDataPath),
      request.networkConfigPath === undefined ? undefined : readSource('network-config', request.networkConfigPath),
    ]);
    const { format } = request;
    if (!isGenisoimageFormat(format)) {
      throw new PodvisorError('ERR_CONFIGDRIVE_FORMAT', `the genisoimage config drive builds ${CONFIG_DRIVE_FORMATS.join(' and ')}, not ${JSON.stringify(format)}`, {
        hint: 'select the format with PODVISOR_CONFIGDRIVE; another format needs the config-drive plugin that provides it',
      });
    }
    const layout = planConfigDrive({ userData, metaData, networkConfig }, { ...request, format });
    if (layout === null) {
      if (networkConfig !== undefined) {
        this.log.warn('network-config without user-data or meta-data: no config drive', { networkConfigPath: networkConfig.path });
      }
      return null;
    }
    const bytes = await this.writeIso(layout, request.outputPath);
    const drive: ConfigDrive = { path: request.outputPath, format: layout.format, instanceId: layout.instanceId, hostname: layout.hostname, bytes };
    this.log.info('config drive built', {
      ...drive,
      files: layout.files.map((f) => f.path),
      durationMs: Math.round(performance.now() - started),
    });
    return drive;
  }

  private async writeIso(layout: ConfigDriveLayout, outputPath: string): Promise<number> {
    const dir = dirname(outputPath);
    const base = basename(outputPath);
    const tmp = join(dir, `.${base}.${randomBytes(4).toString('hex')}.tmp`);
    let staging: string | undefined;
    try {
      staging = await mkdtemp(join(dir, `.${base}.staging-`)).catch((cause: unknown) => {
        throw writeError(outputPath, `cannot create a staging directory in ${dir}`, cause);
      });
      for (const file of layout.files) {
        const target = join(staging, ...file.path.split('/'));
        await mkdir(dirname(target), { recursive: true })
          .then(() => writeFile(target, file.content, { mode: 0o600 }))
          .catch((cause: unknown) => {
            throw writeError(outputPath, `cannot stage ${file.path} in ${staging}`, cause);
          });
      }
      await this.runner.run('genisoimage', genisoimageArgs(tmp, layout.volumeLabel, staging), { timeoutMs: GENISOIMAGE_TIMEOUT_MS }).catch((cause: unknown) => {
        throw isoError(outputPath, cause);
      });
      await rename(tmp, outputPath).catch((cause: unknown) => {
        throw writeError(outputPath, `cannot move the new image into place`, cause);
      });
      return (await stat(outputPath)).size;
    } finally {
      await rm(tmp, { force: true });
      if (staging !== undefined) await rm(staging, { recursive: true, force: true });
    }
  }
}

/** Reads one source; a missing file is "not given" (undefined). Throws `ERR_CONFIGDRIVE_READ` or `_TOO_LARGE`. */
async function readSource(role: ConfigDriveSourceRole, path: string): Promise<ConfigDriveSource | undefined> {
  const info = await stat(path).catch((cause: NodeJS.ErrnoException) => {
    if (cause.code === 'ENOENT') return undefined;
    throw readError(role, path, errorMessage(cause), cause);
  });
  if (info === undefined) return undefined;
  if (!info.isFile()) {
    throw readError(role, path, info.isDirectory() ? 'it is a directory, not a file' : 'it is not a regular file', undefined);
  }
  // Checked before reading, so that a wrong mount (a disk image) is never read into memory.
  checkSourceSize(role, path, info.size);
  const content = await readFile(path).catch((cause: unknown) => {
    throw readError(role, path, errorMessage(cause), cause);
  });
  return { path, content };
}

function readError(role: ConfigDriveSourceRole, path: string, why: string, cause: unknown): PodvisorError {
  return new PodvisorError('ERR_CONFIGDRIVE_READ', `cannot read ${role} ${path}: ${why}`, {
    hint: `mount the ConfigMap key as a single file at ${path} (volumeMounts[].subPath), or remove the mount`,
    cause,
    details: { path, role },
  });
}

function writeError(outputPath: string, what: string, cause: unknown): PodvisorError {
  return new PodvisorError('ERR_CONFIGDRIVE_WRITE', `cannot write the config drive ${outputPath}: ${what}: ${errorMessage(cause)}`, {
    hint: `check that ${dirname(outputPath)} exists, is writable and has free space`,
    cause,
    details: { path: outputPath },
  });
}

function isoError(outputPath: string, cause: unknown): unknown {
  if (isPodvisorError(cause) && cause.code === 'ERR_PROCESS_NOT_FOUND') return cause;
  const stderr = isPodvisorError(cause) && typeof cause.details?.stderr === 'string' ? cause.details.stderr.trim() : '';
  return new PodvisorError('ERR_CONFIGDRIVE_ISO', `genisoimage could not build the config drive ${outputPath}: ${stderr || errorMessage(cause)}`, {
    hint: `check that ${dirname(outputPath)} is writable and has free space`,
    cause,
    details: { path: outputPath, ...(isPodvisorError(cause) ? { argv: cause.details?.argv } : {}) },
  });
}
