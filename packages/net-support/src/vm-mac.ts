/**
 * The VM's MAC address, for a network plugin. It must stay the same across
 * restarts (the guest's DHCP client and cloud-init key on it), so it is derived
 * from the VM's name with qemu's locally administered `52:54:00` prefix, and
 * persisted next to the pet disk so that a later change of derivation, or an
 * operator's own choice written to the file, keeps winning. The derivation and
 * the checks are pure; `ensureVmMac` is the one place that touches the file.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PodvisorError } from '@podvisor/core';

/** qemu's OUI for guest NICs; the first octet has the locally administered bit set. */
export const VM_MAC_PREFIX = '52:54:00';

/** `52:54:00:xx:yy:zz` from the first three bytes of sha256(name). */
export function deriveVmMac(vmName: string): string {
  const digest = createHash('sha256').update(vmName, 'utf8').digest();
  const tail = [...digest.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0'));
  return [VM_MAC_PREFIX, ...tail].join(':');
}

/** A unicast MAC written as six colon-separated hex pairs. */
export function isUnicastMac(mac: string): boolean {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) return false;
  return (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** The file the MAC is kept in: `<diskDir>/<vmName>.mac`. */
export function vmMacPath(diskDir: string, vmName: string): string {
  return join(diskDir, `${vmName.replace(/\//g, '_')}.mac`);
}

/** The plugin's own error codes for `ensureVmMac` (nat-bridge: its MAC_FILE and MAC_INVALID codes). */
export interface VmMacErrorCodes {
  file: string;
  invalid: string;
}

/**
 * Returns the persisted MAC, creating the file (and `diskDir`) from the
 * derived one when it is absent. Throws the plugin's `codes.invalid` when the
 * file holds something that is not a unicast MAC, and `codes.file` when it
 * cannot be read or written.
 */
export async function ensureVmMac(diskDir: string, vmName: string, codes: VmMacErrorCodes): Promise<{ mac: string; path: string; created: boolean }> {
  const path = vmMacPath(diskDir, vmName);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PodvisorError(codes.file, `cannot read the VM's MAC address from ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (text !== undefined) {
    const mac = text.trim().toLowerCase();
    if (!isUnicastMac(mac)) {
      throw new PodvisorError(codes.invalid, `${path} holds ${JSON.stringify(text.trim())}, which is not a unicast MAC address`, {
        hint: `write a MAC such as ${deriveVmMac(vmName)} into it, or delete it to have one derived from the VM's name`,
      });
    }
    return { mac, path, created: false };
  }
  const mac = deriveVmMac(vmName);
  try {
    await mkdir(diskDir, { recursive: true });
    // Write-then-rename, so that a crash never leaves a half-written MAC behind.
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, `${mac}\n`, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    throw new PodvisorError(codes.file, `cannot persist the VM's MAC address to ${path}: ${(err as Error).message}`, {
      hint: 'the disk dir (PODVISOR_DISK_DIR) must be a writable volume',
      cause: err,
    });
  }
  return { mac, path, created: true };
}
