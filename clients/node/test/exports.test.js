// What `require()` and `import` of the package give, through its own name (package.json `exports`,
// the builds in dist/ that `npm test` makes first): the original service's CommonJS usage
// `const ImageSimilarityClient = require('image-similarity-client')` needs the class itself.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);

test('require() returns the class itself; every named export is a property of it', async () => {
  const ImageSimilarityClient = require('image-similarity-client');
  assert.equal(typeof ImageSimilarityClient, 'function');
  assert.equal(ImageSimilarityClient.name, 'ImageSimilarityClient');
  const client = new ImageSimilarityClient('http://127.0.0.1:9/prefix');
  assert.ok(client instanceof ImageSimilarityClient);
  assert.equal(client.baseURL, 'http://127.0.0.1:9/prefix/');
  assert.equal(typeof client.searchSimilar, 'function');

  const esm = await import('image-similarity-client');
  const named = Object.keys(esm).filter((name) => name !== 'default').sort();
  assert.ok(named.length > 10, named.join(', '));
  for (const name of named) {
    assert.equal(typeof ImageSimilarityClient[name], typeof esm[name], `require(...).${name}`);
  }
  assert.equal(ImageSimilarityClient.ImageSimilarityClient, ImageSimilarityClient);
  assert.equal(ImageSimilarityClient.ImageSearchClient, ImageSimilarityClient);
  assert.equal(ImageSimilarityClient.default, ImageSimilarityClient, 'transpiled `import X from` (esModuleInterop)');
  const { ImageSearchError, ValidationError, createClient } = require('image-similarity-client');
  assert.ok(new ValidationError('bad') instanceof ImageSearchError);
  assert.ok(createClient('http://127.0.0.1:9') instanceof ImageSimilarityClient);
  assert.equal(require('image-similarity-client/package.json').name, 'image-similarity-client');
});

test('import: the named exports and the default export (the class)', async () => {
  const esm = await import('image-similarity-client');
  assert.equal(esm.default, esm.ImageSimilarityClient);
  assert.equal(esm.ImageSearchClient, esm.ImageSimilarityClient);
  assert.equal(typeof esm.ImageSearchError, 'function');
  assert.ok(new esm.default('http://127.0.0.1:9') instanceof esm.ImageSimilarityClient);
});
