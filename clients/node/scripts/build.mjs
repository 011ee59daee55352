// Build what the package ships: dist/index.mjs (ESM), dist/index.cjs (CommonJS, for `require`),
// and their declarations dist/index.d.ts / dist/index.d.cts (the generated OpenAPI types joined
// with the hand-written client surface, so neither needs a cross-format import).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(PACKAGE, 'dist');
const { version } = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));

rmSync(DIST, { recursive: true, force: true });
mkdirSync(DIST);
const common = {
  entryPoints: [join(PACKAGE, 'src', 'index.js')],
  bundle: true,
  platform: 'node',
  target: 'node18.17',
  packages: 'external',
  legalComments: 'none',
  keepNames: true, // error classes are told apart by name too
  banner: { js: `// image-similarity-client ${version} (built from src/ by scripts/build.mjs)` },
  logLevel: 'warning',
};
await build({ ...common, format: 'esm', outfile: join(DIST, 'index.mjs') });
await build({ ...common, format: 'cjs', outfile: join(DIST, 'index.cjs') });

const openapi = readFileSync(join(PACKAGE, 'types', 'openapi.d.ts'), 'utf8');
const client = readFileSync(join(PACKAGE, 'types', 'client.d.ts'), 'utf8')
  .replace(/^import type \{ components \} from '\.\/openapi\.js';\n/m, '');
const declarations = `// image-similarity-client ${version}: types. The request/response shapes are generated from the\n`
  + `// server's OpenAPI document (types/openapi.d.ts in the source); the client surface follows them.\n`
  + `/// <reference types="node" />\n\n${openapi}\n${client}`;
writeFileSync(join(DIST, 'index.d.ts'), declarations);
writeFileSync(join(DIST, 'index.d.cts'), declarations);
console.log(`built ${DIST}: index.mjs, index.cjs, index.d.ts, index.d.cts`);
