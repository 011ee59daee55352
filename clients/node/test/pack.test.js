// What a team installs: `npm pack`, the tarball installed into a fresh app, then an ESM script
// (the original README's usage as written), a CommonJS script and `tsc --strict` code, all run
// against a real search server. Also: the package metadata and README the registry shows, and
// the generated types against the live server's /openapi.json.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { TARGET, render } from '../scripts/types.mjs';
import { startLiveServer } from './live.js';

const run = promisify(execFile);
const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(await readFile(join(PACKAGE, 'package.json'), 'utf8'));
const lock = JSON.parse(await readFile(join(PACKAGE, 'package-lock.json'), 'utf8'));
const devVersion = (name) => lock.packages[`node_modules/${name}`].version;

// The original README's client usage, character for character, after the package's import line.
const SEED_USAGE = `// Usage
const client = new ImageSimilarityClient();
const results = await client.searchSimilar(vectorArray, 5);`;

const ESM_APP = `import assert from 'node:assert/strict';
import { ImageSimilarityClient, NotFoundError, WaitTimeoutError, responseOf } from 'image-similarity-client';
import { createRequire } from 'node:module';
import { userAgent } from './user-agent.cjs';

const pkg = createRequire(import.meta.url)('image-similarity-client/package.json');

const { photo, photoId, addable, eventCode } = JSON.parse(process.env.APP_INPUT);
const vectorArray = (await new ImageSimilarityClient(process.env.IMAGE_SEARCH_URL).extractFeatures(photo)).vector;

${SEED_USAGE}

assert.equal(results.length, 5);
assert.equal(results[0].id, photoId);
assert.equal(responseOf(results).status, 200);

// The seed's addImage body; retrying it is safe (the same row comes back).
const imageData = { filename: addable.filename, file_path: addable.file_path, vector: vectorArray,
  event_code: eventCode, metadata: { width: 800, height: 600 } };
const added = await client.addImage(imageData);
const again = await client.addImage(imageData);
assert.equal(again.id, added.id);
assert.equal(again.created, false);
assert.equal((await client.imageStatus(added.id)).status, 'queued');
const late = await client.waitUntilIndexed(added.id, { timeout: 300, interval: 50 }).catch((e) => e);
assert.ok(late instanceof WaitTimeoutError, String(late));
assert.equal((await client.waitUntilIndexed(photoId, { timeout: 5000 })).index_version >= 1, true);
assert.ok(await client.imageStatus(987654321).catch((e) => e) instanceof NotFoundError);
assert.throws(() => new ImageSimilarityClient({ baseurl: 'http://localhost:8000' }), /unknown/);
assert.equal(await userAgent(ImageSimilarityClient), \`image-similarity-client/\${pkg.version} node/\${process.version}\`);
console.log(JSON.stringify({ esm: 'ok', top: results[0].id, added: added.id }));
`;

// The User-Agent a client sends, seen by a one-request server (the version is the build's, from package.json).
const USER_AGENT = `const http = require('node:http');

exports.userAgent = async function userAgent(Client) {
  let seen;
  const server = http.createServer((req, res) => {
    seen = req.headers['user-agent'];
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await new Client(\`http://127.0.0.1:\${server.address().port}\`).stats();
  } finally {
    server.close();
  }
  return seen;
};
`;

// The original service's CommonJS usage: the package itself is the class.
const CJS_APP = `const assert = require('node:assert/strict');
const ImageSimilarityClient = require('image-similarity-client');
const { ImageSimilarityClient: Named, ValidationError, ImageSearchError } = require('image-similarity-client');

async function main() {
  const { photoId } = JSON.parse(process.env.APP_INPUT);
  const client = new ImageSimilarityClient(process.env.IMAGE_SEARCH_URL);
  assert.equal(Named, ImageSimilarityClient);
  assert.equal(require('image-similarity-client').default, ImageSimilarityClient);
  const status = await client.imageStatus(photoId);
  assert.equal(status.status, 'indexed');
  const similar = await new Named(process.env.IMAGE_SEARCH_URL).similarTo(photoId, { topK: 3 });
  assert.equal(similar.length, 3);
  const bad = await client.searchSimilar([1, 2, 3], 5).catch((e) => e);
  assert.ok(bad instanceof ValidationError, String(bad));
  assert.ok(bad instanceof ImageSimilarityClient.ImageSearchError && bad instanceof ImageSearchError);
  const { name, version } = require('image-similarity-client/package.json');
  assert.equal(name, 'image-similarity-client');
  assert.equal(await require('./user-agent.cjs').userAgent(ImageSimilarityClient),
    \`image-similarity-client/\${version} node/\${process.version}\`);
  console.log(JSON.stringify({ cjs: 'ok', similar: similar.map((h) => h.id) }));
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

// The same in TypeScript CommonJS (.cts): `import X = require()` is the class with a namespace of
// the named exports and types; named and default imports work too.
const CTS_APP = `import ImageSimilarityClient = require('image-similarity-client');
import DefaultClient, { ImageSimilarityClient as Named, ValidationError, type SearchResult } from 'image-similarity-client';

async function main(): Promise<void> {
  const { photoId } = JSON.parse(process.env.APP_INPUT ?? '{}') as { photoId: number };
  const client: ImageSimilarityClient = new ImageSimilarityClient(process.env.IMAGE_SEARCH_URL ?? 'http://localhost:8000');
  const named: Named = new Named({ baseUrl: client.baseUrl });
  const viaDefault: ImageSimilarityClient.ImageSimilarityClient = new DefaultClient(client.baseUrl);
  const similar: ImageSimilarityClient.SearchResult[] = await client.similarTo(photoId, { topK: 3 });
  const same: SearchResult[] = await named.similarTo(photoId, { topK: 3 });
  const status: ImageSimilarityClient.ImageStatus = await viaDefault.imageStatus(photoId);
  const bad = await client.searchSimilar([1, 2, 3], 5).catch((e: unknown) => e);
  if (!(bad instanceof ImageSimilarityClient.ValidationError) || !(bad instanceof ValidationError)) throw new Error(String(bad));
  const err: ImageSimilarityClient.ImageSearchError = bad;
  // @ts-expect-error the namespace has the package's names only
  ImageSimilarityClient.NoSuchError;
  try {
    // @ts-expect-error an option the client does not have
    new ImageSimilarityClient({ baseurl: 'x' });
    throw new Error('an unknown option must throw');
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
  }
  console.log(JSON.stringify({ cts: 'ok', similar: similar.map((h) => h.id), same: same.length, status: status.status,
    code: err.code }));
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

const TS_APP = `import {
  ImageSimilarityClient, ImageSearchError, type ImageStatus, type IntegrityState, type SearchResult,
} from 'image-similarity-client';
import { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';

const { photo, photoId } = JSON.parse(process.env.APP_INPUT ?? '{}') as { photo: string; photoId: number };
const client = new ImageSimilarityClient(process.env.IMAGE_SEARCH_URL ?? 'http://localhost:8000');

const features = await client.extractFeatures(createReadStream(photo), { filename: 'photo.jpg' });
const hits: SearchResult[] = await client.searchSimilar(features.vector, 3, { event_code: null });
const first = hits[0];
// @ts-expect-error code is null for EMS rows without one: the types say so
const code: string = first.code;
const safe: string = first.code ?? String(first.id);
// @ts-expect-error the server filters by event only (and the client throws at run time too)
const badFilter = await client.searchSimilar(features.vector, 3, { event: 'x' }).catch((e: unknown) => e);
if (!(badFilter instanceof TypeError)) throw new Error('an unknown filter must throw');
try {
  // @ts-expect-error an option the client does not have
  new ImageSimilarityClient({ baseurl: 'x' });
  throw new Error('an unknown option must throw');
} catch (err) {
  if (!(err instanceof TypeError)) throw err;
}
const status: ImageStatus = await client.waitUntilIndexed(photoId, { timeout: 5_000 });
const version: number | null | undefined = status.index_version;
const integrity: IntegrityState = await client.checkVersions();
const problem: string | null | undefined = integrity.last_problem;
if (problem !== null || integrity.failures !== 0) throw new Error('a problem with sound files: ' + problem);
const stats = await client.stats();
// @ts-expect-error total_images_db is null while the database is down
const total: number = stats.total_images_db;
const byStream = await client.searchByImage(Readable.from([await import('node:fs/promises').then((fs) => fs.readFile(photo))]));
try {
  await client.similarTo('not-an-id');
} catch (err) {
  if (!(err instanceof ImageSearchError) || err.status !== 422) throw err;
}
console.log(JSON.stringify({ ts: 'ok', code: code === undefined ? 'none' : 'some', safe: safe.length > 0, version,
  total, byStream: byStream.length, top: first.id }));
`;

describe('the packed tarball in a fresh app', { timeout: 600_000 }, () => {
  let live;
  let app;
  let input;

  before(async () => {
    live = await startLiveServer();
    await live.publish();
    app = await mkdtemp(join(tmpdir(), 'imgsim-app-'));
  });

  after(async () => {
    await live?.stop();
    if (app) await rm(app, { recursive: true, force: true });
  });

  test('npm pack ships the builds, types, README and LICENSE; nothing else', async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', app], { cwd: PACKAGE });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('[')));
    const files = packed.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['LICENSE', 'README.md', 'dist/index.cjs', 'dist/index.d.cts', 'dist/index.d.ts',
      'dist/index.mjs', 'package.json']);
    input = JSON.stringify({
      photo: live.images[0].path, photoId: live.images[0].id, addable: live.files.addable, eventCode: live.eventCode,
    });
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'team-app', private: true, type: 'module' }));
    await writeFile(join(app, 'user-agent.cjs'), USER_AGENT);
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(app, packed.filename),
      `typescript@${devVersion('typescript')}`, `@types/node@${devVersion('@types/node')}`], { cwd: app });
  });

  test('ESM: the original README usage runs as written', async () => {
    await writeFile(join(app, 'seed.mjs'), ESM_APP);
    const { stdout } = await run('node', ['seed.mjs'], { cwd: app, env: appEnv(live, input) });
    assert.equal(JSON.parse(stdout).esm, 'ok');
  });

  test("CommonJS: require() is the class itself (the original service's usage), named exports on it", async () => {
    await writeFile(join(app, 'seed.cjs'), CJS_APP);
    const { stdout } = await run('node', ['seed.cjs'], { cwd: app, env: appEnv(live, input) });
    assert.equal(JSON.parse(stdout).cjs, 'ok');
  });

  test('TypeScript: tsc --strict compiles ESM and CommonJS (`import X = require()`) code; the output runs', async () => {
    await mkdir(join(app, 'src'), { recursive: true });
    await writeFile(join(app, 'src', 'app.mts'), TS_APP);
    await writeFile(join(app, 'src', 'legacy.cts'), CTS_APP);
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022',
        outDir: 'out', types: ['node'], skipLibCheck: false },
      include: ['src'],
    }));
    const tsc = join(app, 'node_modules', '.bin', 'tsc');
    await run(tsc, ['-p', '.'], { cwd: app }).catch((err) => assert.fail(`tsc --strict failed:\n${err.stdout}${err.stderr}`));
    const { stdout } = await run('node', [join('out', 'app.mjs')], { cwd: app, env: appEnv(live, input) });
    const out = JSON.parse(stdout);
    assert.equal(out.ts, 'ok');
    assert.equal(out.top, live.images[0].id);
    assert.equal(out.version >= 1, true);
    const legacy = JSON.parse((await run('node', [join('out', 'legacy.cjs')], { cwd: app, env: appEnv(live, input) })).stdout);
    assert.deepEqual([legacy.cts, legacy.same, legacy.status, legacy.code], ['ok', 3, 'indexed', 'HTTP_422']);
  });

  test('TypeScript with the legacy resolver (node10: no `exports`): `types` describes `main`, the CommonJS build', async () => {
    await writeFile(join(app, 'tsconfig.node10.json'), JSON.stringify({
      compilerOptions: { strict: true, module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true,
        target: 'es2022', noEmit: true, types: ['node'], skipLibCheck: false },
      files: ['src/legacy.cts'],
    }));
    const tsc = join(app, 'node_modules', '.bin', 'tsc');
    await run(tsc, ['-p', 'tsconfig.node10.json'], { cwd: app })
      .catch((err) => assert.fail(`tsc (node10) failed:\n${err.stdout}${err.stderr}`));
    assert.equal(pkg.types, pkg.exports['.'].require.types);
    assert.equal(pkg.main, pkg.exports['.'].require.default);
  });

  test("the generated types match the live server's /openapi.json", async () => {
    const response = await fetch(`${live.baseUrl}/openapi.json`);
    assert.equal(await render(await response.json()), await readFile(TARGET, 'utf8'),
      'types/openapi.d.ts drifted from the server: run `npm run types` in clients/node');
  });
});

function appEnv(live, input) {
  return { ...process.env, IMAGE_SEARCH_URL: live.baseUrl, IMAGE_SEARCH_API_KEY: live.apiKey, APP_INPUT: input };
}

test('drift is caught: a field the server adds, drops or retypes changes the rendering', async () => {
  const schema = JSON.parse(JSON.stringify(await (await import('../scripts/types.mjs')).loadSchema()));
  const committed = await readFile(TARGET, 'utf8');
  assert.equal(await render(schema), committed, 'run `npm run types` in clients/node');
  const hit = schema.components.schemas.SearchHit;
  hit.properties.filename = { type: 'string', title: 'Filename' };
  assert.notEqual(await render(schema), committed);
});

test('Node.js versions: CI runs the tests on the engines minimum and the current LTS; the docs say the same', async () => {
  const { CURRENT_LTS, enginesMinimum, versionsToTest } = await import('../scripts/node-versions.mjs');
  const minimum = enginesMinimum(pkg.engines.node);
  assert.equal(minimum, '22.11.0', 'the first LTS release of the oldest Node line still supported (docs/node-client.md)');
  assert.deepEqual(versionsToTest({}), [minimum, CURRENT_LTS]);
  assert.deepEqual(versionsToTest({ NODE_VERSIONS: '24.22.3, 26.12.1' }), ['24.22.3', '26.12.1']);
  assert.deepEqual(versionsToTest({ NODE_VERSIONS: 'lts' }), [CURRENT_LTS]);
  assert.deepEqual(versionsToTest({ NODE_VERSIONS: 'minimum lts' }), [minimum, CURRENT_LTS]);
  assert.ok(Number(CURRENT_LTS.split('.')[0]) > Number(minimum.split('.')[0]));
  assert.throws(() => enginesMinimum('^20 || >=22'), /one lower bound/);
  const [major, minor] = minimum.split('.');
  const readme = await readFile(join(PACKAGE, 'README.md'), 'utf8');
  assert.match(readme, new RegExp(`Node\\.js ${major}\\.${minor} or\\s+newer`));
  const docs = await readFile(join(PACKAGE, '..', '..', 'docs', 'node-client.md'), 'utf8');
  assert.ok(docs.includes(`\`>=${minimum}\``) && docs.includes(CURRENT_LTS), 'docs/node-client.md names both versions');
  const makefile = await readFile(join(PACKAGE, '..', '..', 'Makefile'), 'utf8');
  assert.match(makefile, /^node-test:.*\n\t.*npm run test:node-versions/m, '`make test` (CI) runs every version');
  assert.match(pkg.scripts['test:node-versions'], /scripts\/node-versions\.mjs/);
});

test('package metadata and the registry README', async () => {
  for (const field of ['name', 'version', 'description', 'license', 'homepage', 'engines']) assert.ok(pkg[field], field);
  assert.match(pkg.repository.url, /^git\+https:\/\//);
  assert.equal(pkg.repository.directory, 'clients/node');
  assert.match(pkg.bugs.url, /^https:\/\//);
  assert.equal(pkg.license, 'MIT');
  assert.match(await readFile(join(PACKAGE, 'LICENSE'), 'utf8'), /^MIT License/);
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), [], 'no runtime dependencies');
  const readme = await readFile(join(PACKAGE, 'README.md'), 'utf8');
  const links = [...readme.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
  const relative = links.filter((l) => !/^(https?:|mailto:|#)/.test(l));
  assert.deepEqual(relative, [], 'links on the registry page must be absolute');
  assert.match(readme, /npm install image-similarity-client/);
  assert.ok(!readme.includes('/path/to/'), 'installs from the registry, not a path');
  assert.ok(existsSync(join(PACKAGE, 'dist', 'index.cjs')), 'npm test builds first');
});
