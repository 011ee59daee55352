// The client's API. Every request and response shape is the server's own, from types/openapi.d.ts
// (generated); only the client's options and helpers are written here. `npm run build` joins the
// two into dist/index.d.ts (ESM) and dist/index.d.cts (CommonJS).
import type { components } from './openapi.js';

type Schemas = components['schemas'];

/** One search hit: the seed's fields plus the image's UUID (null for EMS rows without one). */
export type SearchResult = Schemas['SearchHit'];
export type Health = Schemas['HealthResponse'];
export type Stats = Schemas['StatsResponse'];
export type Features = Schemas['FeaturesResponse'];
/** The seed's /add_image body; `vector` may be any array-like of numbers (validated, not indexed). */
export type AddImageData = Omit<Schemas['AddImageRequest'], 'vector'> & { vector?: ArrayLike<number> | null };
export type AddImageResult = Schemas['AddImageResponse'];
/** GET /images/{id_or_code}: the row plus `status` queued | embedded | indexed | failed. */
export type ImageStatus = Schemas['ImageStatusResponse'];
export type EventDuplicates = Schemas['DuplicatesResponse'];
export type DuplicateCheck = Schemas['DuplicateCheckResponse'];
/** GET /events/{event_code}/similar-shots: same-scene groups, copies collapsed into one member. */
export type SimilarShots = Schemas['SimilarShotsResponse'];
/** How a match relates to the upload: only `copy` is a duplicate. */
export type Relation = 'copy' | 'same_scene' | 'related';
export type Versions = Schemas['VersionsResponse'];
export type VersionInfo = Schemas['VersionInfo'];
/** POST /versions/check: re-checks so far, failures, when, and the last problem (null: the files are sound). */
export type IntegrityState = Schemas['IntegrityState'];
export type ErrorBody = Schemas['ErrorResponse'];

/** What /search filters by: the event only (`eventCode` is an alias). Other keys throw. */
export interface SearchFilters {
  event_code?: string | null;
  eventCode?: string | null;
}

/** A multer file object: memory storage (buffer), disk storage (path) or a stream. */
export interface MulterFile {
  originalname?: string;
  mimetype?: string;
  buffer?: Uint8Array;
  path?: string;
  stream?: NodeJS.ReadableStream | ReadableStream<Uint8Array>;
  [extra: string]: unknown;
}

/**
 * Anything the client can upload: a file path, a file: URL, bytes, a Blob/File (sent again on a retry),
 * or a stream, sent as it arrives and never retried: a Node Readable (busboy, S3), a web
 * ReadableStream, an async iterable of bytes, or a multer file object.
 */
export type Upload =
  | string
  | URL
  | Blob
  | ArrayBuffer
  | ArrayBufferView
  | NodeJS.ReadableStream
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | MulterFile;

/** What a finished request answered (see `responseOf`). */
export interface ResponseInfo {
  status: number;
  headers: Headers;
  url: string;
  /** Attempts made, retries included. */
  attempts: number;
}

export interface RetryInfo {
  /** The attempt that just failed (1-based). */
  attempt: number;
  /** Milliseconds until the next attempt. */
  delay: number;
  status: number;
  code: string;
  message: string;
  method: string;
  url: string;
}

export interface ClientOptions {
  /** Server URL. Default: IMAGE_SEARCH_URL, else http://127.0.0.1:8000 */
  baseUrl?: string;
  /** The seed's (axios) spelling of baseUrl. */
  baseURL?: string;
  /** Sent as the X-API-Key header. Default: IMAGE_SEARCH_API_KEY */
  apiKey?: string;
  /** Milliseconds per attempt; 0 disables. Default 30000 */
  timeout?: number;
  /** Extra attempts where repeating is safe (idempotent calls; never streams). Default 3 */
  retries?: number;
  /** First backoff in ms, doubled per retry (with jitter). Default 250 */
  retryDelay?: number;
  /** Cap of one backoff and of a Retry-After hint, in ms. Default 5000 */
  maxRetryDelay?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Called before each retry. */
  onRetry?: (info: RetryInfo) => void;
  /** Called with every successful answer's status and headers. */
  onResponse?: (info: ResponseInfo) => void;
  /** A fetch implementation. Default: the global fetch. */
  fetch?: typeof fetch;
}

/** Per-call options every method accepts. */
export interface CallOptions {
  /**
   * Abort this call. A signal that times out (`AbortSignal.timeout(ms)`) ends it with a TimeoutError naming the
   * caller's deadline; any other abort with an AbortError. The sooner of it and `timeout` ends the call.
   */
  signal?: AbortSignal;
  /** Override the client's timeout for this call (ms). */
  timeout?: number;
  /** Override the client's retries for this call. */
  retries?: number;
  /** This call's status and headers (e.g. X-Deleted-Filter). */
  onResponse?: (info: ResponseInfo) => void;
}

export interface UploadOptions extends CallOptions {
  /** Name sent with the file part (default: the path's basename, multer's originalname, or "upload"). */
  filename?: string;
}

export interface SearchOptions extends CallOptions {
  /** How many results (server's default when omitted). */
  topK?: number;
  /** Only photos of this event (UUID). */
  eventCode?: string;
  /** Drop results scoring below this cosine similarity. */
  minScore?: number;
}

export interface VectorSearchOptions extends CallOptions {
  /** Drop results scoring below this cosine similarity. */
  minScore?: number;
}

export interface WaitOptions {
  /** Give up after this many ms (WaitTimeoutError; a TimeoutError when a poll had no answer by then). Default 120000 */
  timeout?: number;
  /** Between polls, in ms. Default 1000 */
  interval?: number;
  /** As CallOptions.signal: its timeout is a TimeoutError naming it, any other abort an AbortError. */
  signal?: AbortSignal;
  /** Called with every status seen. */
  onStatus?: (status: ImageStatus) => void;
}

export interface RequestOptions extends CallOptions {
  query?: Record<string, string | number | boolean | null | undefined>;
  json?: unknown;
  form?: FormData;
  as?: 'json' | 'text';
  /** Safe to repeat? Default: true for GET/HEAD/OPTIONS/PUT/DELETE, false for POST. */
  idempotent?: boolean;
}

export declare class ImageSimilarityClient {
  /** A base URL (the seed's `new ImageSimilarityClient(baseURL)`) or options; unknown options throw. */
  constructor(options?: string | URL | ClientOptions);
  readonly baseUrl: string;
  readonly baseURL: string;
  apiKey: string | undefined;
  timeout: number;
  retries: number;
  retryDelay: number;
  maxRetryDelay: number;

  /** GET / : throws UnavailableError (503) while no index is loaded (after retries). */
  health(options?: CallOptions): Promise<Health>;
  /** POST /search (the seed's call). */
  searchSimilar(
    vector: ArrayLike<number>,
    topK?: number,
    filters?: SearchFilters | null,
    options?: VectorSearchOptions,
  ): Promise<SearchResult[]>;
  /** POST /add_image (the seed's call): registers the row (or returns the one already there). */
  addImage(data: AddImageData, options?: CallOptions): Promise<AddImageResult>;
  /** POST /extract_features. */
  extractFeatures(file: Upload, options?: UploadOptions): Promise<Features>;
  /** GET /stats. */
  stats(options?: CallOptions): Promise<Stats>;
  /** POST /search/image. */
  searchByImage(file: Upload, options?: SearchOptions & UploadOptions): Promise<SearchResult[]>;
  /** GET /images/{idOrCode}/similar (the image itself excluded). */
  similarTo(idOrCode: number | string, options?: SearchOptions): Promise<SearchResult[]>;
  /** GET /images/{idOrCode}: the row and its pipeline status. */
  imageStatus(idOrCode: number | string, options?: CallOptions): Promise<ImageStatus>;
  /** Poll imageStatus until `indexed`; WaitTimeoutError after `timeout`, code EFAILED for a failed image. */
  waitUntilIndexed(idOrCode: number | string, options?: WaitOptions): Promise<ImageStatus>;
  /** GET /events/{eventCode}/duplicates: copies only, each verified against the group's first image. */
  eventDuplicates(eventCode: string, options?: CallOptions): Promise<EventDuplicates>;
  /** GET /events/{eventCode}/similar-shots: other shots of the same scene (copies collapsed). */
  similarShots(eventCode: string, options?: CallOptions): Promise<SimilarShots>;
  /** POST /events/{eventCode}/duplicates/check: `duplicate` only for a copy; each match has `relation`. */
  checkDuplicate(
    eventCode: string,
    file: Upload,
    options?: UploadOptions & { topK?: number; minScore?: number },
  ): Promise<DuplicateCheck>;
  /** GET /versions. */
  versions(options?: CallOptions): Promise<Versions>;
  /** POST /versions/check: re-hash the served version's files now (needs the API key). */
  checkVersions(options?: CallOptions): Promise<IntegrityState>;
  /** GET /metrics (Prometheus text). */
  metrics(options?: CallOptions): Promise<string>;
  /** Any route, with the client's timeout, retries (where safe) and API key. */
  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<T>;
}

/** The client's earlier name: the same class. */
export declare const ImageSearchClient: typeof ImageSimilarityClient;
export type ImageSearchClient = ImageSimilarityClient;

export interface ErrorInfo {
  status?: number;
  code?: string;
  body?: unknown;
  method?: string;
  url?: string;
  attempts?: number;
  headers?: Headers;
  cause?: unknown;
}

/** Everything the client throws for the server or the network; subclasses say which kind. */
export declare class ImageSearchError extends Error {
  constructor(message: string, info?: ErrorInfo);
  /** HTTP status; 0 when no response arrived (refused, timeout, abort). */
  status: number;
  /** HTTP_<status>, or ECONNREFUSED, ETIMEDOUT, EABORTED, EBADRESPONSE, EFAILED, EWAITTIMEOUT, ENOENT (FileReadError), ... */
  code: string;
  /** The parsed error body (JSON) or its text; the last status for EFAILED / EWAITTIMEOUT. */
  body: unknown;
  method?: string;
  url?: string;
  /** Attempts made, retries included. */
  attempts: number;
  /** The response headers when the server answered. */
  headers?: Headers;
  /** 429, 502-504 or connection refused: trying again later may work. */
  readonly retryable: boolean;
}
/** 400/422: the request is wrong; the message names the field. */
export declare class ValidationError extends ImageSearchError {}
/** 401/403: X-API-Key missing or wrong. */
export declare class AuthenticationError extends ImageSearchError {}
/** 404: unknown image (or not indexed yet, for similarTo). */
export declare class NotFoundError extends ImageSearchError {}
/** 409: e.g. the file is registered under another filename. */
export declare class ConflictError extends ImageSearchError {}
/** 413: upload over the server's MAX_UPLOAD_MB. */
export declare class PayloadTooLargeError extends ImageSearchError {}
/** 415: the upload is not an image. */
export declare class UnsupportedMediaError extends ImageSearchError {}
/** 429. */
export declare class RateLimitError extends ImageSearchError {}
/** 502-504: no index loaded yet, database down, or a gateway error. */
export declare class UnavailableError extends ImageSearchError {}
/** Other 5xx. */
export declare class ServerError extends ImageSearchError {}
/** No answer within `timeout`, or before the caller's `AbortSignal.timeout()` passed (ETIMEDOUT); the message says which. */
export declare class TimeoutError extends ImageSearchError {}
/** Refused, reset, DNS... (ECONNREFUSED, ECONNRESET, ...). */
export declare class ConnectionError extends ImageSearchError {}
/** The caller's AbortSignal was aborted, other than by a timeout (EABORTED). */
export declare class AbortError extends ImageSearchError {}
/** A 2xx that is not the JSON promised (EBADRESPONSE). */
export declare class BadResponseError extends ImageSearchError {}
/** waitUntilIndexed gave up (EWAITTIMEOUT). */
export declare class WaitTimeoutError extends ImageSearchError {
  /** The last status seen. */
  last: ImageStatus | undefined;
}

/**
 * An upload given as a file (a path, a file: URL, a multer disk file, an fs read stream) could not be read;
 * nothing reached the server. `code` is the system's: ENOENT, EACCES, EISDIR, ...
 */
export declare class FileReadError extends ImageSearchError {
  /** The file that could not be read. */
  path: string;
  /** What failed: open, read, ... */
  syscall: string | undefined;
}

/** The status and headers behind a result a client method returned (objects and arrays). */
export declare function responseOf(result: unknown): ResponseInfo | undefined;
export declare function createClient(options?: string | URL | ClientOptions): ImageSimilarityClient;
export declare function guessType(bytes: Uint8Array | null | undefined, name?: string): string;
export declare function toUpload(
  input: Upload,
  filename?: string,
): Promise<{ blob: Blob; filename: string } | { stream: unknown; filename: string; type?: string }>;

export default ImageSimilarityClient;
