/**
 * The web console's page and files: `GET /console` is a small page that loads
 * noVNC's RFB client (the `@novnc/novnc` package, which ships CommonJS; the
 * build bundles it for browsers into `dist/web/novnc-rfb.mjs` with
 * `scripts/build-web-console.mjs`) from `/console/novnc/...` and connects it
 * to the VNC bridge at `/v1/vnc`. The
 * token comes from the page's fragment (`/console#token=...`), which the
 * browser never sends to the server; no VNC password is needed, because the
 * bridge answers qemu's VNC authentication itself. Files are served only from the package's directory, only with known
 * extensions, and only by a path that stays inside it.
 */
import { existsSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export const WEB_CONSOLE_PREFIX = '/console/novnc/';

/** The browser bundle of noVNC's RFB class, built into `dist/web/`. */
export const RFB_BUNDLE = 'novnc-rfb.mjs';

export class WebConsole {
  private constructor(readonly root: string) {}

  /** Finds the built bundle in `root` (default: `dist/web` beside this module's folder); `null` when it was not built. */
  static locate(root: string = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'web')): WebConsole | null {
    return existsSync(path.join(root, RFB_BUNDLE)) ? new WebConsole(root) : null;
  }

  /** The page. */
  page(): string {
    return PAGE;
  }

  /** A file under the package by its path after `/console/novnc/`; `null` for anything not servable. */
  async file(rawRelative: string): Promise<{ body: Buffer; type: string } | null> {
    let rel: string;
    try {
      rel = decodeURIComponent(rawRelative);
    } catch {
      return null;
    }
    if (!/^[A-Za-z0-9._/-]+$/.test(rel) || rel.split('/').some((part) => part === '..' || part === '.' || part === '')) return null;
    const type = TYPES[path.extname(rel)];
    if (type === undefined) return null;
    try {
      const file = await realpath(path.join(this.root, rel));
      const root = await realpath(this.root);
      if (!file.startsWith(`${root}${path.sep}`)) return null;
      return { body: await readFile(file), type };
    } catch {
      return null;
    }
  }
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>podvisor console</title>
<style>html,body{margin:0;height:100%;background:#111;color:#ccc;font:13px sans-serif}#screen{height:calc(100% - 22px)}#status{height:22px;line-height:22px;padding:0 8px}</style>
</head>
<body>
<div id="status">connecting...</div>
<div id="screen"></div>
<script type="module">
import novnc from './console/novnc/novnc-rfb.mjs';
const RFB = novnc.default ?? novnc;
const params = new URLSearchParams(location.hash.slice(1));
const url = new URL('v1/vnc', location.href);
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
url.hash = '';
if (params.get('token')) url.searchParams.set('token', params.get('token'));
const status = document.getElementById('status');
const rfb = new RFB(document.getElementById('screen'), url.href, { wsProtocols: ['binary'] });
rfb.scaleViewport = true;
rfb.addEventListener('connect', () => { status.textContent = 'connected'; document.title = 'podvisor console: connected'; });
rfb.addEventListener('disconnect', (e) => { status.textContent = e.detail.clean ? 'disconnected' : 'connection lost'; document.title = 'podvisor console: disconnected'; });
</script>
</body>
</html>
`;
