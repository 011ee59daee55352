// Drives test/live_server.py: a real search server over a freshly built index, in the project's venv.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..', '..');

/** The project's venv Python (override with PYTHON=/path/to/python). */
export function pythonPath() {
  const python = process.env.PYTHON ?? join(REPO, '.venv', 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(`no Python at ${python}: run \`make setup\` at the repo root (or set PYTHON)`);
  }
  return python;
}

/**
 * Start the launcher and resolve with its "started" line plus `publish()` and `stop()`.
 * Its stderr (setup and server logs) is kept and replayed when something fails.
 */
export async function startLiveServer({ timeoutMs = 180_000 } = {}) {
  const child = spawn(pythonPath(), [join(HERE, 'live_server.py')], {
    cwd: REPO,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  const logs = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    logs.push(chunk);
    if (process.env.LIVE_SERVER_LOG) process.stderr.write(chunk);
  });
  const waiting = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      return; // not a protocol line
    }
    const next = waiting.shift();
    if (next) next.resolve(message);
  });
  let exited = false;
  const exit = new Promise((resolveExit) => child.on('exit', (code, signal) => {
    exited = true;
    const err = new Error(`live_server.py exited (${code ?? signal})\n${tail(logs)}`);
    for (const w of waiting.splice(0)) w.reject(err);
    resolveExit({ code, signal });
  }));

  const nextMessage = (label, ms) => new Promise((resolveMsg, rejectMsg) => {
    if (exited) {
      rejectMsg(new Error(`live_server.py is not running (${label})\n${tail(logs)}`));
      return;
    }
    const timer = setTimeout(() => rejectMsg(new Error(`live_server.py: no ${label} within ${ms} ms\n${tail(logs)}`)), ms);
    waiting.push({
      resolve: (m) => {
        clearTimeout(timer);
        if (m.event === 'error') rejectMsg(new Error(`live_server.py: ${m.message}\n${tail(logs)}`));
        else resolveMsg(m);
      },
      reject: (e) => { clearTimeout(timer); rejectMsg(e); },
    });
  });

  let started;
  try {
    started = await nextMessage('start', timeoutMs);
  } catch (err) {
    child.kill('SIGTERM');
    throw err;
  }

  return {
    ...started,
    logs: () => tail(logs),
    /** Embed pending images, build, verify and publish a new index version; resolves with its summary. */
    publish(ms = 120_000) {
      const reply = nextMessage('publish reply', ms);
      child.stdin.write('publish\n');
      return reply;
    },
    /** Stop the server, drop the database, remove temp files. */
    async stop() {
      if (exited) return;
      const killer = setTimeout(() => child.kill('SIGTERM'), 30_000);
      child.stdin.end('quit\n');
      await exit;
      clearTimeout(killer);
    },
  };
}

function tail(chunks, max = 6_000) {
  const text = chunks.join('');
  return text.length > max ? `…${text.slice(-max)}` : text;
}
