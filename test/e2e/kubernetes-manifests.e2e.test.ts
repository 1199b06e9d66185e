/**
 * deploy/kubernetes renders with `kubectl kustomize` (kustomize as built into
 * kubectl), and every rendered object of every overlay validates against the
 * Kubernetes API schemas bundled with `kubernetes-models` (its JSON schemas,
 * checked with ajv). Also what the docs promise of the rendered StatefulSets:
 * drop ALL, not privileged, the stop budget, the memory limit.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, type KubeObject } from '../support/podman.js';

const require = createRequire(import.meta.url);
const OVERLAYS = ['nat-bridge', 'macvtap'];

function render(overlay: string): KubeObject[] {
  const text = execFileSync('kubectl', ['kustomize', path.join(REPO_ROOT, 'deploy/kubernetes/overlays', overlay)], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJS() as KubeObject);
}

/** The kubernetes-models class for an object's apiVersion and kind (`apps/v1` + `StatefulSet` -> kubernetes-models/apps/v1/StatefulSet). */
function modelOf(o: KubeObject): new (data: unknown) => { validate(): void } {
  const mod = require(`kubernetes-models/${o.apiVersion}/${o.kind}`) as Record<string, new (data: unknown) => { validate(): void }>;
  const model = mod[o.kind];
  if (model === undefined) throw new Error(`kubernetes-models has no model for ${o.apiVersion} ${o.kind}`);
  return model;
}

describe.each(OVERLAYS)('deploy/kubernetes/overlays/%s', (overlay) => {
  const objects = render(overlay);

  it('renders a StatefulSet, its Service, the shared images claim and the cloud-init ConfigMap', () => {
    expect(objects.map((o) => `${o.apiVersion} ${o.kind}`).sort()).toEqual(['apps/v1 StatefulSet', 'v1 ConfigMap', 'v1 PersistentVolumeClaim', 'v1 Service']);
  });

  it('validates every object against the Kubernetes schemas', () => {
    for (const o of objects) {
      const Model = modelOf(o);
      expect(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    }
  });

  it('the schema check does catch a wrong type', () => {
    const sts = structuredClone(objects.find((o) => o.kind === 'StatefulSet')) as KubeObject;
    (sts.spec as Record<string, unknown>)['replicas'] = 'one';
    expect(() => new (modelOf(sts))(sts).validate()).toThrow(/replicas must be integer/);
  });

  it('drops every capability, is not privileged, and sets a memory limit and a stop budget', () => {
    const sts = objects.find((o) => o.kind === 'StatefulSet') as KubeObject;
    const pod = (sts.spec?.['template'] as { spec: Record<string, unknown> }).spec;
    const c = (pod['containers'] as Record<string, unknown>[])[0] as {
      securityContext: { capabilities: { drop: string[] }; privileged?: boolean; allowPrivilegeEscalation?: boolean };
      resources: { limits: { memory: string } };
      env: { name: string; value: string }[];
    };
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(c.resources.limits.memory).toMatch(/^\d+Mi$/);
    // The one stop budget is the pod's grace period (docs/lifecycle.md).
    const grace = Number(c.env.find((e) => e.name === 'PODVISOR_STOP_GRACE')?.value);
    expect(pod['terminationGracePeriodSeconds']).toBe(grace);
  });
});
