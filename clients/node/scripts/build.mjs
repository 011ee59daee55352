// Build what the package ships: dist/index.mjs (ESM), dist/index.cjs (CommonJS, for `require`),
// and their declarations dist/index.d.ts / dist/index.d.cts (the generated OpenAPI types joined
// with the hand-written client surface, so neither needs a cross-format import).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(PACKAGE, 'dist');
const { version, engines } = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));
// The syntax target is the oldest Node the package supports (engines.node, tested in CI by scripts/node-versions.mjs).
const target = `node${/^>=\s*(\d+(?:\.\d+)?)/.exec(engines.node)[1]}`;

rmSync(DIST, { recursive: true, force: true });
mkdirSync(DIST);
const common = {
  entryPoints: [join(PACKAGE, 'src', 'index.js')],
  bundle: true,
  platform: 'node',
  target,
  packages: 'external',
  legalComments: 'none',
  keepNames: true, // error classes are told apart by name too
  banner: { js: `// image-similarity-client ${version} (built from src/ by scripts/build.mjs)` },
  logLevel: 'warning',
  plugins: [{
    // src/version.js reads package.json at run time; a build carries the version as a literal instead.
    name: 'version',
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]version\.js$/ }, () => ({
        contents: `export const VERSION = ${JSON.stringify(version)};\n`, loader: 'js',
      }));
    },
  }],
};
await build({ ...common, format: 'esm', outfile: join(DIST, 'index.mjs') });
// CommonJS from its own entry: `module.exports` is the class, the named exports its properties.
await build({ ...common, entryPoints: [join(PACKAGE, 'src', 'index.cjs')], format: 'cjs', outfile: join(DIST, 'index.cjs') });

const openapi = readFileSync(join(PACKAGE, 'types', 'openapi.d.ts'), 'utf8');
const client = readFileSync(join(PACKAGE, 'types', 'client.d.ts'), 'utf8')
  .replace(/^import type \{ components \} from '\.\/openapi\.js';\n/m, '');
const head = `// image-similarity-client ${version}: types. The request/response shapes are generated from the\n`
  + `// server's OpenAPI document (types/openapi.d.ts in the source); the client surface follows them.\n`
  + `/// <reference types="node" />\n\n`;
writeFileSync(join(DIST, 'index.d.ts'), `${head}${openapi}\n${client}`);
// CommonJS: `export =` the class (what `require()` returns, src/index.cjs), merged with a namespace
// that re-exports every named export and type, so `import X = require()`, `X.ValidationError`,
// `X.SearchResult`, named imports and (esModuleInterop) default imports all type-check. The
// declarations sit in a module-local namespace; the class is exported as itself, not a copy.
const NAMESPACE = 'imageSimilarityClient';
const body = `${openapi}\n${client}`.replace(/^export default .*\n/m, '').replace(/^export declare /gm, 'export ');
const names = [...new Set([...body.matchAll(/^export (?:class|const|function|interface|type) ([\w$]+)/gm)].map((m) => m[1]))];
if (!names.includes('ImageSimilarityClient')) throw new Error('types/client.d.ts declares no ImageSimilarityClient');
const indent = (text) => text.split('\n').map((line) => (line ? `  ${line}` : line)).join('\n');
writeFileSync(join(DIST, 'index.d.cts'), `${head}declare namespace ${NAMESPACE} {\n${indent(body)}\n`
  + '  /** `require(\'image-similarity-client\')` is the class; these are its properties (and types). */\n'
  + '  export namespace ImageSimilarityClient {\n'
  + names.map((name) => `    export import ${name} = ${NAMESPACE}.${name};\n`).join('')
  + '  }\n}\n\n'
  + `export = ${NAMESPACE}.ImageSimilarityClient;\n`);
console.log(`built ${DIST}: index.mjs, index.cjs, index.d.ts, index.d.cts`);
