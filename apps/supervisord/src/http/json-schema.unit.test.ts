import { describe, expect, it } from 'vitest';
import { JsonSchemaValidator } from './json-schema.js';
import { OpenApiContract } from './openapi-contract.js';

const doc = {
  components: {
    schemas: {
      Action: { type: 'string', enum: ['pause', 'resume'] },
      Req: { type: 'object', additionalProperties: false, required: ['action'], properties: { action: { $ref: '#/components/schemas/Action' }, n: { type: 'integer', minimum: 1 } } },
      Maybe: { anyOf: [{ type: 'null' }, { type: 'string', pattern: '^a' }] },
    },
  },
};

describe('JsonSchemaValidator', () => {
  const v = new JsonSchemaValidator(doc);
  const req = v.resolve('#/components/schemas/Req');

  it('accepts a matching value', () => {
    expect(v.validate(req, { action: 'pause', n: 2 })).toEqual([]);
  });

  it('names each problem by JSON Pointer: a missing field, an unknown field, a wrong type, an enum miss', () => {
    expect(v.validate(req, { verb: 'x' })).toEqual([
      { pointer: '/action', message: 'is required' },
      { pointer: '/verb', message: 'is not a known field' },
    ]);
    expect(v.validate(req, { action: 'jump', n: 1.5 })).toEqual([
      { pointer: '/action', message: 'expected one of "pause", "resume", got "jump"' },
      { pointer: '/n', message: 'expected integer, got number 1.5' },
    ]);
    expect(v.validate(req, { action: 'pause', n: 0 })).toEqual([{ pointer: '/n', message: 'expected at least 1, got 0' }]);
    expect(v.validate(req, [])).toEqual([{ pointer: '', message: 'expected object, got an array' }]);
  });

  it('handles anyOf with null and patterns', () => {
    const s = v.resolve('#/components/schemas/Maybe');
    expect(v.validate(s, null)).toEqual([]);
    expect(v.validate(s, 'abc')).toEqual([]);
    expect(v.validate(s, 'xyz')).toHaveLength(1);
  });

  it('refuses a schema keyword it does not implement, rather than ignoring it', () => {
    expect(() => new JsonSchemaValidator({ components: { schemas: { X: { type: 'string', format: 'uri', uniqueItems: true } } } })).toThrow(/unsupported JSON Schema keyword uniqueItems/);
    expect(() => new JsonSchemaValidator({ components: { schemas: { X: { $ref: '#/components/schemas/Nope' } } } })).toThrow(/points nowhere/);
  });
});

describe('the OpenAPI contract file', () => {
  const contract = OpenApiContract.load();

  it('loads, and every schema in it is in the supported subset', () => {
    expect(contract.operation('get', '/v1/vm')).toBeDefined();
    expect(contract.operation('post', '/v1/qmp')).toBeDefined();
  });

  it('checks request bodies and responses by operation and status', () => {
    expect(contract.requestProblems('post', '/v1/vm/actions', { action: 'pause' })).toEqual([]);
    expect(contract.requestProblems('post', '/v1/vm/actions', { action: 'pause', force: true })).toEqual([{ pointer: '/force', message: 'is not a known field' }]);
    expect(contract.responseProblems('get', '/v1/vm', 418, 'application/json', {})).toEqual([{ pointer: '', message: 'status 418 is not listed for GET /v1/vm' }]);
    expect(contract.responseProblems('post', '/v1/qmp', 403, 'application/json', { error: { code: 'ERR_QMP_COMMAND_FORBIDDEN', message: 'no' } })).toEqual([]);
    expect(contract.responseProblems('post', '/v1/qmp', 403, 'application/json', { error: { code: 'nope', message: 'no' } })).toHaveLength(1);
  });
});
