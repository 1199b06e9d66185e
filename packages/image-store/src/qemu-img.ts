/**
 * The few `qemu-img` calls the image store needs: `info` (to validate a base
 * before first use) and `create` (to make a pet overlay), through the one
 * process runner.
 */
import { PodvisorError, type ProcessRunner } from '@podvisor/core';

export interface QemuImgInfo {
  format: string;
  virtualSize: number;
  actualSize: number | undefined;
  backingFilename: string | undefined;
  backingFormat: string | undefined;
  corrupt: boolean;
}

export async function qemuImgInfo(runner: ProcessRunner, file: string): Promise<QemuImgInfo> {
  const result = await runner.run('qemu-img', ['info', '--output=json', '-U', file], { check: false, timeoutMs: 30_000 });
  if (result.exitCode !== 0) {
    throw new PodvisorError('ERR_IMAGE_INVALID', `qemu-img cannot read ${file}: ${result.stderr.trim()}`, {
      hint: 'the file is not a disk image qemu understands, or it is corrupt',
      details: { path: file },
    });
  }
  const j = JSON.parse(result.stdout) as Record<string, unknown>;
  const specific = (j['format-specific'] as { data?: { corrupt?: boolean } } | undefined)?.data;
  return {
    format: String(j['format']),
    virtualSize: Number(j['virtual-size']),
    actualSize: typeof j['actual-size'] === 'number' ? j['actual-size'] : undefined,
    backingFilename: typeof j['backing-filename'] === 'string' ? j['backing-filename'] : undefined,
    backingFormat: typeof j['backing-filename-format'] === 'string' ? j['backing-filename-format'] : undefined,
    corrupt: specific?.corrupt === true,
  };
}

export async function qemuImgCreateOverlay(runner: ProcessRunner, overlay: string, backing: string, backingFormat: string): Promise<void> {
  await runner.run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', backingFormat, overlay], { timeoutMs: 30_000 });
}
