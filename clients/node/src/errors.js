/**
 * The one error class the client throws for anything the server or the network did.
 * `status` is the HTTP status (0 when no response arrived), `message` is the server's
 * own message, `code` says what kind of failure it was, so callers can branch without
 * parsing text.
 */
export class ImageSearchError extends Error {
  /**
   * @param {string} message the server's message (or a description of the network failure)
   * @param {object} [info]
   */
  constructor(message, { status = 0, code, body, method, url, attempts = 1, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ImageSearchError';
    this.status = status;
    this.code = code ?? (status ? `HTTP_${status}` : 'ENETWORK');
    this.body = body;
    this.method = method;
    this.url = url;
    this.attempts = attempts;
  }

  /** True when the server answered 503 or could not be reached: trying again later may work. */
  get retryable() {
    return this.status === 503 || this.code === 'ECONNREFUSED';
  }
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
