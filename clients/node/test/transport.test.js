// Transport rules the real search server cannot be made to show on demand (a stalled answer,
// a proxy's HTML error, a Retry-After hint, a port that opens late), checked over real HTTP
// against small node:http servers. Everything about the API itself is in live.test.js.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  AbortError, FileReadError, ImageSearchClient, ImageSearchError, TimeoutError, createClient, guessType,
} from '../src/index.js';

const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1]);

/** A real HTTP server whose handler the test decides; records what it received. */
async function serve(handler) {
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

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function freePort() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Parse a multipart body the way a server would: parts by name with filename, type and bytes. */
function multipart(record) {
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

describe('retries', () => {
  test('503 while the index loads is retried with backoff, then the answer is returned', async () => {
    const srv = await serve((req, res, _r, n) => {
      if (n < 3) json(res, 503, { status: 'loading', message: 'no index loaded yet' });
      else json(res, 200, { status: 'ready', total_vectors: 7 });
    });
    try {
      const retries = [];
      const client = new ImageSearchClient({ baseUrl: srv.url, retries: 5, retryDelay: 20, onRetry: (i) => retries.push(i) });
      assert.deepEqual(await client.health(), { status: 'ready', total_vectors: 7 });
      assert.equal(srv.seen.length, 3);
      assert.deepEqual(retries.map((r) => [r.attempt, r.status, r.message]), [
        [1, 503, 'no index loaded yet'],
        [2, 503, 'no index loaded yet'],
      ]);
      // Exponential: the second wait's ceiling is twice the first's (jitter keeps each in [d/2, d]).
      assert.ok(retries[0].delay >= 10 && retries[0].delay <= 20, `first delay ${retries[0].delay}`);
      assert.ok(retries[1].delay >= 20 && retries[1].delay <= 40, `second delay ${retries[1].delay}`);
    } finally {
      await srv.close();
    }
  });

  test('503 after the last retry throws with status, server message and attempts', async () => {
    const srv = await serve((req, res) => json(res, 503, { detail: 'no loadable index: CURRENT missing' }));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, retries: 2, retryDelay: 5 });
      const err = await client.stats().catch((e) => e);
      assert.ok(err instanceof ImageSearchError);
      assert.equal(err.status, 503);
      assert.equal(err.message, 'no loadable index: CURRENT missing');
      assert.equal(err.attempts, 3);
      assert.equal(err.retryable, true);
      assert.equal(srv.seen.length, 3);
    } finally {
      await srv.close();
    }
  });

  test('Retry-After is honoured, capped by maxRetryDelay', async () => {
    const srv = await serve((req, res, _r, n) =>
      n === 1 ? json(res, 503, { message: 'swapping' }, { 'retry-after': '120' }) : json(res, 200, []));
    try {
      const delays = [];
      const client = new ImageSearchClient({ baseUrl: srv.url, retryDelay: 1, maxRetryDelay: 60, onRetry: (i) => delays.push(i.delay) });
      const t0 = performance.now();
      assert.deepEqual(await client.similarTo(5), []);
      assert.deepEqual(delays, [60]);
      assert.ok(performance.now() - t0 >= 55);
    } finally {
      await srv.close();
    }
  });

  test('connection refused is retried until the server starts listening', async () => {
    const port = await freePort();
    const late = http.createServer((req, res) => json(res, 200, { status: 'ready', total_vectors: 1 }));
    const client = new ImageSearchClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 8, retryDelay: 40 });
    const started = new Promise((resolve) => setTimeout(() => late.listen(port, '127.0.0.1', resolve), 150));
    try {
      const refused = [];
      client.onRetry = (i) => refused.push(i.code);
      const health = await client.health();
      assert.equal(health.status, 'ready');
      assert.ok(refused.length >= 1 && refused.every((c) => c === 'ECONNREFUSED'), JSON.stringify(refused));
    } finally {
      await started;
      late.closeAllConnections();
      await new Promise((r) => late.close(r));
    }
  });

  test('connection refused after the last retry names the URL and the cause', async () => {
    const port = await freePort();
    const client = new ImageSearchClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 1, retryDelay: 5 });
    const err = await client.health().catch((e) => e);
    assert.ok(err instanceof ImageSearchError);
    assert.equal(err.status, 0);
    assert.equal(err.code, 'ECONNREFUSED');
    assert.equal(err.attempts, 2);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*connection refused`));
  });

  test('4xx is never retried', async () => {
    const srv = await serve((req, res) => json(res, 404, { detail: 'no image 99' }));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, retries: 5, retryDelay: 5 });
      const err = await client.similarTo(99).catch((e) => e);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'HTTP_404');
      assert.equal(err.message, 'no image 99');
      assert.equal(err.retryable, false);
      assert.equal(srv.seen.length, 1);
    } finally {
      await srv.close();
    }
  });
});

describe('timeouts and aborts', () => {
  test('a stalled server gives ETIMEDOUT after the timeout, not retried', async () => {
    const srv = await serve(() => {}); // never answers
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, timeout: 150, retries: 3 });
      const t0 = performance.now();
      const err = await client.stats().catch((e) => e);
      const took = performance.now() - t0;
      assert.ok(err instanceof ImageSearchError);
      assert.equal(err.code, 'ETIMEDOUT');
      assert.equal(err.status, 0);
      assert.match(err.message, /within 150 ms/);
      assert.ok(took >= 140 && took < 2000, `took ${took} ms`);
      assert.equal(srv.seen.length, 1);
    } finally {
      await srv.close();
    }
  });

  test('a per-call timeout overrides the client default, and the message says which deadline passed', async () => {
    const srv = await serve(() => {});
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, timeout: 60_000 });
      const err = await client.versions({ timeout: 80 }).catch((e) => e);
      assert.equal(err.code, 'ETIMEDOUT');
      assert.match(err.message, /within 80 ms \(this call's timeout option\)/);
      const upload = await client.searchByImage(Buffer.from(JPEG), { timeout: 60 }).catch((e) => e);
      assert.match(upload.message, /within 60 ms \(this call's timeout option\)/);
      const own = await new ImageSearchClient({ baseUrl: srv.url, timeout: 70 }).stats().catch((e) => e);
      assert.match(own.message, /within 70 ms \(the client's timeout option\)/);
    } finally {
      await srv.close();
    }
  });

  test("the caller's AbortSignal.timeout: a TimeoutError naming the caller's deadline, not the client's 30000 ms", async () => {
    const srv = await serve(() => {});
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url }); // the default timeout, 30000 ms
      const t0 = performance.now();
      const err = await client.stats({ signal: AbortSignal.timeout(40) }).catch((e) => e);
      assert.ok(err instanceof TimeoutError, String(err));
      assert.equal(err.code, 'ETIMEDOUT');
      assert.doesNotMatch(err.message, /30000/);
      assert.match(err.message, /: no answer before the caller's AbortSignal timed out \d+ ms into the call$/);
      assert.ok(performance.now() - t0 < 2_000);
      const upload = await client.checkDuplicate('e', Buffer.from(JPEG), { signal: AbortSignal.timeout(30) })
        .catch((e) => e);
      assert.match(upload.message, /the caller's AbortSignal timed out/);
      // The sooner deadline wins and is the one named.
      const sooner = await client.stats({ timeout: 5_000, signal: AbortSignal.timeout(30) }).catch((e) => e);
      assert.match(sooner.message, /caller's AbortSignal/);
      const tighter = await client.stats({ timeout: 30, signal: AbortSignal.timeout(5_000) }).catch((e) => e);
      assert.match(tighter.message, /within 30 ms \(this call's timeout option\)/);
    } finally {
      await srv.close();
    }
  });

  test("the caller's AbortSignal cancels the request and a pending retry", async () => {
    const srv = await serve((req, res) => json(res, 503, { message: 'loading' }));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, retries: 10, retryDelay: 5_000, maxRetryDelay: 5_000 });
      const t0 = performance.now();
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const err = await client.health({ signal: controller.signal }).catch((e) => e);
      assert.ok(err instanceof AbortError, String(err));
      assert.equal(err.code, 'EABORTED');
      assert.ok(performance.now() - t0 < 2_000);
      // A deadline (AbortSignal.timeout) passing while waiting to retry is a timeout, named as the caller's.
      const late = await client.health({ signal: AbortSignal.timeout(100) }).catch((e) => e);
      assert.ok(late instanceof TimeoutError, String(late));
      assert.match(late.message, /: the caller's AbortSignal timed out \d+ ms into the call, while waiting to retry after HTTP 503$/);
      assert.equal(late.attempts, 1);
      const aborted = new AbortController();
      aborted.abort();
      const early = await client.health({ signal: aborted.signal }).catch((e) => e);
      assert.ok(early instanceof AbortError, String(early));
    } finally {
      await srv.close();
    }
  });

  test("waitUntilIndexed: the caller's deadline is named, while polling and between polls", async () => {
    const srv = await serve((req, res) => json(res, 200, { id: 1, status: 'queued' }));
    const stalled = await serve(() => {});
    try {
      const between = await new ImageSearchClient(srv.url)
        .waitUntilIndexed(1, { interval: 5_000, signal: AbortSignal.timeout(100) }).catch((e) => e);
      assert.ok(between instanceof TimeoutError, String(between));
      assert.match(between.message, /^waitUntilIndexed\(1\): the caller's AbortSignal timed out \d+ ms into the wait \(last status: queued\)$/);
      const polling = await new ImageSearchClient(stalled.url)
        .waitUntilIndexed(1, { signal: AbortSignal.timeout(100) }).catch((e) => e);
      assert.ok(polling instanceof TimeoutError, String(polling));
      assert.match(polling.message, /the caller's AbortSignal timed out/);
      const own = await new ImageSearchClient(stalled.url).waitUntilIndexed(1, { timeout: 1_200 }).catch((e) => e);
      assert.ok(own instanceof TimeoutError, String(own));
      assert.match(own.message, /waitUntilIndexed's timeout of 1200 ms/);
    } finally {
      await srv.close();
      await stalled.close();
    }
  });
});

describe('errors and responses', () => {
  test('a server that cuts an upload off early: the error says the upload was probably too big', async () => {
    const server = http.createServer((req, res) => {
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"message": "too big"}', () => req.socket.destroy());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new ImageSearchClient({ baseUrl: `http://127.0.0.1:${server.address().port}`, retries: 3 });
      const err = await client.extractFeatures(Buffer.alloc(8 * 2 ** 20)).catch((e) => e);
      assert.ok(err instanceof ImageSearchError);
      if (err.status === 413) return; // the answer won the race: fine too
      assert.ok(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(err.code), err.code);
      assert.match(err.message, /^POST .*MAX_UPLOAD_MB/);
      assert.equal(err.attempts, 1, 'not retried');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("FastAPI validation lists become one readable message", async () => {
    const srv = await serve((req, res) => json(res, 422, {
      detail: [{ loc: ['body', 'top_k'], msg: 'Input should be less than or equal to 1000', type: 'less_than_equal' }],
    }));
    try {
      const err = await new ImageSearchClient({ baseUrl: srv.url }).searchSimilar([1, 2], 5000).catch((e) => e);
      assert.equal(err.status, 422);
      assert.equal(err.message, 'top_k: Input should be less than or equal to 1000');
      assert.equal(err.body.detail[0].type, 'less_than_equal');
    } finally {
      await srv.close();
    }
  });

  test("a non-JSON error page keeps its text; a non-JSON success is EBADRESPONSE", async () => {
    const srv = await serve((req, res) => {
      if (req.url === '/stats') { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<h1>Bad gateway</h1>'); }
      else { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{not json'); }
    });
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url });
      const bad = await client.stats().catch((e) => e);
      assert.equal(bad.status, 502);
      assert.equal(bad.message, '<h1>Bad gateway</h1>');
      const garbled = await client.versions().catch((e) => e);
      assert.equal(garbled.code, 'EBADRESPONSE');
      assert.equal(garbled.status, 200);
    } finally {
      await srv.close();
    }
  });
});

describe('requests', () => {
  test('seed calls: JSON bodies, API key header, filters, base path prefix', async () => {
    const srv = await serve((req, res) => json(res, 200, req.url.endsWith('/search') ? [] : { id: 1 }));
    try {
      const client = createClient({ baseUrl: `${srv.url}/api/v1`, apiKey: 'k3y' });
      await client.searchSimilar(new Float32Array([0.5, 0.25]), 3, { eventCode: 'e-1' }, { minScore: 0.25 });
      await client.searchSimilar([1, 0]);
      await client.addImage({ event_code: 'e-1', filename: 'a.jpg', file_path: '/uploads/a.jpg', vector: new Float64Array([1]) });
      const [s1, s2, add] = srv.seen;
      assert.equal(s1.url, '/api/v1/search');
      assert.equal(s1.headers['x-api-key'], 'k3y');
      assert.equal(s1.headers['content-type'], 'application/json');
      assert.deepEqual(JSON.parse(s1.body), { vector: [0.5, 0.25], top_k: 3, filters: { event_code: 'e-1' }, min_score: 0.25 });
      assert.deepEqual(JSON.parse(s2.body), { vector: [1, 0], top_k: 10 });
      assert.equal(add.url, '/api/v1/add_image');
      assert.deepEqual(JSON.parse(add.body), { event_code: 'e-1', filename: 'a.jpg', file_path: '/uploads/a.jpg', vector: [1] });
    } finally {
      await srv.close();
    }
  });

  test('checkVersions: POST /versions/check with the API key and no body, retried while the server loads', async () => {
    const integrity = { checks: 3, failures: 0, last_check_at: '2026-12-06T10:00:00Z', last_problem: null };
    const srv = await serve((req, res, record, n) => (n === 1 ? json(res, 503, { message: 'loading' })
      : json(res, 200, integrity)));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, apiKey: 'k', retryDelay: 1 });
      assert.deepEqual(await client.checkVersions(), integrity);
      assert.deepEqual(srv.seen.map((r) => [r.method, r.url, r.headers['x-api-key'], r.body.length]),
        [['POST', '/versions/check', 'k', 0], ['POST', '/versions/check', 'k', 0]]);
    } finally {
      await srv.close();
    }
  });

  test('User-Agent: image-similarity-client/<version> node/<version> on every request; headers can replace it', async () => {
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    const srv = await serve((req, res) => json(res, 200, []));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, apiKey: 'k' });
      await client.health();
      await client.searchSimilar([1, 0], 2);
      await client.searchByImage(Buffer.from(JPEG));
      await client.checkDuplicate('ev', Readable.from([Buffer.from(JPEG)]));
      await client.checkVersions();
      await client.request('DELETE', 'x');
      const agent = `image-similarity-client/${version} node/${process.version}`;
      assert.match(agent, /^image-similarity-client\/\d+\.\d+\.\d+\S* node\/v\d+\.\d+\.\d+$/);
      assert.deepEqual(srv.seen.map((r) => r.headers['user-agent']), Array(6).fill(agent));
      const own = new ImageSearchClient({ baseUrl: srv.url, headers: { 'User-Agent': 'guest-app/2.1', Accept: '*/*' } });
      await own.stats();
      assert.equal(srv.seen.at(-1).headers['user-agent'], 'guest-app/2.1', 'replaced, not joined');
      assert.equal(srv.seen.at(-1).headers.accept, '*/*');
    } finally {
      await srv.close();
    }
  });

  test('query strings and path segments are encoded; unset options are left out', async () => {
    const srv = await serve((req, res) => json(res, 200, req.url.includes('duplicates') ? { groups: [] } : []));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url });
      await client.similarTo('a/b c', { topK: 4, eventCode: 'ev', minScore: 0.5 });
      await client.similarTo(12);
      await client.eventDuplicates('ev 1');
      await client.similarShots('ev');
      assert.deepEqual(srv.seen.map((r) => r.url), [
        '/images/a%2Fb%20c/similar?top_k=4&event_code=ev&min_score=0.5',
        '/images/12/similar',
        '/events/ev%201/duplicates',
        '/events/ev/similar-shots',
      ]);
      assert.equal(srv.seen[0].headers['x-api-key'], undefined);
    } finally {
      await srv.close();
    }
  });

  test('uploads from a path, a file: URL, a Buffer, a Uint8Array, an ArrayBuffer, a Blob and a File', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgsim-client-'));
    const srv = await serve((req, res) => json(res, 200, { duplicate: false, matches: [] }));
    try {
      const path = join(dir, 'party.jpeg');
      await writeFile(path, JPEG);
      const client = new ImageSearchClient({ baseUrl: srv.url });
      await client.checkDuplicate('ev', path, { minScore: 0.9 });
      await client.searchByImage(pathToFileURL(path), { topK: 2, eventCode: 'ev', minScore: 0.1 });
      await client.extractFeatures(Buffer.from(JPEG));
      await client.extractFeatures(JPEG, { filename: 'named.jpg' });
      await client.extractFeatures(JPEG.buffer.slice(0));
      await client.extractFeatures(new Blob([JPEG]));
      await client.extractFeatures(new File([JPEG], 'file.png', { type: 'image/png' }));
      const parts = srv.seen.map(multipart);
      assert.deepEqual(parts.map((p) => [p.file.filename, p.file.type]), [
        ['party.jpeg', 'image/jpeg'], ['party.jpeg', 'image/jpeg'], ['upload', 'image/jpeg'],
        ['named.jpg', 'image/jpeg'], ['upload', 'image/jpeg'], ['upload', 'image/jpeg'], ['file.png', 'image/png'],
      ]);
      for (const p of parts) assert.deepEqual(new Uint8Array(p.file.data), JPEG);
      assert.equal(parts[0].min_score.data.toString(), '0.9');
      assert.deepEqual(Object.fromEntries(['top_k', 'event_code', 'min_score'].map((k) => [k, parts[1][k].data.toString()])),
        { top_k: '2', event_code: 'ev', min_score: '0.1' });
      assert.deepEqual(Object.keys(parts[2]), ['file']);
      assert.deepEqual(srv.seen.map((r) => r.url), ['/events/ev/duplicates/check', '/search/image',
        ...Array(5).fill('/extract_features')]);
    } finally {
      await srv.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('an upload file that cannot be read: FileReadError with its path and system code, nothing sent', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgsim-client-'));
    const srv = await serve((req, res) => json(res, 200, []));
    try {
      const client = new ImageSearchClient({ baseUrl: srv.url, retries: 3 });
      const missing = join(dir, 'missing.jpg');
      const cases = [
        ['a path', () => client.searchByImage(missing), 'ENOENT', missing],
        ['a file: URL', () => client.extractFeatures(pathToFileURL(missing)), 'ENOENT', missing],
        ['a directory', () => client.checkDuplicate('ev', dir), 'EISDIR', dir],
        ['a multer disk file', () => client.searchByImage({ originalname: 'a.jpg', path: missing }), 'ENOENT', missing],
        ['a file stream', () => client.searchByImage(createReadStream(missing)), 'ENOENT', missing],
        ['a multer stream of a directory', () => client.checkDuplicate('ev', { originalname: 'd.jpg',
          stream: createReadStream(dir) }), 'EISDIR', dir],
      ];
      for (const [what, call, code, path] of cases) {
        const err = await call().catch((e) => e);
        assert.ok(err instanceof FileReadError, `${what}: ${err?.name}: ${err?.message}`);
        assert.ok(err instanceof ImageSearchError, what);
        assert.deepEqual([err.code, err.path, err.status, err.retryable], [code, path, 0, false], what);
        assert.ok(err.message.includes(path) && err.message.includes(code), `${what}: ${err.message}`);
        assert.equal(err.cause?.code, code, what);
      }
      assert.match((await client.searchByImage(missing).catch((e) => e)).message,
        /^cannot read the upload .*missing\.jpg: no such file \(ENOENT\)$/);
      // Permission denied (as root, files are readable: the stream form shows the mapping).
      const denied = Object.assign(new Error("EACCES: permission denied, open '/srv/guest.jpg'"),
        { code: 'EACCES', syscall: 'open', path: '/srv/guest.jpg' });
      const stream = new Readable({ read() { this.destroy(denied); } });
      const err = await client.searchByImage(stream).catch((e) => e);
      assert.ok(err instanceof FileReadError, String(err));
      assert.deepEqual([err.code, err.path, err.message],
        ['EACCES', '/srv/guest.jpg', 'cannot read the upload /srv/guest.jpg: permission denied (EACCES)']);
      assert.equal(srv.seen.length, 0, 'nothing reached the server');
    } finally {
      await srv.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('metrics() returns the Prometheus text as is', async () => {
    const srv = await serve((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('up 1\n'); });
    try {
      assert.equal(await new ImageSearchClient({ baseUrl: srv.url }).metrics(), 'up 1\n');
    } finally {
      await srv.close();
    }
  });
});

describe('bad input fails before any request', () => {
  let srv;
  let client;
  before(async () => {
    srv = await serve((req, res) => json(res, 200, {}));
    client = new ImageSearchClient({ baseUrl: srv.url });
  });
  after(() => srv.close());

  test('vectors must be finite numbers', async () => {
    await assert.rejects(client.searchSimilar([1, Number.NaN]), /vector\[1\] is NaN/);
    await assert.rejects(client.searchSimilar([Infinity]), /finite/);
    await assert.rejects(client.searchSimilar('1,2'), TypeError);
    await assert.rejects(client.addImage({ event_code: 'e', vector: [Number.NaN] }), /finite/);
    await assert.rejects(client.addImage(null), /addImage/);
  });

  test('uploads must be a path, bytes or a Blob', async () => {
    await assert.rejects(client.extractFeatures(42), /upload must be a file path/);
    await assert.rejects(client.checkDuplicate('ev', { data: 1 }), /got Object/);
    await assert.rejects(client.searchByImage('/no/such/file.jpg'), { code: 'ENOENT' });
  });

  test('ids and codes must be non-empty', async () => {
    await assert.rejects(client.similarTo(''), /idOrCode/);
    await assert.rejects(client.eventDuplicates(undefined), /eventCode/);
  });

  test('options are checked at construction', () => {
    assert.throws(() => new ImageSearchClient({ baseUrl: 'not a url' }), /baseUrl is not a URL/);
    assert.throws(() => new ImageSearchClient({ baseUrl: 'ftp://x' }), /http/);
    assert.throws(() => new ImageSearchClient({ timeout: -1 }), /timeout/);
    assert.throws(() => new ImageSearchClient({ retries: 'x' }), /retries/);
  });

  test('nothing reached the server', () => {
    assert.equal(srv.seen.length, 0);
  });
});

test('guessType trusts the bytes over the name', () => {
  assert.equal(guessType(JPEG, 'x.png'), 'image/jpeg');
  assert.equal(guessType(Buffer.from('GIF89a'), 'x'), 'image/gif');
  assert.equal(guessType(Buffer.from('RIFF\0\0\0\0WEBP'), 'x'), 'image/webp');
  assert.equal(guessType(Buffer.from('hello'), 'notes.tiff'), 'image/tiff');
  assert.equal(guessType(Buffer.from('hello'), 'notes.txt'), 'application/octet-stream');
});
