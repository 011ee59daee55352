// The CommonJS entry (dist/index.cjs): `require('image-similarity-client')` is the client class itself,
// as the original service's package was (`const ImageSimilarityClient = require(...)`; `new
// ImageSimilarityClient(url)`), and every named export of src/index.js is a property of it, so
// `const { ImageSimilarityClient, ValidationError } = require(...)` works as well. `default` is the
// class too (what TypeScript and Babel output for `import X from` reads). dist/index.d.cts says the same.
'use strict';

const api = require('./index.js');

const ImageSimilarityClient = api.ImageSimilarityClient;
for (const name of Object.keys(api)) {
  if (name === '__esModule') continue;
  Object.defineProperty(ImageSimilarityClient, name, { value: api[name], enumerable: true });
}
module.exports = ImageSimilarityClient;
