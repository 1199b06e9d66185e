/**
 * The control endpoint's contract, `api/openapi.yaml`, loaded once and used
 * both ways: the server checks request bodies against it (so that the 400s
 * name the field the contract names), and tests check every response against
 * it. Finding an operation maps a concrete path and method to its entry;
 * schemas are checked with `JsonSchemaValidator`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { JsonSchemaValidator, type JsonSchema, type SchemaProblem } from './json-schema.js';

/** `api/openapi.yaml`, from `src/http` and from `dist/http` alike. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../api/openapi.yaml', import.meta.url));

interface Operation {
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, { $ref?: string; content?: Record<string, { schema?: JsonSchema }> }>;
}

export class OpenApiContract {
  readonly validator: JsonSchemaValidator;
  private readonly paths: Record<string, Record<string, Operation>>;

  /** Throws when the document is not a supported OpenAPI 3.1 file. */
  constructor(readonly document: Record<string, unknown>) {
    if (typeof document['openapi'] !== 'string' || !document['openapi'].startsWith('3.1')) throw new Error('not an OpenAPI 3.1 document');
    this.validator = new JsonSchemaValidator(document);
    this.paths = document['paths'] as Record<string, Record<string, Operation>>;
  }

  /** Reads and checks `api/openapi.yaml` (or `file`). Throws on a read or parse error. */
  static load(file = OPENAPI_PATH): OpenApiContract {
    return new OpenApiContract(parse(readFileSync(file, 'utf8')) as Record<string, unknown>);
  }

  /** A named schema of `components.schemas`. */
  schema(name: string): JsonSchema {
    return this.validator.resolve(`#/components/schemas/${name}`);
  }

  /** Problems of a JSON value against a named schema. */
  check(name: string, value: unknown): SchemaProblem[] {
    return this.validator.validate(this.schema(name), value);
  }

  /** Problems of a request body; an operation without a body schema refuses nothing here. */
  requestProblems(method: string, path: string, body: unknown): SchemaProblem[] {
    const schema = this.operation(method, path)?.requestBody?.content?.['application/json']?.schema;
    return schema === undefined ? [] : this.validator.validate(schema, body);
  }

  /**
   * Problems of a response: the operation must exist, list the status, and
   * (for a body) list the media type; a JSON body must match its schema.
   */
  responseProblems(method: string, path: string, status: number, contentType: string | undefined, body: unknown): SchemaProblem[] {
    const op = this.operation(method, path);
    if (op === undefined) return [{ pointer: '', message: `no operation ${method.toUpperCase()} ${path} in the contract` }];
    let response = op.responses?.[String(status)] ?? op.responses?.['default'];
    if (response === undefined) return [{ pointer: '', message: `status ${status} is not listed for ${method.toUpperCase()} ${path}` }];
    if (typeof response.$ref === 'string') response = this.validator.resolve(response.$ref) as typeof response;
    const media = (contentType ?? '').split(';')[0]?.trim() ?? '';
    if (response.content === undefined) return body === undefined || body === '' ? [] : [{ pointer: '', message: `status ${status} has no body in the contract` }];
    const entry = response.content[media];
    if (entry === undefined) return [{ pointer: '', message: `media type ${media || '(none)'} is not listed for ${status} of ${method.toUpperCase()} ${path}` }];
    return entry.schema === undefined ? [] : this.validator.validate(entry.schema, body);
  }

  /**
   * The operation for a concrete path (`/v1/vm`) and method, if the contract
   * has it. A templated path matches too: `{name}` stands for one segment, or
   * for the rest of the path when it is the last one (`/console/novnc/{file}`).
   */
  operation(method: string, path: string): Operation | undefined {
    const exact = this.paths[path];
    if (exact !== undefined) return exact[method.toLowerCase()];
    for (const [template, ops] of Object.entries(this.paths)) {
      if (!template.includes('{')) continue;
      const source = template
        .split('/')
        .map((seg, i, all) => (/^\{[^}]+\}$/.test(seg) ? (i === all.length - 1 ? '.+' : '[^/]+') : seg.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
        .join('/');
      if (new RegExp(`^${source}$`).test(path)) return ops[method.toLowerCase()];
    }
    return undefined;
  }
}
