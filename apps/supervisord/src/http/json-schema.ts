/**
 * A validator for the subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it)
 * that `api/openapi.yaml` is written in: `type` (one or a list), `enum`,
 * `const`, `properties`, `required`, `additionalProperties`, `items`,
 * `oneOf`, `anyOf`, local `$ref`s (`#/components/schemas/...`), `minimum`,
 * `maximum`, `minLength`, `maxLength`, `pattern` and `minItems`. Any other
 * keyword is an error when the schema is compiled, so the contract cannot use
 * something this validator would silently ignore. Pure: it is the one module a
 * full validator (ajv) would replace.
 */

export type JsonSchema = { readonly [keyword: string]: unknown };

/** One reason a value does not match, at a JSON Pointer (`/action`, `/events/3/type`). */
export interface SchemaProblem {
  pointer: string;
  message: string;
}

const KNOWN = new Set([
  'type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'items', 'oneOf', 'anyOf', '$ref',
  'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'minItems',
  // Annotations: no effect on validation.
  'description', 'title', 'example', 'examples', 'default', 'format', 'deprecated', 'readOnly', 'writeOnly', 'contentMediaType',
]);

/** Validates values against the schemas of one document, resolving `$ref`s in it. */
export class JsonSchemaValidator {
  private readonly patterns = new Map<string, RegExp>();

  /** `root` is the document `$ref`s point into. Throws `Error` naming the first unsupported keyword. */
  constructor(private readonly root: unknown) {
    this.checkKeywords(root, '#', new Set());
  }

  /** Every problem of `value` against `schema` (empty when it matches). Changes nothing. */
  validate(schema: JsonSchema, value: unknown, pointer = ''): SchemaProblem[] {
    const out: SchemaProblem[] = [];
    this.check(schema, value, pointer, out);
    return out;
  }

  /** Resolves a local `$ref` (`#/a/b`). Throws when it points nowhere. */
  resolve(ref: string): JsonSchema {
    if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}: only local references (#/...) are supported`);
    let cur: unknown = this.root;
    for (const raw of ref.slice(2).split('/')) {
      const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
      if (typeof cur !== 'object' || cur === null || !Object.hasOwn(cur, part)) throw new Error(`$ref ${ref} points nowhere`);
      cur = (cur as Record<string, unknown>)[part];
    }
    return cur as JsonSchema;
  }

  private check(schema: JsonSchema, value: unknown, at: string, out: SchemaProblem[]): void {
    if (typeof schema['$ref'] === 'string') {
      this.check(this.resolve(schema['$ref']), value, at, out);
      return;
    }
    const type = schema['type'];
    if (type !== undefined) {
      const types = Array.isArray(type) ? (type as string[]) : [type as string];
      if (!types.some((t) => hasType(value, t))) {
        out.push({ pointer: at, message: `expected ${types.join(' or ')}, got ${describe(value)}` });
        return;
      }
    }
    if (Array.isArray(schema['enum']) && !schema['enum'].some((v) => Object.is(v, value))) {
      out.push({ pointer: at, message: `expected one of ${schema['enum'].map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(value)}` });
    }
    if ('const' in schema && !Object.is(schema['const'], value)) out.push({ pointer: at, message: `expected ${JSON.stringify(schema['const'])}, got ${JSON.stringify(value)}` });
    if (typeof value === 'number') {
      if (typeof schema['minimum'] === 'number' && value < schema['minimum']) out.push({ pointer: at, message: `expected at least ${schema['minimum']}, got ${value}` });
      if (typeof schema['maximum'] === 'number' && value > schema['maximum']) out.push({ pointer: at, message: `expected at most ${schema['maximum']}, got ${value}` });
    }
    if (typeof value === 'string') {
      if (typeof schema['minLength'] === 'number' && value.length < schema['minLength']) out.push({ pointer: at, message: `expected at least ${schema['minLength']} characters` });
      if (typeof schema['maxLength'] === 'number' && value.length > schema['maxLength']) out.push({ pointer: at, message: `expected at most ${schema['maxLength']} characters` });
      if (typeof schema['pattern'] === 'string' && !this.pattern(schema['pattern']).test(value)) out.push({ pointer: at, message: `expected a string matching ${schema['pattern']}` });
    }
    if (Array.isArray(value)) {
      if (typeof schema['minItems'] === 'number' && value.length < schema['minItems']) out.push({ pointer: at, message: `expected at least ${schema['minItems']} items` });
      if (isSchema(schema['items'])) for (const [i, item] of value.entries()) this.check(schema['items'], item, `${at}/${i}`, out);
    }
    if (isPlainObject(value)) this.checkObject(schema, value, at, out);
    if (Array.isArray(schema['oneOf'])) {
      const matching = (schema['oneOf'] as JsonSchema[]).filter((s) => this.validate(s, value, at).length === 0).length;
      if (matching !== 1) out.push({ pointer: at, message: matching === 0 ? 'matches none of the allowed shapes (oneOf)' : 'matches more than one shape (oneOf)' });
    }
    if (Array.isArray(schema['anyOf']) && !(schema['anyOf'] as JsonSchema[]).some((s) => this.validate(s, value, at).length === 0)) {
      out.push({ pointer: at, message: 'matches none of the allowed shapes (anyOf)' });
    }
  }

  private checkObject(schema: JsonSchema, value: Record<string, unknown>, at: string, out: SchemaProblem[]): void {
    const props = isSchema(schema['properties']) ? (schema['properties'] as Record<string, JsonSchema>) : {};
    for (const name of Array.isArray(schema['required']) ? (schema['required'] as string[]) : []) {
      if (!Object.hasOwn(value, name)) out.push({ pointer: `${at}/${escape(name)}`, message: 'is required' });
    }
    const extra = schema['additionalProperties'];
    for (const [name, v] of Object.entries(value)) {
      const sub = `${at}/${escape(name)}`;
      if (Object.hasOwn(props, name)) this.check(props[name] as JsonSchema, v, sub, out);
      else if (extra === false) out.push({ pointer: sub, message: 'is not a known field' });
      else if (isSchema(extra)) this.check(extra, v, sub, out);
    }
  }

  private pattern(source: string): RegExp {
    let re = this.patterns.get(source);
    if (re === undefined) {
      re = new RegExp(source, 'u');
      this.patterns.set(source, re);
    }
    return re;
  }

  /** Walks every schema reachable from `node` and refuses keywords outside the subset. */
  private checkKeywords(node: unknown, where: string, seen: Set<unknown>): void {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    for (const [k, v] of Object.entries(node)) {
      const here = `${where}/${k}`;
      if (k === 'schema' && isSchema(v)) this.checkSchema(v, here, seen);
      else if (k === 'schemas' && isSchema(v)) for (const [n, s] of Object.entries(v)) this.checkSchema(s, `${here}/${n}`, seen);
      else this.checkKeywords(v, here, seen);
    }
  }

  private checkSchema(schema: unknown, where: string, seen: Set<unknown>): void {
    if (!isSchema(schema)) throw new Error(`${where}: a schema must be an object`);
    for (const [k, v] of Object.entries(schema)) {
      if (!KNOWN.has(k)) throw new Error(`${where}: unsupported JSON Schema keyword ${k}`);
      if (k === 'properties' && isSchema(v)) for (const [n, s] of Object.entries(v)) this.checkSchema(s, `${where}/properties/${n}`, seen);
      if ((k === 'items' || k === 'additionalProperties') && isSchema(v)) this.checkSchema(v, `${where}/${k}`, seen);
      if ((k === 'oneOf' || k === 'anyOf') && Array.isArray(v)) for (const [i, s] of v.entries()) this.checkSchema(s, `${where}/${k}/${i}`, seen);
      if (k === '$ref') this.resolve(String(v));
      if (k === 'pattern') this.pattern(String(v));
    }
  }
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isPlainObject(value);
    default:
      throw new Error(`unsupported JSON Schema type ${type}`);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && Number.isInteger(value)) return `the integer ${value}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)?.slice(0, 60) ?? ''}`.trim();
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSchema(value: unknown): value is JsonSchema {
  return isPlainObject(value);
}

function escape(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}
