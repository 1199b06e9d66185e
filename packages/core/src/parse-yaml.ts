/**
 * The one way podvisor turns operator-supplied YAML (the config file, the
 * config drive's `/metadata` and `#cloud-config` user-data) into plain data.
 * It never throws for bad input: syntax errors, an alias with no anchor, and
 * alias "bombs" (the YAML form of "billion laughs": a few lines whose aliases
 * expand to millions of nodes) come back as problems with the line and column,
 * so each caller reports them in its own error shape. Aliases are bounded with
 * the `yaml` library's `maxAliasCount`; without it `toJS()` throws a bare
 * ReferenceError.
 */
import { LineCounter, isAlias, isCollection, isPair, isScalar, parseDocument, visit, type Alias, type Document, type Node } from 'yaml';

/** How many alias expansions one document may cost (the `yaml` library's own default). */
export const YAML_MAX_ALIAS_COUNT = 100;

/** One problem with a YAML text; `line` and `column` are 1-based, when known. */
export interface YamlProblem {
  /** `YAML_SYNTAX`-style codes from the `yaml` library, or `ALIAS_BOMB` / `UNRESOLVED_ALIAS`. */
  readonly code: string;
  /** The problem in one line, without the position. */
  readonly message: string;
  /** What the text should be instead, for "expected ..." messages. */
  readonly expected: string;
  readonly line?: number;
  readonly column?: number;
  /** The offending lines with a caret, when the library gives them. */
  readonly excerpt?: string;
}

export type YamlParseResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly problems: readonly YamlProblem[] };

export interface ParseYamlOptions {
  /** `1.1` reads as PyYAML (cloud-init) does: `yes` is a boolean, `0123` octal. Default `1.2`. */
  readonly version?: '1.1' | '1.2';
  /** Default {@link YAML_MAX_ALIAS_COUNT}. */
  readonly maxAliasCount?: number;
}

/** Parses one YAML document into plain data, or lists what is wrong with it. Pure; never throws for any text. */
export function parseYaml(text: string, options: ParseYamlOptions = {}): YamlParseResult {
  const maxAliasCount = options.maxAliasCount ?? YAML_MAX_ALIAS_COUNT;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { version: options.version ?? '1.2', prettyErrors: true, lineCounter });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const at = e.linePos?.[0];
        const [first = e.message, ...rest] = e.message.split('\n');
        const excerpt = rest.join('\n').trimEnd();
        return {
          code: e.code,
          message: first.replace(/ at line \d+, column \d+:?$/, ''),
          expected: 'valid YAML',
          ...(at === undefined ? {} : { line: at.line, column: at.col }),
          ...(excerpt === '' ? {} : { excerpt }),
        };
      }),
    };
  }
  const refused = aliasProblem(doc, lineCounter, maxAliasCount);
  if (refused !== null) return { ok: false, problems: [refused] };
  try {
    // The library's own bound is a backstop (it counts its own way, about twice ours).
    return { ok: true, value: doc.toJS({ maxAliasCount: maxAliasCount * 10 }) };
  } catch (err) {
    return { ok: false, problems: [{ code: 'ALIAS_BOMB', message: `aliases expand too far (${(err as Error)?.message ?? String(err)})`, expected: `at most ${maxAliasCount} alias expansions in the document` }] };
  }
}

/**
 * The first alias with no anchor before it, or the alias at which the
 * document's aliases, expanded, pass `max` nodes; null when neither. Counts
 * without expanding anything (each node's count is kept), so a bomb costs
 * as little as its text.
 */
function aliasProblem(doc: Document, lines: LineCounter, max: number): YamlProblem | null {
  // One pass in document order: an alias refers to the last anchor of its name before it.
  const aliases: Alias[] = [];
  const targets = new Map<Alias, Node | undefined>();
  const anchors = new Map<string, Node>();
  visit(doc, {
    Node: (_key, node) => {
      if (isAlias(node)) {
        aliases.push(node);
        targets.set(node, anchors.get(node.source));
      } else if (node.anchor !== undefined) {
        anchors.set(node.anchor, node);
      }
    },
  });
  const where = (node: Node | undefined): { line?: number; column?: number } => {
    const offset = node?.range?.[0];
    if (offset === undefined) return {};
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  const unresolved = aliases.find((a) => targets.get(a) === undefined);
  if (unresolved !== undefined) {
    return { code: 'UNRESOLVED_ALIAS', message: `alias *${unresolved.source} has no anchor &${unresolved.source} before it`, expected: 'every alias *NAME after its anchor &NAME', ...where(unresolved) };
  }
  // How many aliases one alias stands for once expanded (itself, and the aliases inside its target, expanded).
  const memo = new Map<Node, number>();
  const expansion = (node: unknown, depth: number): number => {
    if (depth > 64) return max + 1;
    if (isAlias(node)) {
      const target = targets.get(node);
      return 1 + (target === undefined ? 0 : expansion(target, depth + 1));
    }
    if (isScalar(node) || node === null || typeof node !== 'object') return 0;
    const cached = memo.get(node as Node);
    if (cached !== undefined) return cached;
    let sum = 0;
    if (isCollection(node)) {
      for (const item of node.items) {
        sum += isPair(item) ? expansion(item.key, depth + 1) + expansion(item.value, depth + 1) : expansion(item, depth + 1);
        if (sum > max) break;
      }
    }
    memo.set(node as Node, Math.min(sum, max + 1));
    return Math.min(sum, max + 1);
  };
  let total = 0;
  const culprit = aliases.find((a) => (total += expansion(a, 0)) > max);
  if (culprit === undefined) return null;
  return {
    code: 'ALIAS_BOMB',
    message: `aliases expand to more than ${max} nodes at alias *${culprit.source} (a "billion laughs" alias bomb is refused)`,
    expected: `at most ${max} alias expansions in the document`,
    ...where(culprit),
  };
}
