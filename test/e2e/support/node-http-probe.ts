/**
 * A server in a pod's node namespace that prints the source address of each
 * request: what the e2e tests of network designs use to see the address the
 * VM's outbound traffic leaves with.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface NodeHttpProbe {
  process: ChildProcess;
  /** The source address of the first request for `path`. */
  sourceOf(path: string): Promise<string>;
}

/** Starts the server on `ip:port` in namespace `ns`; resolves once it listens. The caller kills `process`. */
export async function startNodeHttpProbe(ns: string, ip: string, port = 8080): Promise<NodeHttpProbe> {
  const server = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '-e',
      `require('http').createServer((q, r) => { console.log('seen ' + q.socket.remoteAddress + ' ' + q.url); r.end('pong from the node\\n'); })
         .listen(${port}, ${JSON.stringify(ip)}, () => console.log('listening'));`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let seen = '';
  const listeners = new Set<() => void>();
  server.stdout?.setEncoding('utf8').on('data', (d: string) => {
    seen += d;
    for (const l of [...listeners]) l();
  });
  await new Promise<void>((resolve, reject) => {
    const check = () => seen.includes('listening') && resolve();
    listeners.add(check);
    server.once('exit', (code) => reject(new Error(`the node server exited (${code})`)));
  });
  const sourceOf = (path: string) =>
    new Promise<string>((resolve) => {
      const check = () => {
        const m = new RegExp(`^seen (\\S+) ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm').exec(seen);
        if (m !== null) {
          listeners.delete(check);
          resolve(m[1] as string);
        }
      };
      listeners.add(check);
      check();
    });
  return { process: server, sourceOf };
}
