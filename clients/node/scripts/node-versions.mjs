// Run `npm test` under each Node.js version the package supports: the `engines` minimum and the
// current Active LTS (docs/node-client.md, "Node.js versions"). `make node-test` (CI) runs this.
//
//   node scripts/node-versions.mjs                     the minimum from package.json and LTS below
//   NODE_VERSIONS=lts node scripts/...                  one of them (`minimum` or `lts`)
//   NODE_VERSIONS="22.11.0 24.22.3" node scripts/...   other versions (exact x.y.z)
//
// The Node binaries come from the npm registry (the `node-<os>-<arch>` packages that the `node`
// package installs), into .node/<version>/ here (git-ignored, kept between runs). npm itself is
// the machine's: its `#!/usr/bin/env node` runs under the version first on PATH, and so do the
// tests, the build, tsc and the packed-tarball app they start.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STORE = join(PACKAGE, '.node');

/** The current Active LTS release to test on besides the minimum: bump when a new line becomes LTS. */
export const CURRENT_LTS = '26.12.1';

/** `>=22.11.0` -> `22.11.0`: the lowest version `engines.node` admits, which CI must test on. */
export function enginesMinimum(range) {
  const match = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(String(range ?? '').trim());
  if (!match) throw new Error(`engines.node must be ">=x.y.z" (one lower bound, tested in CI), got ${JSON.stringify(range)}`);
  return [match[1], match[2] ?? '0', match[3] ?? '0'].join('.');
}

/** The versions to test: NODE_VERSIONS (exact versions, or `minimum` and `lts` for the two below), else the
 * engines minimum and CURRENT_LTS. `make test` runs `lts`, `make test-slow` `minimum`: CI runs both. */
export function versionsToTest(env = process.env) {
  const pkg = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));
  const named = { minimum: () => enginesMinimum(pkg.engines?.node), lts: () => CURRENT_LTS };
  const wanted = env.NODE_VERSIONS ? env.NODE_VERSIONS.split(/[\s,]+/).filter(Boolean) : ['minimum', 'lts'];
  return [...new Set(wanted.map((v) => (named[v] ? named[v]() : v)))];
}

/** The folder holding `node` for `version`, installed from the registry on first use. */
function nodeBin(version) {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`a Node version must be exact (x.y.z), got ${version}`);
  const name = `node-${process.platform}-${process.arch}`;
  const prefix = join(STORE, version);
  const bin = join(prefix, 'node_modules', name, 'bin');
  if (!existsSync(join(bin, 'node'))) {
    mkdirSync(prefix, { recursive: true });
    console.log(`# installing ${name}@${version} into ${prefix}`);
    const install = spawnSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit',
      '--no-fund', '--loglevel=error', `${name}@${version}`], { stdio: 'inherit' });
    if (install.status !== 0) throw new Error(`npm install ${name}@${version} failed (${install.status ?? install.signal})`);
  }
  const actual = spawnSync(join(bin, 'node'), ['--version'], { encoding: 'utf8' }).stdout?.trim();
  if (actual !== `v${version}`) throw new Error(`${join(bin, 'node')} says ${actual}, not v${version}`);
  return bin;
}

/** `npm test` with `bin` first on PATH; resolves with the exit code and the node:test counts. */
function npmTest(bin) {
  return new Promise((resolveRun) => {
    const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` };
    delete env.npm_node_execpath; // set when this script runs under npm: would point npm at the outer node
    delete env.NODE;
    const started = Date.now();
    const child = spawn('npm', ['test'], { cwd: PACKAGE, env, stdio: ['ignore', 'pipe', 'inherit'] });
    const counts = {};
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        // node:test's closing lines: `# pass 56` (tap, Node 22) or `ℹ pass 56` (spec, Node 23+).
        const m = /^(?:#|\u2139) (tests|pass|fail|skipped|cancelled) (\d+)$/.exec(line);
        if (m) counts[m[1]] = Number(m[2]);
      }
    });
    child.on('close', (code, signal) => resolveRun({ code: code ?? 1, signal, counts, seconds: (Date.now() - started) / 1000 }));
  });
}

async function main() {
  const results = [];
  for (const version of versionsToTest()) {
    console.log(`# npm test on Node.js ${version}`);
    const run = await npmTest(nodeBin(version));
    results.push({ version, ...run });
  }
  console.log('# Node.js versions:');
  for (const r of results) {
    const c = r.counts;
    console.log(`#   ${r.version}: ${r.code === 0 ? 'ok' : `FAILED (exit ${r.signal ?? r.code})`}, `
      + `${c.pass ?? 0} passed, ${c.fail ?? 0} failed of ${c.tests ?? 0}, ${r.seconds.toFixed(1)} s`);
  }
  return results.every((r) => r.code === 0) ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((code) => { process.exitCode = code; }, (err) => {
    console.error(err.message ?? err);
    process.exitCode = 2;
  });
}
