import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MemoryEventStore, SilentLogger } from '@podvisor/core';
import { ControlHandler } from './control-handler.js';
import { ControlTokens } from './control-tokens.js';
import { OpenApiContract } from './openapi-contract.js';
import { QmpAllowList } from './qmp-allow-list.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));

/** `METHOD path` for every operation the control handler dispatches. */
function served(): string[] {
  const store = new MemoryEventStore();
  const handler = new ControlHandler({
    target: { current: () => { throw new Error('not in this test'); }, act: () => Promise.reject(new Error('not in this test')), handle: () => null },
    store,
    tokens: ControlTokens.none(),
    qmpAllow: new QmpAllowList([]),
    contract: () => OpenApiContract.load(),
    log: new SilentLogger(),
    version: '0.0.0-test',
  });
  try {
    return handler.served().flatMap((r) => r.methods.map((m) => `${m} ${r.path}`)).sort();
  } finally {
    handler.close();
    store.close();
  }
}

describe('the control endpoint, its OpenAPI file and docs/api.md list the same routes', () => {
  it('every route served is in api/openapi.yaml, and every operation there is served', () => {
    const paths = OpenApiContract.load().document['paths'] as Record<string, Record<string, unknown>>;
    const documented = Object.entries(paths)
      .flatMap(([p, ops]) => Object.keys(ops).filter((k) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(k)).map((m) => `${m.toUpperCase()} ${p}`))
      .sort();
    expect(served()).toEqual(documented);
  });

  it("every route served has a row in docs/api.md's endpoint table, and every row is served", () => {
    const doc = readFileSync(`${repo}docs/api.md`, 'utf8');
    const table = doc.slice(doc.indexOf('## Endpoints'), doc.indexOf('\n## ', doc.indexOf('## Endpoints') + 1));
    // `<file>` in the doc is `{file}` in the contract; a route may have several rows (`GET /v1/events` plain and as SSE).
    const rows = [...table.matchAll(/^\| `(GET|POST|PUT|DELETE|PATCH) ([^`?\s]+)[^`]*`/gm)].map((m) => `${m[1]} ${(m[2] as string).replace(/<(\w+)>/g, '{$1}')}`);
    expect([...new Set(rows)].sort()).toEqual(served());
  });
});
