/**
 * Pure helpers for image source URIs: the scheme, the cache name derived from
 * a URI, the rule for names that become files in a shared volume, and the
 * split of URL credentials into an `Authorization` header so that the URL
 * itself, which reaches logs, events and errors, never carries them.
 */
import path from 'node:path';
import { PodvisorError } from '@podvisor/core';

/** `http`, `https`, `file` (a bare path counts as `file`). */
export function schemeOf(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  return m === null ? 'file' : (m[1] ?? 'file').toLowerCase();
}

/** The local path of a `file` URI or bare path. */
export function localPath(uri: string): string {
  return uri.startsWith('file://') ? decodeURIComponent(new URL(uri).pathname) : uri;
}

/** The cache name for a source without IMG_TARGET: the last path segment. */
export function deriveTarget(source: string): string {
  const p = schemeOf(source) === 'file' ? source : new URL(source).pathname;
  const base = path.posix.basename(p.replace(/\/+$/, ''));
  return base === '' ? 'image.qcow2' : base;
}

/** Names become file names in shared volumes: no separators, no dot-files, no traversal. Throws `ERR_IMAGE_NAME_INVALID`. */
export function assertSafeName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(name)) {
    throw new PodvisorError('ERR_IMAGE_NAME_INVALID', `${JSON.stringify(name)} is not a safe file name`, {
      hint: 'use letters, digits, dot, dash and underscore, starting with a letter or digit',
    });
  }
}

/**
 * Splits `https://user:pass@host/x` into the URL without credentials and a
 * Basic `Authorization` value. Throws ERR_IMAGE_SOURCE_INVALID for a URL
 * that does not parse (the message never repeats the URL: it may hold a secret).
 */
export function splitCredentials(uri: string): { url: URL; authorization: string | undefined } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (err) {
    throw new PodvisorError('ERR_IMAGE_SOURCE_INVALID', 'IMG_SOURCE is not a valid URL', { cause: err, hint: 'give an http(s) URL or an absolute path' });
  }
  if (url.username === '' && url.password === '') return { url, authorization: undefined };
  const user = decodeURIComponent(url.username);
  const pass = decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  return { url, authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` };
}
