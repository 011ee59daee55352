// The package's version, for the User-Agent header. The builds (scripts/build.mjs) replace this module
// with the version as a literal, so dist/ reads no file; from src/ (the tests) it comes from package.json.
import { readFileSync } from 'node:fs';

export const VERSION = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
