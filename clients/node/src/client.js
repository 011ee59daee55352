/**
 * The search server's client: one method per route, JSON in and out, uploads as multipart.
 * Transport rules live here once: base URL, API key header, a timeout per attempt, and
 * retries with exponential backoff when the server is still loading its index (503) or
 * not listening yet (connection refused). Nothing else is retried: a 4xx is the caller's
 * to fix, and a timed-out request may have done its work.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { ImageSearchError, networkCode, serverMessage } from './errors.js';
import { toUpload } from './upload.js';

const DEFAULTS = Object.freeze({
  baseUrl: 'http://127.0.0.1:8000',
  timeout: 30_000,
  retries: 3,
  retryDelay: 250,
  maxRetryDelay: 5_000,
});

export class ImageSearchClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] server URL; default IMAGE_SEARCH_URL or http://127.0.0.1:8000
   * @param {string} [options.apiKey] sent as X-API-Key; default IMAGE_SEARCH_API_KEY
   * @param {number} [options.timeout] milliseconds per attempt (0 = none); default 30000
   * @param {number} [options.retries] extra attempts on 503 / connection refused; default 3
   * @param {number} [options.retryDelay] first backoff in ms, doubled each retry; default 250
   * @param {number} [options.maxRetryDelay] cap of one backoff (and of Retry-After) in ms; default 5000
   * @param {Record<string, string>} [options.headers] extra headers on every request
   * @param {(info: object) => void} [options.onRetry] called before each retry (logging, metrics)
   * @param {typeof fetch} [options.fetch] a fetch implementation; default the global one
   */
  constructor(options = {}) {
    const env = typeof process !== 'undefined' ? process.env : {};
    const base = options.baseUrl ?? env.IMAGE_SEARCH_URL ?? DEFAULTS.baseUrl;
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
    this.apiKey = options.apiKey ?? env.IMAGE_SEARCH_API_KEY ?? undefined;
    this.timeout = nonNegative('timeout', options.timeout ?? DEFAULTS.timeout);
    this.retries = Math.floor(nonNegative('retries', options.retries ?? DEFAULTS.retries));
    this.retryDelay = nonNegative('retryDelay', options.retryDelay ?? DEFAULTS.retryDelay);
    this.maxRetryDelay = nonNegative('maxRetryDelay', options.maxRetryDelay ?? DEFAULTS.maxRetryDelay);
    this.headers = { ...(options.headers ?? {}) };
    this.onRetry = options.onRetry;
    this.fetch = options.fetch ?? globalThis.fetch;
    if (typeof this.fetch !== 'function') throw new TypeError('no fetch available: use Node 18+ or pass options.fetch');
  }

  // ---- the seed's routes -------------------------------------------------------------

  /** GET / : `{status: "ready", total_vectors, ...}`; throws status 503 while no index is loaded. */
  async health(options) {
    return this.request('GET', '', options);
  }

  /**
   * POST /search with a query vector (the seed's call). `filters` is `{event_code}` (or `{eventCode}`);
   * `options.minScore` drops weaker hits.
   * @returns {Promise<object[]>} `[{id, code, filename, similarity_score, event_code}]`, best first
   */
  async searchSimilar(vector, topK = 10, filters = {}, options) {
    const body = { vector: toVector(vector), top_k: topK };
    const f = normaliseFilters(filters);
    if (f) body.filters = f;
    if (options?.minScore !== undefined && options?.minScore !== null) body.min_score = options.minScore;
    return this.request('POST', 'search', { ...options, json: body });
  }

  /**
   * POST /add_image with the seed's body (`event_code`, `filename`, `file_path`, ...). The server
   * registers the row and the pipeline embeds the file later: answers `{id, faiss_index: null, message}`.
   */
  async addImage(data, options) {
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new TypeError('addImage(data) needs an object like {event_code, filename, file_path}');
    }
    const body = { ...data };
    if (body.vector !== undefined && body.vector !== null) body.vector = toVector(body.vector);
    return this.request('POST', 'add_image', { ...options, json: body });
  }

  /** POST /extract_features: the served model's vector for an image `{vector, processing_time, ...}`. */
  async extractFeatures(file, options = {}) {
    const form = await formWith(file, options.filename, {});
    return this.request('POST', 'extract_features', { ...options, form });
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
    const form = await formWith(file, options.filename, {
      top_k: options.topK,
      event_code: options.eventCode,
      min_score: options.minScore,
    });
    return this.request('POST', 'search/image', { ...options, form });
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
    const form = await formWith(file, options.filename, { top_k: options.topK, min_score: options.minScore });
    return this.request('POST', `events/${code}/duplicates/check`, { ...options, form });
  }

  /** GET /versions: the served index version and the kept ones. */
  async versions(options) {
    return this.request('GET', 'versions', options);
  }

  /** GET /metrics: Prometheus text. */
  async metrics(options) {
    return this.request('GET', 'metrics', { ...options, as: 'text' });
  }

  // ---- transport ---------------------------------------------------------------------

  /**
   * One request with timeout and retries. Public so a route this client predates can still be called.
   * @param {string} method
   * @param {string} path relative to baseUrl, e.g. "stats"
   * @param {object} [options] `{query, json, form, as: "json"|"text", signal, timeout, retries}`
   */
  async request(method, path, options = {}) {
    const url = new URL(path.replace(/^\/+/, ''), this.baseUrl);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const headers = { accept: options.as === 'text' ? 'text/plain, */*' : 'application/json', ...this.headers };
    if (this.apiKey) headers['x-api-key'] = this.apiKey;
    let body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    } else if (options.form !== undefined) {
      body = options.form; // fetch writes the multipart boundary header itself
    }
    const timeout = options.timeout ?? this.timeout;
    const retries = options.retries ?? this.retries;
    const where = { method, url: url.toString() };

    for (let attempt = 1; ; attempt++) {
      const signals = [];
      if (timeout > 0) signals.push(AbortSignal.timeout(timeout));
      if (options.signal) signals.push(options.signal);
      let response;
      try {
        response = await this.fetch(url, { method, headers, body, signal: anySignal(signals) });
      } catch (err) {
        const failure = fetchFailure(err, { ...where, attempts: attempt, timeout, userSignal: options.signal,
          sending: body !== undefined });
        if (failure.code === 'ECONNREFUSED' && attempt <= retries) {
          await this.#backoff(attempt, failure, null, options.signal);
          continue;
        }
        throw failure;
      }
      if (response.status === 503 && attempt <= retries) {
        const failure = await httpFailure(response, { ...where, attempts: attempt });
        await this.#backoff(attempt, failure, response.headers.get('retry-after'), options.signal);
        continue;
      }
      if (!response.ok) throw await httpFailure(response, { ...where, attempts: attempt });
      let text;
      try {
        text = await response.text();
      } catch (err) {
        throw fetchFailure(err, { ...where, attempts: attempt, timeout, userSignal: options.signal });
      }
      if (options.as === 'text') return text;
      try {
        return text ? JSON.parse(text) : null;
      } catch {
        throw new ImageSearchError(`server answered ${response.status} with invalid JSON: ${text.slice(0, 200)}`, {
          ...where, status: response.status, code: 'EBADRESPONSE', body: text, attempts: attempt,
        });
      }
    }
  }

  async #backoff(attempt, failure, retryAfter, signal) {
    let delay = Math.min(this.maxRetryDelay, this.retryDelay * 2 ** (attempt - 1));
    delay = delay / 2 + Math.random() * (delay / 2); // jitter: clients restarted together spread out
    const hinted = Number(retryAfter);
    if (retryAfter && Number.isFinite(hinted) && hinted >= 0) delay = Math.min(this.maxRetryDelay, hinted * 1000);
    if (this.onRetry) {
      this.onRetry({ attempt, delay, status: failure.status, code: failure.code, message: failure.message,
        method: failure.method, url: failure.url });
    }
    try {
      await sleep(delay, undefined, signal ? { signal } : undefined);
    } catch {
      throw new ImageSearchError('request aborted while waiting to retry', {
        method: failure.method, url: failure.url, code: 'EABORTED', attempts: attempt, cause: failure,
      });
    }
  }
}

function nonNegative(name, value) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`${name} must be a number >= 0, got ${JSON.stringify(value)}`);
  }
  return value;
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
    if (value === undefined) continue;
    out[key === 'eventCode' ? 'event_code' : key] = value;
  }
  return Object.keys(out).length ? out : undefined;
}

function pathSegment(name, value) {
  if ((typeof value !== 'string' && typeof value !== 'number') || String(value) === '') {
    throw new TypeError(`${name} must be a non-empty string or number`);
  }
  return encodeURIComponent(String(value));
}

async function formWith(file, filename, fields) {
  const { blob, filename: name } = await toUpload(file, filename);
  const form = new FormData();
  form.append('file', blob, name);
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && value !== null) form.append(key, String(value));
  }
  return form;
}

function anySignal(signals) {
  if (signals.length === 0) return undefined;
  if (signals.length === 1) return signals[0];
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(signals);
  const controller = new AbortController(); // Node < 20.3
  for (const s of signals) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    s.addEventListener('abort', () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

async function httpFailure(response, where) {
  const text = await response.text().catch(() => '');
  let body = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (a proxy's HTML page): keep the text
  }
  return new ImageSearchError(serverMessage(body, text, response.status, response.statusText), {
    ...where, status: response.status, body,
  });
}

const CUT_OFF = new Set(['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET']);

function fetchFailure(err, { method, url, attempts, timeout, userSignal, sending = false }) {
  const name = err?.name;
  if (name === 'TimeoutError' || (name === 'AbortError' && !userSignal?.aborted && err?.cause?.name === 'TimeoutError')) {
    return new ImageSearchError(`no answer from ${url} within ${timeout} ms`, {
      method, url, code: 'ETIMEDOUT', attempts, cause: err,
    });
  }
  if (name === 'AbortError' || userSignal?.aborted) {
    return new ImageSearchError('request aborted', { method, url, code: 'EABORTED', attempts, cause: err });
  }
  const code = networkCode(err);
  let detail = code;
  if (code === 'ECONNREFUSED') detail = 'connection refused (is the search server running?)';
  else if (sending && CUT_OFF.has(code)) {
    // A server that refuses a body early (413) and closes leaves fetch nothing to read but a broken pipe.
    detail = `the server closed the connection while the request was being sent (${code}); `
      + 'an upload over its size limit (MAX_UPLOAD_MB) ends this way';
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  const what = code === 'ECONNREFUSED' ? 'cannot reach' : `${method}`;
  return new ImageSearchError(`${what} ${url}: ${detail}${tries}`, { method, url, code, attempts, cause: err });
}
