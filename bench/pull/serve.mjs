// A static file server on 127.0.0.1 for the pull benchmark: one file, with
// Content-Length and an ETag, streamed from the page cache in 1 MiB reads.
// Usage: node serve.mjs FILE PORTFILE  (writes the chosen port to PORTFILE)
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';

const [file, portFile] = process.argv.slice(2);
const { size, mtimeMs } = statSync(file);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-length': String(size), etag: `"${size}-${Math.round(mtimeMs)}"`, 'accept-ranges': 'bytes' });
  createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
});
server.listen(0, '127.0.0.1', () => writeFileSync(portFile, String(server.address().port)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
