// Generate types/openapi.d.ts from the search server's OpenAPI document, or check it has not drifted.
//
//   npm run types                    regenerate from the server code (the project's .venv Python)
//   npm run types -- --url URL       regenerate from a running server's URL/openapi.json
//   npm run types:check [-- --url U] exit 1 when the committed file differs from what the server says
//
// The hand-written client surface (types/client.d.ts) names these schemas, so a server change
// that is not regenerated fails `npm test` here instead of lying to TypeScript users.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import openapiTS, { astToString } from 'openapi-typescript';

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE = resolve(HERE, '..');
const REPO = resolve(PACKAGE, '..', '..');
export const TARGET = join(PACKAGE, 'types', 'openapi.d.ts');
const HEADER = '// Generated from the search server\'s /openapi.json by `npm run types`: do not edit by hand.\n'
  + '// `npm run types:check` (part of `npm test`) fails when the server and this file disagree.\n\n';

/** The OpenAPI document: from a live server when `url` is given, else from the server code. */
export async function loadSchema(url) {
  if (url) {
    const response = await fetch(new URL('openapi.json', url.endsWith('/') ? url : `${url}/`));
    if (!response.ok) throw new Error(`GET ${url}/openapi.json answered ${response.status}`);
    return response.json();
  }
  const python = process.env.PYTHON ?? join(REPO, '.venv', 'bin', 'python');
  if (!existsSync(python)) throw new Error(`no Python at ${python}: run \`make setup\` at the repo root (or set PYTHON)`);
  const text = execFileSync(python, [join(HERE, 'openapi.py')], { cwd: REPO, encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(text);
}

/** The TypeScript declarations for a schema, exactly as they are committed. */
export async function render(schema) {
  // The title/version/description say nothing about the shapes: left out so docs edits are no drift.
  const shapes = { ...schema, info: { title: schema.info?.title ?? 'api', version: '0' } };
  return HEADER + astToString(await openapiTS(shapes, { alphabetize: true }));
}

/** The first differing line, for a message a person can act on. */
function firstDifference(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return `line ${i + 1}:\n  committed: ${x[i] ?? '(end of file)'}\n  server:    ${y[i] ?? '(end of file)'}`;
  }
  return '';
}

async function main(argv) {
  const check = argv.includes('--check');
  const at = argv.indexOf('--url');
  const url = at === -1 ? undefined : argv[at + 1];
  const fresh = await render(await loadSchema(url));
  if (!check) {
    writeFileSync(TARGET, fresh);
    console.log(`wrote ${TARGET}`);
    return 0;
  }
  const committed = existsSync(TARGET) ? readFileSync(TARGET, 'utf8') : '';
  if (committed === fresh) {
    console.log(`types/openapi.d.ts matches the server's OpenAPI${url ? ` at ${url}` : ''}`);
    return 0;
  }
  console.error(`types/openapi.d.ts has drifted from the server's OpenAPI${url ? ` at ${url}` : ''}: `
    + `run \`npm run types\` in clients/node and review the change.\n${firstDifference(committed, fresh)}`);
  return 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
    console.error(err.message ?? err);
    process.exitCode = 2;
  });
}
