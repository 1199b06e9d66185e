/**
 * A real "billion laughs" YAML document for tests of every YAML entry point:
 * nine lines whose aliases, expanded, make 9^9 (387 million) strings.
 * `prefix` comes first (e.g. `#cloud-config\n`), `key` holds the bomb.
 */
export function billionLaughsYaml(key = 'lol', prefix = ''): string {
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];
  const lines = names.map((n, i) => {
    const items = i === 0 ? Array(9).fill('"lol"') : Array(9).fill(`*${names[i - 1] as string}`);
    return `${i === names.length - 1 ? key : `x${n}`}: &${n} [${items.join(', ')}]`;
  });
  return `${prefix}${lines.join('\n')}\n`;
}
