/**
 * The `qemu-img` calls the image store needs, through the one process runner:
 * `info` (to validate a base and read an overlay's backing file), `check`
 * (to refuse a corrupt or truncated qcow2), `create` (a pet overlay),
 * `resize` (grow a pet) and the safe `rebase` (move a pet onto another base).
 */
import { PodvisorError, type ProcessRunner } from '@podvisor/core';

export interface QemuImgInfo {
  format: string;
  virtualSize: number;
  actualSize: number | undefined;
  backingFilename: string | undefined;
  backingFormat: string | undefined;
  /** A qcow2 external data file: like a backing file, it makes qemu read another host file. */
  dataFile: string | undefined;
  corrupt: boolean;
}

/** Matches qemu's image-locking refusal ("Failed to get "write" lock", "Is another process using the image?"). */
const LOCK_REFUSED = /Failed to get .*lock|another process using the image/i;

/**
 * Reads `qemu-img info --output=json`. With `shared: false` it takes qemu's
 * image lock like a writer would, so that a disk a running qemu holds is
 * refused with ERR_IMAGE_DISK_IN_USE. Throws ERR_IMAGE_INVALID with
 * qemu-img's message for anything it cannot read.
 */
export async function qemuImgInfo(runner: ProcessRunner, file: string, options: { shared?: boolean } = {}): Promise<QemuImgInfo> {
  const args = ['info', '--output=json', ...(options.shared === false ? [] : ['-U']), file];
  const result = await runner.run('qemu-img', args, { check: false, timeoutMs: 30_000 });
  if (result.exitCode !== 0) {
    const message = firstLines(result.stderr);
    if (LOCK_REFUSED.test(result.stderr)) throw diskInUse(file, message);
    throw new PodvisorError('ERR_IMAGE_INVALID', `qemu-img cannot read ${file}: ${message}`, {
      hint: 'the file is not a disk image qemu understands, or it is corrupt',
      details: { path: file, qemuImg: message },
    });
  }
  const j = JSON.parse(result.stdout) as Record<string, unknown>;
  const specific = (j['format-specific'] as { data?: { corrupt?: boolean; 'data-file'?: string } } | undefined)?.data;
  return {
    format: String(j['format']),
    virtualSize: Number(j['virtual-size']),
    actualSize: typeof j['actual-size'] === 'number' ? j['actual-size'] : undefined,
    backingFilename: typeof j['backing-filename'] === 'string' ? j['backing-filename'] : undefined,
    backingFormat: typeof j['backing-filename-format'] === 'string' ? j['backing-filename-format'] : undefined,
    dataFile: typeof specific?.['data-file'] === 'string' ? specific['data-file'] : undefined,
    corrupt: specific?.corrupt === true,
  };
}

/**
 * `qemu-img check` of a qcow2: metadata only, so it is quick even for a large
 * image, and it catches a truncated download (clusters past the end of the
 * file). Leaked clusters (exit 3) are harmless and accepted. Returns qemu-img's
 * complaint, or null when the image checks out.
 */
export async function qemuImgCheck(runner: ProcessRunner, file: string): Promise<string | null> {
  const result = await runner.run('qemu-img', ['check', '-q', '-f', 'qcow2', file], { check: false, timeoutMs: 300_000 });
  if (result.exitCode === 0 || result.exitCode === 3) return null;
  return firstLines(`${result.stderr}\n${result.stdout}`) || `qemu-img check exited with ${result.exitCode}`;
}

export async function qemuImgCreateOverlay(runner: ProcessRunner, overlay: string, backing: string, backingFormat: string, sizeBytes?: number): Promise<void> {
  const size = sizeBytes === undefined ? [] : [String(sizeBytes)];
  await runner.run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', backingFormat, overlay, ...size], { timeoutMs: 30_000 });
}

/** Grows a qcow2 to `sizeBytes` (qemu-img refuses to shrink without --shrink, which is never passed). */
export async function qemuImgResize(runner: ProcessRunner, file: string, sizeBytes: number): Promise<void> {
  await runImg(runner, ['resize', '-q', '-f', 'qcow2', file, String(sizeBytes)], file, 'ERR_IMAGE_RESIZE_FAILED');
}

/**
 * The safe rebase (qemu-img(1), "rebase", safe mode: no `-u`): qemu-img
 * compares the old and the new backing file and copies into the overlay every
 * cluster where they differ and the overlay has none of its own, so the guest
 * reads the same data afterwards. Needs the old backing file to be readable.
 */
export async function qemuImgRebase(runner: ProcessRunner, overlay: string, backing: string, backingFormat: string): Promise<void> {
  await runImg(runner, ['rebase', '-q', '-f', 'qcow2', '-b', backing, '-F', backingFormat, overlay], overlay, 'ERR_IMAGE_REBASE_FAILED');
}

async function runImg(runner: ProcessRunner, args: string[], file: string, code: string): Promise<void> {
  const result = await runner.run('qemu-img', args, { check: false, timeoutMs: 3_600_000 });
  if (result.exitCode === 0) return;
  const message = firstLines(result.stderr) || `exit ${result.exitCode}`;
  if (LOCK_REFUSED.test(result.stderr)) throw diskInUse(file, message);
  throw new PodvisorError(code, `qemu-img ${args[0]} of ${file} failed: ${message}`, { details: { path: file, qemuImg: message } });
}

function diskInUse(file: string, message: string): PodvisorError {
  return new PodvisorError('ERR_IMAGE_DISK_IN_USE', `${file} is in use by another process: ${message}`, {
    hint: 'stop the VM that uses this disk (the pod) first',
    details: { path: file },
  });
}

/** qemu-img can print one line per bad cluster: keep the first few. */
function firstLines(text: string, n = 3): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length <= n ? lines.join('; ') : `${lines.slice(0, n).join('; ')}; (${lines.length - n} more lines)`;
}
