// Small real HTTP servers for the transport tests: the handler is the test's, every request is recorded.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';

/** A real HTTP server whose handler the test decides; records what it received. */
export async function serve(handler) {
  const seen = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const record = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) };
    seen.push(record);
    await handler(req, res, record, seen.length);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

export function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export async function freePort() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Parse a multipart body the way a server would: parts by name with filename, type and bytes. */
export function multipart(record) {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(record.headers['content-type']);
  assert.ok(boundary, `multipart boundary in ${record.headers['content-type']}`);
  const sep = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts = {};
  let start = record.body.indexOf(sep) + sep.length;
  for (;;) {
    const next = record.body.indexOf(sep, start);
    if (next === -1) break;
    const chunk = record.body.subarray(start + 2, next - 2); // strip CRLF after boundary and before next
    const split = chunk.indexOf('\r\n\r\n');
    const head = chunk.subarray(0, split).toString();
    const name = /name="([^"]*)"/.exec(head)[1];
    parts[name] = {
      filename: /filename="([^"]*)"/.exec(head)?.[1],
      type: /content-type:\s*([^\r\n]+)/i.exec(head)?.[1],
      data: chunk.subarray(split + 4),
    };
    start = next + sep.length;
  }
  return parts;
}

