/**
 * The VNC password: qemu's VNC is never open without one. The operator's
 * (`PODVISOR_VNC_PASSWORD`, or the file `PODVISOR_VNC_PASSWORD_FILE` names)
 * wins; without one, podvisor generates 8 random characters (VNC
 * authentication uses no more) once and keeps them in the state dir
 * (`vnc-password`, mode 0600), so that a pod restart keeps an admin's VNC
 * client working. The password is never logged or recorded; an admin reads it
 * with `podvisor ctl vnc-password` (`GET /v1/vnc/password`), and the web
 * console needs none (its bridge answers qemu's challenge).
 */
import { randomInt } from 'node:crypto';
import { lstatSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ConfigProblem, Logger } from '@podvisor/core';

/** The file's name in the state dir. */
export const VNC_PASSWORD_FILE_NAME = 'vnc-password';

const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
const GENERATED = /^[A-Za-z0-9]{8}$/;

export interface VncPasswordSettings {
  noVnc: boolean;
  vncPassword?: string | undefined;
  vncPasswordFile?: string | undefined;
  /** Where each setting came from, for problems. */
  origins: { vncPasswordFile: string };
}

/**
 * Reads the operator's password (pushing a problem for an unreadable or empty
 * file). Returns it, `'generate'` when none is configured, or `undefined` with
 * `NO_VNC`. Creates nothing.
 */
export function configuredVncPassword(config: VncPasswordSettings, problems: ConfigProblem[]): string | 'generate' | undefined {
  if (config.noVnc) return undefined;
  if (config.vncPassword !== undefined && config.vncPassword !== '') return config.vncPassword;
  if (config.vncPasswordFile === undefined) return 'generate';
  try {
    const password = readFileSync(config.vncPasswordFile, 'utf8').trim();
    if (password !== '') return password;
    problems.push({ path: config.origins.vncPasswordFile, value: config.vncPasswordFile, expected: 'a file holding a non-empty VNC password' });
  } catch (err) {
    problems.push({ path: config.origins.vncPasswordFile, value: config.vncPasswordFile, expected: `a readable file holding the VNC password (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})` });
  }
  return undefined;
}

/**
 * The password qemu gets: `configured` as it is, or (for `'generate'`) the one
 * kept in `stateDir`, made on first use. A volume that cannot keep it (read-only,
 * full) costs only persistence: the password is then this run's alone, and a
 * warning says so. Never throws.
 */
export function ensureVncPassword(configured: string | 'generate' | undefined, stateDir: string, log: Logger): string | undefined {
  if (configured !== 'generate') return configured;
  const file = path.join(stateDir, VNC_PASSWORD_FILE_NAME);
  try {
    // A symlink planted in the state dir is not followed, and a file others can read is not trusted.
    const st = lstatSync(file);
    const kept = st.isFile() && (st.mode & 0o077) === 0 ? readFileSync(file, 'utf8').trim() : '';
    if (GENERATED.test(kept)) return kept;
  } catch {
    // none yet
  }
  const password = Array.from({ length: 8 }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
  try {
    // O_EXCL after removing what was there: a symlink is replaced, never written through.
    rmSync(file, { force: true });
    writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
    log.info('VNC password generated', { file, hint: 'podvisor ctl vnc-password shows it' });
  } catch (err) {
    log.warn('VNC password generated but not kept: it changes at the next start', { file, code: (err as NodeJS.ErrnoException).code });
  }
  return password;
}
