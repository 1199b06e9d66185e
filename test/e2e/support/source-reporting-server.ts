/**
 * An HTTP server on port 8080 in a network namespace the test made (a pod's
 * node namespace) that answers "pong from the node" and reports the source
 * address of a request for /from-vm: how the e2e tests see which address a
 * VM's outbound traffic leaves the pod with.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface SourceReportingServer {
  child: ChildProcess;
  /** The source address of the first GET /from-vm. */
  source: Promise<string>;
}

/** Starts the server on `host` (an IPv4 or IPv6 address) in namespace `ns`; resolves once it listens. The caller kills `child`. */
export async function startSourceReportingServer(ns: string, host: string): Promise<SourceReportingServer> {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '-e',
      `require('http').createServer((q, r) => { console.log('seen ' + q.socket.remoteAddress + ' ' + q.url); r.end('pong from the node\\n'); })
         .listen(8080, ${JSON.stringify(host)}, () => console.log('listening'));`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let seen = '';
  const source = new Promise<string>((resolve) => {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      seen += d;
      const m = /^seen (\S+) \/from-vm$/m.exec(seen);
      if (m !== null) resolve(m[1] as string);
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', () => seen.includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`the server in ${ns} exited (${code})`)));
  });
  return { child, source };
}
