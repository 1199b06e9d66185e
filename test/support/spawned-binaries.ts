/**
 * Every external binary podvisor's code can start, found by scanning the
 * sources, so that the list cannot drift from the code: each call of a
 * `ProcessRunner` (`runner.run(...)`, `runner.spawn(...)`, `inner.run(...)`)
 * in packages/* and apps/* (tests excluded), plus each `resolveExecutable('x')`.
 * A call whose program is not a string literal (or `expr ?? 'literal'`) must be
 * one of `INDIRECT_PROGRAMS`, which says what it resolves to; any other is
 * reported, so that a new kind of call is looked at, not missed.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Program expressions that are not literals, and the binaries they stand for. */
export const INDIRECT_PROGRAMS: Readonly<Record<string, readonly string[]>> = {
  // QemuVmRuntime: `settings.qemuBinary ?? 'qemu-system-x86_64'` (found below as a literal default).
  'this.settings.qemuBinary': [],
  // NetnsProcessRunner forwards to `ip netns exec NS file ...`: `file` is one of the calls found elsewhere.
  file: [],
};

export interface SpawnedBinaries {
  /** Binary name -> the files that start it. */
  binaries: Map<string, Set<string>>;
  /** Calls whose program could not be resolved: `file: expression`. */
  unresolved: string[];
}

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'build') continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) yield p;
  }
}

export function scanSpawnedBinaries(repo: string): SpawnedBinaries {
  const binaries = new Map<string, Set<string>>();
  const unresolved: string[] = [];
  const add = (bin: string, file: string): void => {
    binaries.set(bin, (binaries.get(bin) ?? new Set()).add(file));
  };
  for (const root of ['packages', 'apps']) {
    for (const file of sources(path.join(repo, root))) {
      const rel = path.relative(repo, file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\b(?:runner|inner)\.(?:run|spawn)\(\s*([^,]+?)\s*,/g)) {
        const expr = (m[1] as string).replace(/\/\/[^\n]*\n/g, '').trim();
        const literal = /^(?:[\w.]+\s*\?\?\s*)?'([\w.+-]+)'$/.exec(expr);
        if (literal !== null) add(literal[1] as string, rel);
        else if (expr in INDIRECT_PROGRAMS) for (const b of INDIRECT_PROGRAMS[expr] ?? []) add(b, rel);
        else unresolved.push(`${rel}: ${expr}`);
      }
      for (const m of text.matchAll(/\bresolveExecutable\('([\w.+-]+)'\)/g)) add(m[1] as string, rel);
      for (const m of text.matchAll(/\bqemuBinary\s*\?\?\s*'([\w.+-]+)'/g)) add(m[1] as string, rel);
    }
  }
  return { binaries, unresolved };
}
