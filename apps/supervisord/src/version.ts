/** podvisor's version, from the app's package.json (found upward from this module, bundled or not). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findVersion(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '@podvisor/supervisord' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here
    }
    if (path.dirname(dir) === dir) return '0.0.0-unknown';
  }
}

export const VERSION: string = findVersion();
