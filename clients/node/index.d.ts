// Type declarations for image-similarity-client (the runtime is plain ESM in src/).

/** Anything the client can upload: a file path, a file: URL, bytes, or a Blob/File. */
export type Upload = string | URL | Blob | ArrayBuffer | ArrayBufferView;

export interface ClientOptions {
  /** Server URL. Default: IMAGE_SEARCH_URL, else http://127.0.0.1:8000 */
  baseUrl?: string;
  /** Sent as the X-API-Key header. Default: IMAGE_SEARCH_API_KEY */
  apiKey?: string;
  /** Milliseconds per attempt; 0 disables. Default 30000 */
  timeout?: number;
  /** Extra attempts on 503 (index loading) and connection refused. Default 3 */
  retries?: number;
  /** First backoff in ms, doubled per retry (with jitter). Default 250 */
  retryDelay?: number;
  /** Cap of one backoff and of a Retry-After hint, in ms. Default 5000 */
  maxRetryDelay?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Called before each retry. */
  onRetry?: (info: RetryInfo) => void;
  /** A fetch implementation. Default: the global fetch (Node 18+). */
  fetch?: typeof fetch;
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

/** Per-call options every method accepts. */
export interface CallOptions {
  /** Abort this call. */
  signal?: AbortSignal;
  /** Override the client's timeout for this call (ms). */
  timeout?: number;
  /** Override the client's retries for this call. */
  retries?: number;
}

export interface UploadOptions extends CallOptions {
  /** Name sent with the file part (default: the path's basename, the File's name, or "upload"). */
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

/** One search hit: the seed's fields plus the image's UUID. */
export interface SearchResult {
  id: number;
  code?: string;
  filename: string;
  similarity_score: number;
  event_code: string;
  [extra: string]: unknown;
}

export interface Health {
  status: string;
  total_vectors: number;
  index_version?: number | null;
  model_version?: string | null;
  index_type?: string | null;
  [extra: string]: unknown;
}

export interface Stats {
  total_vectors_faiss: number;
  total_images_db: number;
  index_size_mb: number;
  status?: string;
  index_version?: number | null;
  model?: string;
  model_version?: string | null;
  index_type?: string | null;
  embedded?: number | null;
  failed?: number | null;
  /** Whether the database answered ("ok" / "unavailable"). */
  database?: string;
  /** Hot-swap history: swaps done, versions refused and why. */
  swap?: {
    swaps: number;
    failures: number;
    last_error: string | null;
    failed_versions: Record<string, string>;
    last_swap_at: string | null;
  };
  [extra: string]: unknown;
}

export interface Features {
  vector: number[];
  /** Seconds spent by the server. */
  processing_time: number;
  model?: string;
  model_version?: string;
  dim?: number;
  [extra: string]: unknown;
}

/** The seed's /add_image body. */
export interface AddImageData {
  event_code: string;
  filename: string;
  /** Relative to the server's IMAGE_ROOT, e.g. "/uploads/cat.jpg". */
  file_path: string;
  metadata?: { width?: number; height?: number; file_size?: number; mime_type?: string; [extra: string]: unknown };
  /** Validated but not indexed: the pipeline embeds the file itself. */
  vector?: ArrayLike<number>;
  [extra: string]: unknown;
}

export interface AddImageResult {
  id: number;
  code?: string;
  faiss_index: number | null;
  message: string;
  /** "queued": the pipeline embeds and indexes the file on its next run. */
  status?: string;
  event_code?: string;
  /** True when a client vector was sent: validated, not indexed. */
  vector_ignored?: boolean;
  [extra: string]: unknown;
}

export interface VectorSearchOptions extends CallOptions {
  /** Drop results scoring below this cosine similarity. */
  minScore?: number;
}

export interface SearchFilters {
  event_code?: string;
  /** Alias of event_code. */
  eventCode?: string;
  [extra: string]: unknown;
}

export interface DuplicateImage {
  id: number;
  code: string;
  filename: string;
  [extra: string]: unknown;
}

export interface DuplicateGroup {
  /** images[0] is the reference; every other image is a copy of it (or, in similar shots, another shot). */
  images: DuplicateImage[];
  /** The weakest verdict score (0..1) between the reference and a member. */
  score: number;
  [extra: string]: unknown;
}

export interface EventDuplicates {
  event_code: string;
  groups: DuplicateGroup[];
  images_checked?: number;
  /** Images without a duplicate fingerprint (embedded before fingerprints existed): never in a group. */
  images_unverifiable?: number;
  index_version?: number;
  [extra: string]: unknown;
}

export interface ShotImage extends DuplicateImage {
  /** Ids of this shot's copies, collapsed into it. */
  copies: number[];
}

export interface SimilarShots extends EventDuplicates {
  groups: Array<DuplicateGroup & { images: ShotImage[] }>;
}

export type Relation = 'copy' | 'same_scene' | 'related';

export interface VerifiedResult extends SearchResult {
  /** copy: the same photograph (the only duplicate); same_scene: another shot; related: similar content. */
  relation: Relation;
  verdict: { score: number; reason: string };
}

export interface DuplicateCheck {
  /** True only when a match is a copy. */
  duplicate: boolean;
  /** Copies first, then same-scene shots, then related. */
  matches: VerifiedResult[];
  event_code?: string;
  index_version?: number;
  [extra: string]: unknown;
}

export interface VersionInfo {
  version: number;
  count?: number | null;
  index_type?: string | null;
  created_at?: string | null;
  published_at?: string | null;
  status?: string | null;
  /** Named by CURRENT on disk. */
  current?: boolean;
  /** The version this server answers from. */
  served?: boolean;
  /** Why the server refused to load it, if it did. */
  error?: string | null;
  [extra: string]: unknown;
}

export interface Versions {
  model_version: string | null;
  current: number | null;
  served: number | null;
  versions: VersionInfo[];
  [extra: string]: unknown;
}

export declare class ImageSearchClient {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  apiKey: string | undefined;
  timeout: number;
  retries: number;
  retryDelay: number;
  maxRetryDelay: number;

  /** GET / : throws ImageSearchError with status 503 while no index is loaded (after retries). */
  health(options?: CallOptions): Promise<Health>;
  /** POST /search (the seed's call). */
  searchSimilar(
    vector: ArrayLike<number>,
    topK?: number,
    filters?: SearchFilters | null,
    options?: VectorSearchOptions,
  ): Promise<SearchResult[]>;
  /** POST /add_image (the seed's call): registers the row; the pipeline embeds it later. */
  addImage(data: AddImageData, options?: CallOptions): Promise<AddImageResult>;
  /** POST /extract_features. */
  extractFeatures(file: Upload, options?: UploadOptions): Promise<Features>;
  /** GET /stats. */
  stats(options?: CallOptions): Promise<Stats>;
  /** POST /search/image. */
  searchByImage(file: Upload, options?: SearchOptions & UploadOptions): Promise<SearchResult[]>;
  /** GET /images/{idOrCode}/similar (the image itself excluded). */
  similarTo(idOrCode: number | string, options?: SearchOptions): Promise<SearchResult[]>;
  /** GET /events/{eventCode}/duplicates. */
  eventDuplicates(eventCode: string, options?: CallOptions): Promise<EventDuplicates>;
  /** GET /events/{eventCode}/similar-shots. */
  similarShots(eventCode: string, options?: CallOptions): Promise<SimilarShots>;
  /** POST /events/{eventCode}/duplicates/check. */
  checkDuplicate(
    eventCode: string,
    file: Upload,
    options?: UploadOptions & { topK?: number; minScore?: number },
  ): Promise<DuplicateCheck>;
  /** GET /versions. */
  versions(options?: CallOptions): Promise<Versions>;
  /** GET /metrics (Prometheus text). */
  metrics(options?: CallOptions): Promise<string>;
  /** Any route, with the client's timeout, retries and API key. */
  request<T = unknown>(
    method: string,
    path: string,
    options?: CallOptions & {
      query?: Record<string, string | number | boolean | null | undefined>;
      json?: unknown;
      form?: FormData;
      as?: 'json' | 'text';
    },
  ): Promise<T>;
}

export declare class ImageSearchError extends Error {
  constructor(
    message: string,
    info?: {
      status?: number;
      code?: string;
      body?: unknown;
      method?: string;
      url?: string;
      attempts?: number;
      cause?: unknown;
    },
  );
  readonly name: 'ImageSearchError';
  /** HTTP status; 0 when no response arrived (refused, timeout, abort). */
  status: number;
  /** HTTP_<status>, or ECONNREFUSED, ETIMEDOUT, EABORTED, EBADRESPONSE, ... */
  code: string;
  /** The parsed error body (JSON) or its text. */
  body: unknown;
  method?: string;
  url?: string;
  /** Attempts made, retries included. */
  attempts: number;
  /** 503 or connection refused: trying again later may work. */
  readonly retryable: boolean;
}

export declare function createClient(options?: ClientOptions): ImageSearchClient;
export declare function guessType(bytes: Uint8Array | null | undefined, name?: string): string;
export declare function toUpload(input: Upload, filename?: string): Promise<{ blob: Blob; filename: string }>;

export default ImageSearchClient;
