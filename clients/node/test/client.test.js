// The seed's constructor and calls, typed errors, retries only where safe, response headers,
// stream uploads and waitUntilIndexed, over real HTTP against small node:http servers.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';

import {
  AuthenticationError, ConflictError, ConnectionError, ImageSearchClient, ImageSearchError, ImageSimilarityClient,
  NotFoundError, PayloadTooLargeError, RateLimitError, ServerError, TimeoutError, UnavailableError,
  UnsupportedMediaError, ValidationError, WaitTimeoutError, responseOf,
} from '../src/index.js';
import { freePort, json, multipart, serve } from './http.js';

const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 2, 3, 4, 5]);

describe('the seed constructor', () => {
  test('a base URL string, as the original README does; the old name is the same class', async () => {
    const srv = await serve((req, res) => json(res, 200, { status: 'ready', total_vectors: 3 }));
    try {
      const client = new ImageSimilarityClient(`${srv.url}/prefix`);
      assert.equal(client.baseURL, `${srv.url}/prefix/`);
      assert.deepEqual(await client.health(), { status: 'ready', total_vectors: 3 });
      assert.equal(srv.seen[0].url, '/prefix/');
      assert.equal(new ImageSimilarityClient(new URL(srv.url)).baseUrl, `${srv.url}/`);
      assert.equal(new ImageSimilarityClient({ baseURL: srv.url }).baseUrl, `${srv.url}/`);
      assert.equal(ImageSearchClient, ImageSimilarityClient);
    } finally {
      await srv.close();
    }
  });

  test('an argument it does not understand throws', () => {
    assert.throws(() => new ImageSimilarityClient({ baseurl: 'http://x' }), /unknown ImageSimilarityClient option baseurl/);
    assert.throws(() => new ImageSimilarityClient({ url: 'http://x', retry: 1 }), /options url, retry \(known: baseUrl/);
    assert.throws(() => new ImageSimilarityClient(8000), /base URL string or an options object, got number/);
    assert.throws(() => new ImageSimilarityClient(['http://x']), /got an array/);
    assert.throws(() => new ImageSimilarityClient('localhost:8000'), /http/);
    assert.throws(() => new ImageSimilarityClient('not a url'), /not a URL/);
    assert.throws(() => new ImageSimilarityClient({ baseUrl: 'http://a', baseURL: 'http://b' }), /give one/);
    assert.throws(() => new ImageSimilarityClient({ onRetry: 'log' }), /onRetry must be a function/);
  });

  test('filters the server does not know are refused before sending', async () => {
    const client = new ImageSimilarityClient('http://127.0.0.1:9');
    await assert.rejects(client.searchSimilar([1, 0], 5, { event: 'x' }), /unknown filter "event"/);
    await assert.rejects(client.searchSimilar([1, 0], 5, { event_code: 'x', min_score: 1 }), /unknown filter/);
  });
});

describe('typed errors', () => {
  const cases = [
    [400, ValidationError], [422, ValidationError], [401, AuthenticationError], [403, AuthenticationError],
    [404, NotFoundError], [409, ConflictError], [413, PayloadTooLargeError], [415, UnsupportedMediaError],
    [429, RateLimitError], [500, ServerError], [502, UnavailableError], [503, UnavailableError],
    [504, UnavailableError],
  ];
  test('one class per kind of HTTP failure, with status, message and headers', async () => {
    const srv = await serve((req, res) => {
      const status = Number(req.url.split('=')[1]);
      json(res, status, { message: `status ${status}` }, { 'x-request-id': `r${status}` });
    });
    try {
      const client = new ImageSimilarityClient({ baseUrl: srv.url, retries: 0 });
      for (const [status, Kind] of cases) {
        const err = await client.request('GET', 'x', { query: { s: status } }).catch((e) => e);
        assert.ok(err instanceof Kind, `${status} -> ${err.name}`);
        assert.ok(err instanceof ImageSearchError);
        assert.equal(err.name, Kind.name);
        assert.deepEqual([err.status, err.code, err.message], [status, `HTTP_${status}`, `status ${status}`]);
        assert.equal(err.headers.get('x-request-id'), `r${status}`);
      }
    } finally {
      await srv.close();
    }
  });

  test('no answer: TimeoutError or ConnectionError', async () => {
    const stalled = await serve(() => {});
    try {
      const err = await new ImageSimilarityClient({ baseUrl: stalled.url, timeout: 50 }).stats().catch((e) => e);
      assert.ok(err instanceof TimeoutError && err.code === 'ETIMEDOUT', err.name);
    } finally {
      await stalled.close();
    }
    const port = await freePort();
    const err = await new ImageSimilarityClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 0 }).stats()
      .catch((e) => e);
    assert.ok(err instanceof ConnectionError && err.code === 'ECONNREFUSED', err.name);
  });
});

describe('retries only where safe', () => {
  test('idempotent calls retry 503/502/429; a plain POST through request() does not', async () => {
    const srv = await serve((req, res, record, n) => {
      if (req.url.startsWith('/custom')) return json(res, 503, { message: 'busy' });
      if (n % 2 === 1) return json(res, [503, 502, 429][Math.floor(n / 2) % 3], { message: 'busy' });
      return json(res, 200, req.url === '/search' ? [] : { id: 1, created: false });
    });
    try {
      const client = new ImageSimilarityClient({ baseUrl: srv.url, retries: 2, retryDelay: 1 });
      assert.deepEqual(await client.searchSimilar([1, 0], 2), []);
      assert.deepEqual(await client.addImage({ event_code: 'e', filename: 'a', file_path: '/a' }),
        { id: 1, created: false });
      assert.deepEqual(await client.stats(), { id: 1, created: false });
      assert.equal(srv.seen.length, 6);
      const err = await client.request('POST', 'custom', { json: {} }).catch((e) => e);
      assert.ok(err instanceof UnavailableError);
      assert.equal(err.attempts, 1, 'a POST that may not be idempotent is not repeated');
      const ok = await client.request('POST', 'custom', { json: {}, idempotent: true }).catch((e) => e);
      assert.equal(ok.attempts, 3, 'unless the caller says it is');
    } finally {
      await srv.close();
    }
  });

  test('a stream upload is sent once: never retried', async () => {
    const srv = await serve((req, res) => json(res, 503, { message: 'loading' }));
    try {
      const client = new ImageSimilarityClient({ baseUrl: srv.url, retries: 5, retryDelay: 1 });
      const err = await client.searchByImage(Readable.from([Buffer.from(JPEG)])).catch((e) => e);
      assert.ok(err instanceof UnavailableError);
      assert.equal(err.attempts, 1);
      assert.equal(srv.seen.length, 1);
      const again = await client.searchByImage(Buffer.from(JPEG)).catch((e) => e);
      assert.equal(again.attempts, 6, 'bytes can be sent again');
    } finally {
      await srv.close();
    }
  });
});

describe('response headers', () => {
  test('responseOf(result) and onResponse give the status and headers (X-Deleted-Filter)', async () => {
    const srv = await serve((req, res) => json(res, 200, [{ id: 1 }], { 'x-deleted-filter': 'skipped' }));
    try {
      const seen = [];
      const client = new ImageSimilarityClient({ baseUrl: srv.url, onResponse: (r) => seen.push(r.status) });
      let perCall;
      const hits = await client.searchSimilar([1, 0], 1, null, { onResponse: (r) => { perCall = r; } });
      assert.deepEqual(hits, [{ id: 1 }]);
      assert.equal(responseOf(hits).headers.get('x-deleted-filter'), 'skipped');
      assert.equal(responseOf(hits).status, 200);
      assert.equal(perCall.headers.get('x-deleted-filter'), 'skipped');
      assert.deepEqual(seen, [200]);
      assert.equal(responseOf({}), undefined);
    } finally {
      await srv.close();
    }
  });
});

describe('stream uploads', () => {
  async function received(upload, options) {
    const srv = await serve((req, res) => json(res, 200, []));
    try {
      await new ImageSimilarityClient(srv.url).searchByImage(upload, { topK: 3, ...options });
      return multipart(srv.seen[0]);
    } finally {
      await srv.close();
    }
  }

  test('a Node Readable (busboy, S3 getObject), chunk by chunk, typed from its first bytes', async () => {
    const parts = await received(Readable.from([Buffer.from(JPEG.subarray(0, 3)), Buffer.from(JPEG.subarray(3))]),
      { filename: 'guest "1".jpg' });
    assert.deepEqual([...parts.file.data], [...JPEG]);
    assert.equal(parts.file.type, 'image/jpeg');
    assert.equal(parts.file.filename, 'guest %221%22.jpg');
    assert.equal(parts.top_k.data.toString(), '3');
  });

  test('a web ReadableStream and an async generator', async () => {
    const web = new Blob([JPEG]).stream();
    assert.deepEqual([...(await received(web)).file.data], [...JPEG]);
    async function* gen() { yield JPEG.subarray(0, 5); yield JPEG.subarray(5); }
    const parts = await received(gen(), { filename: 'g.jpg' });
    assert.deepEqual([[...parts.file.data], parts.file.filename], [[...JPEG], 'g.jpg']);
  });

  test('multer file objects: memory (buffer), disk (path), stream; their name and type are kept', async () => {
    const memory = await received({ fieldname: 'photo', originalname: 'cat.jpg', mimetype: 'image/jpeg',
      buffer: Buffer.from(JPEG) });
    assert.deepEqual([memory.file.filename, memory.file.type, [...memory.file.data]], ['cat.jpg', 'image/jpeg', [...JPEG]]);
    const streamed = await received({ originalname: 'dog.png', mimetype: 'image/png', stream: Readable.from([JPEG]) });
    assert.deepEqual([streamed.file.filename, streamed.file.type], ['dog.png', 'image/png']);
  });

  test('a stream that fails midway rejects the call', async () => {
    const srv = await serve((req, res) => json(res, 200, []));
    try {
      const broken = new Readable({ read() { this.push(Buffer.from(JPEG)); this.destroy(new Error('disk gone')); } });
      const err = await new ImageSimilarityClient(srv.url).searchByImage(broken).catch((e) => e);
      assert.ok(err instanceof ImageSearchError, String(err));
    } finally {
      await srv.close();
    }
  });
});

describe('imageStatus and waitUntilIndexed', () => {
  test('polls until indexed and resolves with the status', async () => {
    const srv = await serve((req, res, record, n) => json(res, 200, {
      id: 7, status: n < 3 ? 'queued' : n < 4 ? 'embedded' : 'indexed', index_version: n < 4 ? null : 2,
    }));
    try {
      const client = new ImageSimilarityClient(srv.url);
      assert.equal((await client.imageStatus(7)).status, 'queued');
      const steps = [];
      const done = await client.waitUntilIndexed(7, { interval: 10, timeout: 5_000, onStatus: (s) => steps.push(s.status) });
      assert.deepEqual([done.status, done.index_version], ['indexed', 2]);
      assert.deepEqual(steps, ['queued', 'embedded', 'indexed']);
      assert.equal(srv.seen.at(-1).url, '/images/7');
    } finally {
      await srv.close();
    }
  });

  test('gives up after its timeout with the last status; a failed image throws its reason', async () => {
    const srv = await serve((req, res) => json(res, 200, req.url.endsWith('/bad')
      ? { id: 2, status: 'failed', error: 'cannot identify image file' } : { id: 1, status: 'queued' }));
    try {
      const client = new ImageSimilarityClient(srv.url);
      const t0 = performance.now();
      const err = await client.waitUntilIndexed(1, { interval: 20, timeout: 150 }).catch((e) => e);
      assert.ok(err instanceof WaitTimeoutError, String(err));
      assert.equal(err.code, 'EWAITTIMEOUT');
      assert.equal(err.last.status, 'queued');
      assert.ok(performance.now() - t0 < 2_000);
      const failed = await client.waitUntilIndexed('bad', { timeout: 1_000 }).catch((e) => e);
      assert.equal(failed.code, 'EFAILED');
      assert.match(failed.message, /cannot identify image file/);
    } finally {
      await srv.close();
    }
  });
});
