/**
 * The search server's client: one method per route, JSON in and out, uploads as multipart.
 * Transport rules live here once: base URL, API key header, a timeout per attempt, and
 * retries with exponential backoff only where repeating a request is safe:
 *   - connection refused: always (nothing reached the server);
 *   - 429/502/503/504 and a connection cut mid-request: only for idempotent calls. Every
 *     route method here is one (searches are reads; /add_image returns the existing row
 *     for the same event and path); `request()` treats GET/HEAD/PUT/DELETE as idempotent
 *     and POST as not, unless told `{idempotent: true}`;
 *   - never with a stream upload (a stream cannot be sent twice) nor after a timeout
 *     (a stalled server tends to stay stalled; the caller decides).
 */
import { setTimeout as sleep } from 'node:timers/promises';

import {
  AbortError, FileReadError, ImageSearchError, RETRYABLE_STATUS, TimeoutError, WaitTimeoutError, errorClassFor, networkCode,
  networkErrorClass, serverMessage,
} from './errors.js';
import { multipartStream, toUpload } from './upload.js';
import { VERSION } from './version.js';

const DEFAULTS = Object.freeze({
  baseUrl: 'http://127.0.0.1:8000',
  timeout: 30_000,
  retries: 3,
  retryDelay: 250,
  maxRetryDelay: 5_000,
});

/** Sent on every request (the `headers` option can replace it): which client and runtime asked. */
export const USER_AGENT = `image-similarity-client/${VERSION} node/${typeof process === 'undefined' ? 'unknown' : process.version}`;

const OPTION_NAMES = ['baseUrl', 'baseURL', 'apiKey', 'timeout', 'retries', 'retryDelay', 'maxRetryDelay', 'headers',
  'onRetry', 'onResponse', 'fetch'];

/** What a finished request answered: kept per result object, see `responseOf()`. */
const RESPONSES = new WeakMap();

/**
 * The HTTP response behind a result this client returned: `{status, headers, url, attempts}`.
 * `responseOf(hits).headers.get('x-deleted-filter')` says a search skipped its deleted-image check.
 * @param {object} result an object or array a client method resolved with
 */
export function responseOf(result) {
  return result !== null && typeof result === 'object' ? RESPONSES.get(result) : undefined;
}

/** The constructor's argument as options: a base URL (string or URL), an options object, or nothing. */
function clientOptions(arg) {
  if (arg === undefined || arg === null) return {};
  if (typeof arg === 'string' || arg instanceof URL) return { baseUrl: String(arg) };
  if (typeof arg !== 'object' || Array.isArray(arg)) {
    throw new TypeError(`ImageSimilarityClient takes a base URL string or an options object, got ${describe(arg)}`);
  }
  const unknown = Object.keys(arg).filter((key) => !OPTION_NAMES.includes(key));
  if (unknown.length) {
    throw new TypeError(`unknown ImageSimilarityClient option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`
      + ` (known: ${OPTION_NAMES.join(', ')})`);
  }
  if (arg.baseUrl !== undefined && arg.baseURL !== undefined && arg.baseUrl !== arg.baseURL) {
    throw new TypeError('baseUrl and baseURL are the same option: give one');
  }
  return { ...arg, baseUrl: arg.baseUrl ?? arg.baseURL };
}

export class ImageSimilarityClient {
  /**
   * @param {string | URL | object} [options] the server's base URL, or options:
   * @param {string} [options.baseUrl] server URL (`baseURL` works too); default IMAGE_SEARCH_URL or http://127.0.0.1:8000
   * @param {string} [options.apiKey] sent as X-API-Key; default IMAGE_SEARCH_API_KEY
   * @param {number} [options.timeout] milliseconds per attempt (0 = none); default 30000
   * @param {number} [options.retries] extra attempts where safe (see above); default 3
   * @param {number} [options.retryDelay] first backoff in ms, doubled each retry; default 250
   * @param {number} [options.maxRetryDelay] cap of one backoff (and of Retry-After) in ms; default 5000
   * @param {Record<string, string>} [options.headers] extra headers on every request
   * @param {(info: object) => void} [options.onRetry] called before each retry (logging, metrics)
   * @param {(info: object) => void} [options.onResponse] called with `{status, headers, url, attempts}` per answer
   * @param {typeof fetch} [options.fetch] a fetch implementation; default the global one
   */
  constructor(options) {
    const opts = clientOptions(options);
    const env = typeof process !== 'undefined' ? process.env : {};
    const base = opts.baseUrl ?? env.IMAGE_SEARCH_URL ?? DEFAULTS.baseUrl;
    let parsed;
    try {
      parsed = new URL(base);
    } catch {
      throw new TypeError(`baseUrl is not a URL: ${JSON.stringify(base)}`);
    }
    if (!/^https?:$/.test(parsed.protocol)) throw new TypeError(`baseUrl must be http(s): ${base}`);
    // A trailing slash makes relative routes resolve under a path prefix (behind a proxy).
    if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
    this.baseUrl = parsed.toString();
    this.apiKey = opts.apiKey ?? env.IMAGE_SEARCH_API_KEY ?? undefined;
    this.timeout = nonNegative('timeout', opts.timeout ?? DEFAULTS.timeout);
    this.retries = Math.floor(nonNegative('retries', opts.retries ?? DEFAULTS.retries));
    this.retryDelay = nonNegative('retryDelay', opts.retryDelay ?? DEFAULTS.retryDelay);
    this.maxRetryDelay = nonNegative('maxRetryDelay', opts.maxRetryDelay ?? DEFAULTS.maxRetryDelay);
    if (opts.headers !== undefined && (typeof opts.headers !== 'object' || opts.headers === null)) {
      throw new TypeError('headers must be an object of header names to values');
    }
    // Lower-cased, so a caller's `User-Agent` or `Accept` replaces the client's instead of being sent beside it.
    this.headers = Object.fromEntries(Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    for (const name of ['onRetry', 'onResponse', 'fetch']) {
      if (opts[name] !== undefined && typeof opts[name] !== 'function') throw new TypeError(`${name} must be a function`);
    }
    this.onRetry = opts.onRetry;
    this.onResponse = opts.onResponse;
    this.fetch = opts.fetch ?? globalThis.fetch;
    if (typeof this.fetch !== 'function') throw new TypeError('no fetch available: use Node.js 22.11+ or pass options.fetch');
  }

  /** The seed's axios-style name for the base URL. */
  get baseURL() {
    return this.baseUrl;
  }

  // ---- the seed's routes -------------------------------------------------------------

  /** GET / : `{status: "ready", total_vectors, ...}`; throws UnavailableError (503) while no index is loaded. */
  async health(options) {
    return this.request('GET', '', options);
  }

  /**
   * POST /search with a query vector (the seed's call). `filters` is `{event_code}` (or `{eventCode}`);
   * `options.minScore` drops weaker hits.
   * @returns {Promise<object[]>} `[{id, code, filename, similarity_score, event_code}]`, best first
   */
  async searchSimilar(vector, topK = 10, filters = null, options) {
    const body = { vector: toVector(vector), top_k: topK };
    const f = normaliseFilters(filters);
    if (f) body.filters = f;
    if (options?.minScore !== undefined && options?.minScore !== null) body.min_score = options.minScore;
    return this.request('POST', 'search', { ...options, json: body, idempotent: true });
  }

  /**
   * POST /add_image with the seed's body (`event_code`, `filename`, `file_path`, ...). The server
   * registers the row and the pipeline embeds the file later: answers `{id, code, status: "queued", created}`.
   * Safe to retry: the same event and path again answers the same row (`created: false`).
   */
  async addImage(data, options) {
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new TypeError('addImage(data) needs an object like {event_code, filename, file_path}');
    }
    const body = { ...data };
    if (body.vector !== undefined && body.vector !== null) body.vector = toVector(body.vector);
    return this.request('POST', 'add_image', { ...options, json: body, idempotent: true });
  }

  /** POST /extract_features: the served model's vector for an image `{vector, processing_time, ...}`. */
  async extractFeatures(file, options = {}) {
    return this.#upload('extract_features', file, {}, options);
  }

  /** GET /stats: index and database counts, version, model. */
  async stats(options) {
    return this.request('GET', 'stats', options);
  }

  // ---- added routes ------------------------------------------------------------------

  /**
   * POST /search/image: photos similar to an uploaded image.
   * @param {object} [options] `{topK, eventCode, minScore, filename}`
   */
  async searchByImage(file, options = {}) {
    return this.#upload('search/image', file,
      { top_k: options.topK, event_code: options.eventCode, min_score: options.minScore }, options);
  }

  /**
   * GET /images/{idOrCode}/similar: photos similar to an indexed one, itself excluded.
   * @param {number | string} idOrCode images.id or images.code
   * @param {object} [options] `{topK, eventCode, minScore}`
   */
  async similarTo(idOrCode, options = {}) {
    const ref = pathSegment('idOrCode', idOrCode);
    const query = { top_k: options.topK, event_code: options.eventCode, min_score: options.minScore };
    return this.request('GET', `images/${ref}/similar`, { ...options, query });
  }

  /**
   * GET /images/{idOrCode}: the row and its pipeline status, `queued` | `embedded` | `indexed`
   * (with `index_version`) | `failed` (with `error`).
   */
  async imageStatus(idOrCode, options) {
    const ref = pathSegment('idOrCode', idOrCode);
    return this.request('GET', `images/${ref}`, options);
  }

  /**
   * Poll imageStatus until the image is searchable (`indexed`), and resolve with that status.
   * Throws WaitTimeoutError after `timeout` ms (default 120000; `.last` is the last status seen),
   * ImageSearchError with code EFAILED when the pipeline recorded a failure (`.body` is the status),
   * NotFoundError when the row is gone.
   * @param {object} [options] `{timeout, interval (ms, default 1000), signal, onStatus(status)}`
   */
  async waitUntilIndexed(idOrCode, options = {}) {
    const timeout = nonNegative('timeout', options.timeout ?? 120_000);
    const interval = Math.max(10, nonNegative('interval', options.interval ?? 1_000));
    const started = Date.now();
    const deadline = started + timeout;
    let last;
    for (;;) {
      const left = deadline - Date.now();
      // Each poll may take up to the client's timeout but not much past the deadline (a second at least).
      const room = Math.max(left, 1_000);
      const bounded = this.timeout === 0 || room < this.timeout; // the wait's deadline, not the client's timeout
      try {
        last = await this.imageStatus(idOrCode, { signal: options.signal, timeout: bounded ? room : undefined });
      } catch (err) {
        if (!bounded || !(err instanceof TimeoutError) || options.signal?.aborted) throw err;
        throw new TimeoutError(`no answer from ${err.url} within ${room} ms, the rest of waitUntilIndexed's timeout `
          + `of ${timeout} ms${last ? ` (last status: ${last.status})` : ''}`, {
          method: err.method, url: err.url, code: 'ETIMEDOUT', attempts: err.attempts, body: last, cause: err,
        });
      }
      options.onStatus?.(last);
      if (last.status === 'indexed') return last;
      if (last.status === 'failed') {
        throw new ImageSearchError(`image ${idOrCode} failed in the pipeline: ${last.error ?? 'no reason recorded'}`, {
          code: 'EFAILED', body: last,
        });
      }
      const wait = Math.min(interval, deadline - Date.now());
      if (wait <= 0) {
        throw new WaitTimeoutError(`image ${idOrCode} not indexed within ${timeout} ms (last status: ${last.status})`,
          { last, body: last });
      }
      try {
        await sleep(wait, undefined, options.signal ? { signal: options.signal } : undefined);
      } catch (err) {
        throw callerStopped(options.signal, `waitUntilIndexed(${idOrCode})`, `${Date.now() - started} ms into the wait`
          + ` (last status: ${last.status})`, { body: last, cause: err }, { waiting: true });
      }
    }
  }

  /**
   * GET /events/{eventCode}/duplicates: groups of copies of one photograph within an event
   * (every member verified as a copy of `images[0]`; never a chain).
   */
  async eventDuplicates(eventCode, options = {}) {
    const code = pathSegment('eventCode', eventCode);
    return this.request('GET', `events/${code}/duplicates`, options);
  }

  /**
   * GET /events/{eventCode}/similar-shots: groups of different shots of the same scene (copies collapsed),
   * for "keep the best shot".
   */
  async similarShots(eventCode, options = {}) {
    const code = pathSegment('eventCode', eventCode);
    return this.request('GET', `events/${code}/similar-shots`, options);
  }

  /**
   * POST /events/{eventCode}/duplicates/check: is this upload already in the event?
   * `duplicate` is true only for a copy; each match says `relation`: copy, same_scene or related.
   * @param {object} [options] `{topK, minScore, filename}`
   * @returns {Promise<{duplicate: boolean, matches: object[]}>}
   */
  async checkDuplicate(eventCode, file, options = {}) {
    const code = pathSegment('eventCode', eventCode);
    return this.#upload(`events/${code}/duplicates/check`, file,
      { top_k: options.topK, min_score: options.minScore }, options);
  }

  /** GET /versions: the served index version and the kept ones. */
  async versions(options) {
    return this.request('GET', 'versions', options);
  }

  /**
   * POST /versions/check: re-hash the served version's files now (the server also does it every
   * INDEX_RECHECK_SECONDS) and answer the integrity state `{checks, failures, last_check_at, last_problem}`;
   * `last_problem` is null when the files are sound. Needs the API key. Safe to retry: it only reads files.
   */
  async checkVersions(options) {
    return this.request('POST', 'versions/check', { ...options, idempotent: true });
  }

  /** GET /metrics: Prometheus text. */
  async metrics(options) {
    return this.request('GET', 'metrics', { ...options, as: 'text' });
  }

  // ---- transport ---------------------------------------------------------------------

  /** A multipart POST of `file` plus form fields; every upload route is a read, so idempotent. */
  async #upload(path, file, fields, options) {
    const upload = await toUpload(file, options.filename);
    if (upload.blob) {
      const form = new FormData();
      form.append('file', upload.blob, upload.filename);
      for (const [key, value] of Object.entries(fields)) {
        if (value !== undefined && value !== null) form.append(key, String(value));
      }
      return this.request('POST', path, { ...options, form, idempotent: true });
    }
    return this.request('POST', path, { ...options, stream: await multipartStream(upload, fields), idempotent: true });
  }

  /**
   * One request with timeout and retries. Public so a route this client predates can still be called.
   * @param {string} method
   * @param {string} path relative to baseUrl, e.g. "stats"
   * @param {object} [options] `{query, json, form, as: "json"|"text", idempotent, signal, timeout, retries, onResponse}`
   */
  async request(method, path, options = {}) {
    const url = new URL(path.replace(/^\/+/, ''), this.baseUrl);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const headers = { accept: options.as === 'text' ? 'text/plain, */*' : 'application/json', 'user-agent': USER_AGENT,
      ...this.headers };
    if (this.apiKey) headers['x-api-key'] = this.apiKey;
    let body;
    let duplex;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    } else if (options.form !== undefined) {
      body = options.form; // fetch writes the multipart boundary header itself
    } else if (options.stream !== undefined) {
      headers['content-type'] = options.stream.contentType;
      body = options.stream.body;
      duplex = 'half';
    }
    const idempotent = options.idempotent ?? ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'].includes(method.toUpperCase());
    // A stream is consumed by the first attempt: nothing can be sent again.
    const retries = options.stream !== undefined ? 0 : (options.retries ?? this.retries);
    const where = { method, url: url.toString() };
    // Two deadlines may end an attempt: this client's (the per-call `timeout` option, else the client's) and
    // the caller's `signal` (AbortSignal.timeout(ms), or any abort). The error names the one that passed.
    const timeout = options.timeout ?? this.timeout;
    const started = Date.now();
    const deadlines = { timeout, caller: options.signal, started,
      timeoutFrom: options.timeout !== undefined ? "this call's timeout option" : "the client's timeout option" };

    for (let attempt = 1; ; attempt++) {
      deadlines.own = timeout > 0 ? AbortSignal.timeout(timeout) : undefined;
      const signals = [deadlines.own, options.signal].filter(Boolean);
      let response;
      try {
        const init = { method, headers, body, signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0] };
        if (duplex) init.duplex = duplex;
        response = await this.fetch(url, init);
      } catch (err) {
        const failure = fetchFailure(err, { ...where, attempts: attempt, deadlines, sending: body !== undefined });
        // A connection cut mid-request is retried for idempotent calls, except uploads: a server that
        // drops an upload (over its size limit) would only drop it again.
        const safe = failure.code === 'ECONNREFUSED'
          || (idempotent && CUT_OFF.has(failure.code) && options.form === undefined);
        if (safe && attempt <= retries) {
          await this.#backoff(attempt, failure, null, deadlines);
          continue;
        }
        throw failure;
      }
      if (idempotent && RETRYABLE_STATUS.has(response.status) && attempt <= retries) {
        const failure = await httpFailure(response, { ...where, attempts: attempt });
        await this.#backoff(attempt, failure, response.headers.get('retry-after'), deadlines);
        continue;
      }
      if (!response.ok) throw await httpFailure(response, { ...where, attempts: attempt });
      let text;
      try {
        text = await response.text();
      } catch (err) {
        throw fetchFailure(err, { ...where, attempts: attempt, deadlines });
      }
      const info = { status: response.status, headers: response.headers, url: where.url, attempts: attempt };
      options.onResponse?.(info);
      this.onResponse?.(info);
      if (options.as === 'text') return text;
      let data;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        throw new (networkErrorClass('EBADRESPONSE'))(
          `server answered ${response.status} with invalid JSON: ${text.slice(0, 200)}`,
          { ...where, status: response.status, code: 'EBADRESPONSE', body: text, attempts: attempt,
            headers: response.headers },
        );
      }
      if (data !== null && typeof data === 'object') RESPONSES.set(data, info);
      return data;
    }
  }

  async #backoff(attempt, failure, retryAfter, { caller, started }) {
    let delay = Math.min(this.maxRetryDelay, this.retryDelay * 2 ** (attempt - 1));
    delay = delay / 2 + Math.random() * (delay / 2); // jitter: clients restarted together spread out
    const hinted = Number(retryAfter);
    if (retryAfter && Number.isFinite(hinted) && hinted >= 0) delay = Math.min(this.maxRetryDelay, hinted * 1000);
    if (this.onRetry) {
      this.onRetry({ attempt, delay, status: failure.status, code: failure.code, message: failure.message,
        method: failure.method, url: failure.url });
    }
    try {
      await sleep(delay, undefined, caller ? { signal: caller } : undefined);
    } catch {
      throw callerStopped(caller, `${failure.method} ${failure.url}`, `${Date.now() - started} ms into the call, `
        + `while waiting to retry after ${failure.status ? `HTTP ${failure.status}` : failure.code}`,
      { method: failure.method, url: failure.url, attempts: attempt, cause: failure }, { waiting: true });
    }
  }
}

/** The name the client had before the seed's: kept so existing code keeps working. */
export const ImageSearchClient = ImageSimilarityClient;

function nonNegative(name, value) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`${name} must be a number >= 0, got ${JSON.stringify(value)}`);
  }
  return value;
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/** A plain array of finite numbers; NaN/Infinity cannot travel in JSON, so say so here. */
function toVector(vector) {
  if (!vector || typeof vector !== 'object' || typeof vector.length !== 'number') {
    throw new TypeError('vector must be an array or typed array of numbers');
  }
  const out = Array.from(vector, Number);
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad !== -1) throw new TypeError(`vector[${bad}] is ${vector[bad]}: every value must be a finite number`);
  return out;
}

function normaliseFilters(filters) {
  if (filters === undefined || filters === null) return undefined;
  if (typeof filters !== 'object' || Array.isArray(filters)) throw new TypeError('filters must be an object');
  const out = {};
  for (const [key, value] of Object.entries(filters)) {
    if (key !== 'event_code' && key !== 'eventCode') {
      throw new TypeError(`unknown filter ${JSON.stringify(key)}: the server filters by event_code only`);
    }
    if (value === undefined || value === null) continue;
    out.event_code = value;
  }
  return Object.keys(out).length ? out : undefined;
}

function pathSegment(name, value) {
  if ((typeof value !== 'string' && typeof value !== 'number') || String(value) === '') {
    throw new TypeError(`${name} must be a non-empty string or number`);
  }
  return encodeURIComponent(String(value));
}

async function httpFailure(response, where) {
  const text = await response.text().catch(() => '');
  let body = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (a proxy's HTML page): keep the text
  }
  const Kind = errorClassFor(response.status);
  return new Kind(serverMessage(body, text, response.status, response.statusText), {
    ...where, status: response.status, body, headers: response.headers,
  });
}

const CUT_OFF = new Set(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET']);

/**
 * The caller's signal ended the call: its deadline passed (AbortSignal.timeout, whose reason is a
 * TimeoutError) or it was aborted. Named as the caller's, with how long into the call or wait.
 */
function callerStopped(signal, what, when, info, { waiting = false } = {}) {
  if (signal?.reason?.name === 'TimeoutError') {
    return new TimeoutError(`${what}: ${waiting ? '' : 'no answer before '}the caller's AbortSignal timed out ${when}`,
      { ...info, code: 'ETIMEDOUT' });
  }
  return new AbortError(`${what}: aborted by the caller's AbortSignal ${when}`, { ...info, code: 'EABORTED' });
}

/** Which deadline ended a failed fetch: the caller's signal, this client's timeout, or neither. */
function endedBy(err, { caller, own }) {
  if (caller?.aborted && (err === caller.reason || err?.cause === caller.reason || !own?.aborted)) return 'caller';
  if (own?.aborted || err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError') return 'own';
  return err?.name === 'AbortError' ? 'caller' : undefined;
}

function fetchFailure(err, { method, url, attempts, deadlines, sending = false }) {
  const make = (message, code) => new (networkErrorClass(code))(message, { method, url, code, attempts, cause: err });
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e instanceof FileReadError) return Object.assign(e, { method, url, attempts }); // a file stream broke mid-upload
  }
  const ended = endedBy(err, deadlines);
  if (ended === 'caller') {
    return callerStopped(deadlines.caller, `${method} ${url}`, `${Date.now() - deadlines.started} ms into the call`,
      { method, url, attempts, cause: err });
  }
  if (ended === 'own') {
    return make(`no answer from ${url} within ${deadlines.timeout} ms (${deadlines.timeoutFrom})`, 'ETIMEDOUT');
  }
  const code = networkCode(err);
  let detail = code;
  if (code === 'ECONNREFUSED') detail = 'connection refused (is the search server running?)';
  else if (sending && CUT_OFF.has(code)) {
    // A server that refuses a body early (413) and closes leaves fetch nothing to read but a broken pipe.
    detail = `the server closed the connection while the request was being sent (${code}); `
      + 'an upload over its size limit (MAX_UPLOAD_MB) ends this way';
  } else if (code === 'ENETWORK' && err?.message) detail = `${err.message}${err.cause?.message ? `: ${err.cause.message}` : ''}`;
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  const what = code === 'ECONNREFUSED' ? 'cannot reach' : `${method}`;
  return make(`${what} ${url}: ${detail}${tries}`, code);
}
