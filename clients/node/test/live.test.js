// Every method against a real search server (python -m serving from the project's venv) over an
// index built from the sample photos: answers, errors, retries while the index loads, hot-swap.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { ImageSearchClient, ImageSearchError } from '../src/index.js';
import { startLiveServer } from './live.js';

/** Each route of the server and the client method that calls it. */
const ROUTES = {
  'GET /': 'health',
  'POST /search': 'searchSimilar',
  'POST /add_image': 'addImage',
  'POST /extract_features': 'extractFeatures',
  'GET /stats': 'stats',
  'POST /search/image': 'searchByImage',
  'GET /images/{id_or_code}': 'imageStatus',
  'GET /images/{id_or_code}/similar': 'similarTo',
  'GET /events/{event_code}/duplicates': 'eventDuplicates',
  'GET /events/{event_code}/similar-shots': 'similarShots',
  'POST /events/{event_code}/duplicates/check': 'checkDuplicate',
  'GET /versions': 'versions',
  'POST /versions/check': 'checkVersions',
  'GET /metrics': 'metrics',
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let live;
let client; // with the API key, no retries: a failure shows at once
let v1; // the first published version

/** The rejection of `promise`, which must be an ImageSearchError with a 4xx and a message. */
async function clientError(promise, status) {
  const err = await promise.then(
    (value) => assert.fail(`expected HTTP ${status ?? '4xx'}, got ${JSON.stringify(value).slice(0, 200)}`),
    (e) => e,
  );
  assert.ok(err instanceof ImageSearchError, `not an ImageSearchError: ${err}`);
  if (status) assert.equal(err.status, status, `${err.status} ${err.message}`);
  else assert.ok(err.status >= 400 && err.status < 500, `${err.status} ${err.message}`);
  assert.ok(err.message.length > 5, 'the server said why');
  assert.equal(err.attempts, 1, '4xx is not retried');
  return err;
}

function assertHits(hits) {
  assert.ok(Array.isArray(hits));
  for (const h of hits) {
    assert.equal(typeof h.id, 'number');
    assert.equal(typeof h.filename, 'string');
    assert.equal(typeof h.similarity_score, 'number');
    assert.match(h.event_code, UUID);
    assert.match(h.code, UUID);
  }
  for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].similarity_score >= hits[i].similarity_score, 'best first');
}

describe('against a live search server', { timeout: 240_000 }, () => {
  before(async () => {
    live = await startLiveServer();
    client = new ImageSearchClient({ baseUrl: live.baseUrl, apiKey: live.apiKey, retries: 0, timeout: 30_000 });
  });

  after(async () => {
    await live?.stop();
  });

  test('before any index is published: 503 with the reason; retries carry the client through the first publish', async () => {
    const err = await client.health().catch((e) => e);
    assert.ok(err instanceof ImageSearchError, String(err));
    assert.equal(err.status, 503);
    assert.equal(err.retryable, true);
    assert.ok(err.message, 'a reason');
    const stats = await client.similarTo(live.images[0].id).catch((e) => e);
    assert.equal(stats.status, 503);

    const waits = [];
    const patient = new ImageSearchClient({
      baseUrl: live.baseUrl, retries: 60, retryDelay: 100, maxRetryDelay: 1_000, onRetry: (i) => waits.push(i),
    });
    const [health, published] = await Promise.all([patient.health(), live.publish()]);
    v1 = published;
    assert.equal(health.status, 'ready');
    assert.equal(health.total_vectors, published.count);
    assert.equal(published.count, live.images.length);
    assert.ok(waits.length >= 1, 'at least one 503 was retried');
    assert.ok(waits.every((w) => w.status === 503), JSON.stringify(waits.map((w) => w.status)));
  });

  test('health, stats, versions', async () => {
    const health = await client.health();
    assert.deepEqual([health.status, health.total_vectors, health.index_version], ['ready', v1.count, v1.version]);
    assert.equal(health.model_version, live.modelVersion);

    const stats = await client.stats();
    assert.equal(stats.total_vectors_faiss, v1.count);
    assert.equal(stats.total_images_db, live.images.length);
    assert.ok(stats.index_size_mb > 0);
    assert.equal(stats.index_version, v1.version);

    const versions = await client.versions();
    assert.equal(versions.current, v1.version);
    assert.equal(versions.served, v1.version);
    assert.ok(versions.versions.some((v) => v.version === v1.version && v.count === v1.count));
  });

  test('checkVersions: POST /versions/check re-hashes the served files now (API key required)', async () => {
    const before = await client.checkVersions();
    assert.deepEqual(Object.keys(before).sort(), ['checks', 'failures', 'last_check_at', 'last_problem']);
    assert.ok(before.checks >= 1, JSON.stringify(before));
    assert.equal(before.failures, 0);
    assert.equal(before.last_problem, null);
    assert.ok(!Number.isNaN(Date.parse(before.last_check_at)), before.last_check_at);
    const after = await client.checkVersions();
    assert.ok(after.checks > before.checks, `${before.checks} -> ${after.checks}`);
    assert.ok((await client.stats()).integrity.checks >= after.checks);
    await clientError(new ImageSearchClient({ baseUrl: live.baseUrl, retries: 0 }).checkVersions(), 401);
    await clientError(new ImageSearchClient({ baseUrl: live.baseUrl, apiKey: 'wrong', retries: 0 }).checkVersions(), 403);
  });

  test("every route in the server's OpenAPI document has a client method, listed in the README", async () => {
    const document = await (await fetch(`${live.baseUrl}/openapi.json`)).json();
    const served = Object.entries(document.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`)).sort();
    assert.deepEqual(served, Object.keys(ROUTES).sort(), 'a route without a method (or a method without a route)');
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    for (const [route, method] of Object.entries(ROUTES)) {
      assert.equal(typeof client[method], 'function', `${route}: client.${method}()`);
      const path = route.split(' ')[1];
      assert.ok(readme.includes(`\`${route.split(' ')[0]} ${path}\``) && readme.includes(`\`${method}(`),
        `README methods table: ${method} for ${route}`);
    }
  });

  test('extractFeatures then searchSimilar (the seed flow) finds the photo itself first', async () => {
    const target = live.images[2];
    const features = await client.extractFeatures(target.path);
    assert.equal(features.vector.length, features.dim);
    assert.ok(features.processing_time >= 0);
    const norm = Math.hypot(...features.vector);
    assert.ok(Math.abs(norm - 1) < 1e-3, `L2-normalised (${norm})`);

    const hits = await client.searchSimilar(features.vector, 5);
    assertHits(hits);
    assert.equal(hits.length, 5);
    assert.equal(hits[0].id, target.id);
    assert.ok(hits[0].similarity_score > 0.99, String(hits[0].similarity_score));

    const typed = await client.searchSimilar(Float32Array.from(features.vector), 5);
    assert.deepEqual(typed.map((h) => h.id), hits.map((h) => h.id));

    const other = await client.searchSimilar(features.vector, 50, { event_code: live.otherEventCode });
    assertHits(other);
    const inOther = live.images.filter((i) => i.eventCode === live.otherEventCode).length;
    assert.equal(other.length, inOther);
    assert.ok(other.every((h) => h.event_code === live.otherEventCode));

    const strict = await client.searchSimilar(features.vector, 50, {}, { minScore: 0.99 });
    assert.deepEqual(strict.map((h) => h.id), [target.id]);
  });

  test('searchByImage accepts a path, a Buffer and a Blob, with topK, event and score filters', async () => {
    const { probe, probeOf } = live.files;
    const byPath = await client.searchByImage(probe, { topK: 3 });
    assertHits(byPath);
    assert.equal(byPath.length, 3);
    assert.equal(byPath[0].id, probeOf);

    const bytes = await readFile(probe);
    const byBuffer = await client.searchByImage(bytes, { topK: 3 });
    const byBlob = await client.searchByImage(new Blob([bytes]), { topK: 3, filename: 'guest.jpg' });
    assert.deepEqual(byBuffer.map((h) => h.id), byPath.map((h) => h.id));
    assert.deepEqual(byBlob.map((h) => h.id), byPath.map((h) => h.id));

    const elsewhere = await client.searchByImage(probe, { topK: 50, eventCode: live.otherEventCode });
    assert.ok(elsewhere.length > 0 && elsewhere.every((h) => h.event_code === live.otherEventCode));
    assert.ok(!elsewhere.some((h) => h.id === probeOf));

    const sure = await client.searchByImage(probe, { topK: 50, minScore: byPath[0].similarity_score - 1e-4 });
    assert.deepEqual(sure.map((h) => h.id), [probeOf]);
  });

  test('similarTo by id and by code, itself excluded, within an event', async () => {
    const [original, copy] = live.files.duplicatePair;
    const byId = await client.similarTo(original, { topK: 5 });
    assertHits(byId);
    assert.ok(!byId.some((h) => h.id === original), 'the image itself is excluded');
    assert.equal(byId[0].id, copy, 'its re-saved copy is the nearest');

    const code = live.images.find((i) => i.id === original).code;
    const byCode = await client.similarTo(code, { topK: 5 });
    assert.deepEqual(byCode, byId);

    const inEvent = await client.similarTo(original, { topK: 50, eventCode: live.otherEventCode });
    assert.ok(inEvent.length > 0 && inEvent.every((h) => h.event_code === live.otherEventCode));

    const close = await client.similarTo(original, { topK: 50, minScore: 0.9 });
    assert.ok(close.every((h) => h.similarity_score >= 0.9));
    assert.ok(close.some((h) => h.id === copy));
  });

  test('eventDuplicates: the re-saved copy is a group with its original, verified; another event has none', async () => {
    const [original, copy] = live.files.duplicatePair;
    const found = await client.eventDuplicates(live.eventCode);
    assert.equal(found.event_code, live.eventCode);
    const group = found.groups.find((g) => g.images.some((i) => i.id === original));
    assert.ok(group, `a group with image ${original}: ${JSON.stringify(found.groups)}`);
    assert.deepEqual(group.images.map((i) => i.id).sort((a, b) => a - b), [original, copy].sort((a, b) => a - b));
    assert.ok(group.score > 0 && group.score <= 1);
    for (const i of group.images) assert.match(i.code, UUID);

    const other = await client.eventDuplicates(live.otherEventCode);
    assert.ok(!other.groups.some((g) => g.images.some((i) => i.id === original)));
    const shots = await client.similarShots(live.eventCode);
    assert.equal(shots.event_code, live.eventCode);
    assert.ok(shots.groups.every((g) => !(g.images.some((i) => i.id === original) && g.images.some((i) => i.id === copy))),
      'a copy is never another shot of its own original');
  });

  test('checkDuplicate: a second upload of a photo is a copy; a new photo and another event are not', async () => {
    const { probe, probeOf, fresh } = live.files;
    const again = await client.checkDuplicate(live.eventCode, probe);
    assert.equal(again.duplicate, true);
    assertHits(again.matches);
    assert.equal(again.matches[0].id, probeOf);
    assert.equal(again.matches[0].relation, 'copy');
    assert.equal(typeof again.matches[0].verdict.reason, 'string');

    const newPhoto = await client.checkDuplicate(live.eventCode, fresh[0]);
    assert.equal(newPhoto.duplicate, false, JSON.stringify(newPhoto.matches));
    assert.ok(newPhoto.matches.every((m) => m.relation !== 'copy'));

    const otherEvent = await client.checkDuplicate(live.otherEventCode, probe);
    assert.equal(otherEvent.duplicate, false);

    const few = await client.checkDuplicate(live.eventCode, fresh[0], { topK: 3, minScore: 0 });
    assert.equal(few.matches.length, 3);
    assert.ok(few.matches.every((m) => m.event_code === live.eventCode));
    const none = await client.checkDuplicate(live.eventCode, fresh[0], { minScore: 0.9999 });
    assert.deepEqual(none.matches, []);
  });

  test("the README's first search works as written", async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const example = /## First search[^\n]*\n\n```js\n([\s\S]*?)```/.exec(readme)[1];
    const photo = live.images[3];
    const source = `${example
      .replace("from 'image-similarity-client'", `from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)}`)
      .replace("'http://localhost:8000'", JSON.stringify(live.baseUrl))
      .replace("'./photos/cat.jpg'", JSON.stringify(photo.path))
      .replace('console.log(results);', '')}\nexport { results };\n`;
    assert.ok(source.includes(live.baseUrl) && source.includes(photo.path), 'the example names the URL and a photo');
    const dir = await mkdtemp(join(tmpdir(), 'imgsim-readme-'));
    try {
      const file = join(dir, 'example.mjs');
      await writeFile(file, source);
      const { results } = await import(pathToFileURL(file).href);
      assert.equal(results.length, 5);
      assert.equal(results[0].id, photo.id);
      assertHits(results);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('errors: the right 4xx and the server message, never retried', async () => {
    const dims = await clientError(client.searchSimilar([0.1, 0.2, 0.3], 5), 422);
    assert.match(dims.message, /dim|dimension|values|expects/i);
    await clientError(client.searchSimilar([1, 0], 0));
    await clientError(client.searchSimilar([1, 0], 1_000_000));
    await clientError(client.searchSimilar([1, 0], 5, { event_code: 'not-a-uuid' }), 422);

    const unknown = await clientError(client.similarTo(987654321), 404);
    assert.match(unknown.message, /987654321/);
    await clientError(client.similarTo('not-a-uuid'), 422);
    await clientError(client.similarTo(live.images[0].id, { topK: 0 }), 422);
    await clientError(client.similarTo(live.images[0].id, { eventCode: 'nope' }), 422);

    await clientError(client.eventDuplicates('nope'), 422);
    await clientError(client.similarShots('nope'), 422);
    await clientError(client.checkDuplicate(live.eventCode, live.files.probe, { minScore: 2 }), 422);

    const notImage = await clientError(client.checkDuplicate(live.eventCode, live.files.notImage));
    assert.match(notImage.message, /image/i);
    await clientError(client.extractFeatures(live.files.truncated));
    await clientError(client.searchByImage(Buffer.alloc(0)), 422);
    await clientError(client.searchByImage(live.files.probe, { topK: 0 }), 422);

    const tooBig = Buffer.alloc(Math.ceil((live.maxUploadMb + 0.5) * 2 ** 20), 1);
    tooBig.set([0xff, 0xd8, 0xff, 0xe0]);
    const big = await client.extractFeatures(tooBig).catch((e) => e);
    assert.ok(big instanceof ImageSearchError, String(big));
    assert.equal(big.attempts, 1, 'not retried');
    assert.equal(big.status, 413, `${big.code}: ${big.message}`);
    assert.match(big.message, /MB/);
  });

  test('addImage: the API key is required, bad rows are refused, a good one is queued', async () => {
    const { addable } = live.files;
    const row = { event_code: live.eventCode, filename: addable.filename, file_path: addable.file_path };

    const anonymous = new ImageSearchClient({ baseUrl: live.baseUrl, retries: 0 });
    await clientError(anonymous.addImage(row), 401);
    const wrongKey = new ImageSearchClient({ baseUrl: live.baseUrl, apiKey: 'wrong', retries: 0 });
    await clientError(wrongKey.addImage(row), 403);

    const escape = await clientError(client.addImage({ ...row, file_path: '../../etc/passwd' }), 422);
    assert.match(escape.message, /IMAGE_ROOT|outside/i);
    await clientError(client.addImage({ ...row, file_path: '/uploads/missing.jpg' }), 422);
    await clientError(client.addImage({ ...row, event_code: '00000000-0000-4000-8000-000000000000' }), 422);
    await clientError(client.addImage({ ...row, event_code: 'nope' }), 422);
    await clientError(client.addImage({ ...row, vector: [1, 2, 3] }), 422);

    const added = await client.addImage({ ...row, metadata: { mime_type: 'image/jpeg' } });
    assert.equal(typeof added.id, 'number');
    assert.equal(added.faiss_index, null);
    assert.equal(added.message, 'success');
    assert.equal(added.status, 'queued');
    assert.equal(added.event_code, live.eventCode);
    live.added = added;

    const notYet = await clientError(client.similarTo(added.id), 404);
    assert.match(notYet.message, /not embedded yet|not in index/);
    const stats = await client.stats();
    assert.equal(stats.total_images_db, live.images.length + 1);
    assert.equal(stats.total_vectors_faiss, v1.count);
  });

  test('hot-swap seen from the client: a new version under load, not one failed request', async () => {
    const { added } = live;
    assert.ok(added, 'addImage test ran');
    const probeVector = (await client.extractFeatures(live.images[3].path)).vector;
    const loadClient = new ImageSearchClient({ baseUrl: live.baseUrl, retries: 0, timeout: 20_000 });
    const failures = [];
    const versionsSeen = new Set();
    let requests = 0;
    let running = true;
    const calls = [
      async () => versionsSeen.add((await loadClient.health()).index_version),
      async () => assert.equal((await loadClient.similarTo(live.images[3].id, { topK: 5 })).length, 5),
      async () => assert.equal((await loadClient.searchSimilar(probeVector, 5))[0].id, live.images[3].id),
      async () => assert.ok((await loadClient.similarTo(live.images[4].code, { eventCode: live.eventCode })).length),
    ];
    const worker = async (n) => {
      for (let i = n; running; i++) {
        try {
          await calls[i % calls.length]();
        } catch (err) {
          failures.push(`${err.status ?? ''} ${err.message}`);
        }
        requests++;
      }
    };
    const workers = [0, 1, 2, 3].map(worker);

    const v2 = await live.publish();
    assert.equal(v2.mode, 'merge');
    assert.ok(v2.version > v1.version);
    assert.equal(v2.count, v1.count + 1);
    assert.deepEqual(v2.embedded, [added.id]);

    const deadline = Date.now() + 30_000;
    let served;
    while (Date.now() < deadline) {
      served = (await client.versions()).served;
      if (served === v2.version) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300)); // a little load on the new version too
    running = false;
    await Promise.all(workers);

    assert.equal(served, v2.version, 'the server swapped to the new version');
    assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
    assert.ok(requests >= 20, `only ${requests} requests during the swap`);
    assert.ok(versionsSeen.has(v1.version) && versionsSeen.has(v2.version), JSON.stringify([...versionsSeen]));

    // The photo registered through addImage is searchable now.
    const found = await client.searchByImage(live.files.addable.path, { topK: 1 });
    assert.equal(found[0].id, added.id);
    assert.ok(found[0].similarity_score > 0.99);
    assert.ok((await client.similarTo(added.id, { topK: 3 })).length === 3);

    const versions = await client.versions();
    assert.equal(versions.current, v2.version);
    assert.ok([v1.version, v2.version].every((v) => versions.versions.some((x) => x.version === v)));
    const stats = await client.stats();
    assert.equal(stats.total_vectors_faiss, v2.count);
    assert.ok(stats.swap.swaps >= 1);
  });

  test('metrics: Prometheus text with the served version and the swap', async () => {
    const text = await client.metrics();
    assert.match(text, /^# (HELP|TYPE) /m);
    const version = /^imgsim_index_version(?:\{\})? ([\d.e+]+)$/m.exec(text);
    assert.ok(version, 'imgsim_index_version gauge');
    assert.ok(Number(version[1]) >= 2);
    assert.match(text, /^imgsim_index_swaps_total(?:\{\})? [1-9]/m);
    assert.match(text, /imgsim_http_requests/);
  });

  test('a stopped server: connection refused, retried, then reported', async () => {
    await live.stop();
    const waits = [];
    const gone = new ImageSearchClient({ baseUrl: live.baseUrl, retries: 2, retryDelay: 20, onRetry: (i) => waits.push(i.code) });
    const err = await gone.health().catch((e) => e);
    assert.ok(err instanceof ImageSearchError);
    assert.equal(err.code, 'ECONNREFUSED');
    assert.equal(err.attempts, 3);
    assert.deepEqual(waits, ['ECONNREFUSED', 'ECONNREFUSED']);
  });
});
