/**
 * What the client throws for anything the server or the network did. One base class,
 * `ImageSearchError`, and one subclass per kind, so callers branch with `instanceof`
 * (or on `code`) without parsing text:
 *
 *   ValidationError      400/422  the request is wrong: fix it (the message says which field)
 *   AuthenticationError  401/403  X-API-Key missing or wrong
 *   NotFoundError        404      unknown image or event, or not indexed yet
 *   ConflictError        409      e.g. the file is registered under another filename
 *   PayloadTooLargeError 413      upload over the server's MAX_UPLOAD_MB
 *   UnsupportedMediaError 415     the upload is not an image
 *   UnavailableError     502-504  no index loaded yet, database down, a proxy's gateway error
 *   ServerError          other 5xx
 *   TimeoutError         no answer within `timeout`, or before the caller's AbortSignal timed out
 *                        (AbortSignal.timeout); the message names which deadline (code ETIMEDOUT)
 *   ConnectionError      refused, reset, DNS... (code ECONNREFUSED, ECONNRESET, ...)
 *   AbortError           the caller's AbortSignal was aborted, not by a timeout (code EABORTED)
 *   BadResponseError     a 2xx that is not the JSON promised (code EBADRESPONSE)
 *   WaitTimeoutError     waitUntilIndexed gave up (code EWAITTIMEOUT); `.last` is the last status
 *   FileReadError        an upload given as a file could not be read: `.path`, and the system's code
 *                        (ENOENT, EACCES, EISDIR, ...); nothing reached the server
 */
export class ImageSearchError extends Error {
  /**
   * @param {string} message the server's message (or a description of the network failure)
   * @param {object} [info]
   */
  constructor(message, { status = 0, code, body, method, url, attempts = 1, headers, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code ?? (status ? `HTTP_${status}` : 'ENETWORK');
    this.body = body;
    this.method = method;
    this.url = url;
    this.attempts = attempts;
    /** The response headers (a Headers object) when the server answered, else undefined. */
    this.headers = headers;
  }

  /** True when trying again later may work: 502/503/504, 429, or the server could not be reached. */
  get retryable() {
    return RETRYABLE_STATUS.has(this.status) || this.code === 'ECONNREFUSED';
  }
}

export class ValidationError extends ImageSearchError {}
export class AuthenticationError extends ImageSearchError {}
export class NotFoundError extends ImageSearchError {}
export class ConflictError extends ImageSearchError {}
export class PayloadTooLargeError extends ImageSearchError {}
export class UnsupportedMediaError extends ImageSearchError {}
export class RateLimitError extends ImageSearchError {}
export class UnavailableError extends ImageSearchError {}
export class ServerError extends ImageSearchError {}
export class TimeoutError extends ImageSearchError {}
export class ConnectionError extends ImageSearchError {}
export class AbortError extends ImageSearchError {}
export class BadResponseError extends ImageSearchError {}
export class WaitTimeoutError extends ImageSearchError {
  constructor(message, info = {}) {
    super(message, { code: 'EWAITTIMEOUT', ...info });
    /** The last image status seen before giving up. */
    this.last = info.last;
  }
}

/**
 * An upload given as a file (a path, a file: URL, a multer disk file, a file stream) could not be
 * read. `code` is the system's (ENOENT, EACCES, EISDIR, ...), `path` the file, `cause` Node's error.
 */
export class FileReadError extends ImageSearchError {
  constructor(message, info = {}) {
    super(message, info);
    /** The file that could not be read. */
    this.path = info.path;
    /** What failed: open, read, ... */
    this.syscall = info.syscall;
  }
}

export const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/** The error class for an HTTP status. */
export function errorClassFor(status) {
  if (status === 400 || status === 422) return ValidationError;
  if (status === 401 || status === 403) return AuthenticationError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status === 413) return PayloadTooLargeError;
  if (status === 415) return UnsupportedMediaError;
  if (status === 429) return RateLimitError;
  if (status >= 502 && status <= 504) return UnavailableError;
  if (status >= 500) return ServerError;
  return ImageSearchError;
}

/** The error class for a failure without a response, by its code. */
export function networkErrorClass(code) {
  if (code === 'ETIMEDOUT') return TimeoutError;
  if (code === 'EABORTED') return AbortError;
  if (code === 'EBADRESPONSE') return BadResponseError;
  return ConnectionError;
}

/**
 * The human message inside an error body: our server's `{"message"}`, FastAPI's
 * `{"detail": "..."}` or its validation list `{"detail": [{"loc", "msg"}]}`, else the text.
 */
export function serverMessage(body, text, status, statusText) {
  if (body && typeof body === 'object') {
    for (const key of ['message', 'detail', 'error']) {
      const value = body[key];
      if (typeof value === 'string' && value) return value;
      if (Array.isArray(value) && value.length) return value.map(describeIssue).join('; ');
      if (value && typeof value === 'object' && typeof value.message === 'string') return value.message;
    }
  }
  const trimmed = typeof text === 'string' ? text.trim() : '';
  if (trimmed) return trimmed.length > 500 ? `${trimmed.slice(0, 500)}…` : trimmed;
  return `HTTP ${status}${statusText ? ` ${statusText}` : ''}`;
}

function describeIssue(issue) {
  if (!issue || typeof issue !== 'object') return String(issue);
  const where = Array.isArray(issue.loc) ? issue.loc.filter((p) => p !== 'body').join('.') : '';
  const what = issue.msg ?? issue.message ?? JSON.stringify(issue);
  return where ? `${where}: ${what}` : String(what);
}

/** The system error code (ECONNREFUSED, ...) buried in undici's `TypeError: fetch failed`. */
export function networkCode(err) {
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'string' && e.code.startsWith('E')) return e.code;
    if (Array.isArray(e.errors)) {
      // Happy-eyeballs: one error per address tried; refused everywhere means refused.
      const codes = e.errors.map((x) => x?.code).filter(Boolean);
      if (codes.length && codes.every((c) => c === 'ECONNREFUSED')) return 'ECONNREFUSED';
      if (codes.length) return codes[0];
    }
    if (typeof e.code === 'string' && e.code.startsWith('UND_ERR_')) return e.code;
  }
  return 'ENETWORK';
}
