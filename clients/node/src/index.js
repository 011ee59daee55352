/**
 * image-similarity-client: find duplicate and related event photos through the search server.
 *
 *   import { ImageSimilarityClient } from 'image-similarity-client';        // ESM (or the default import)
 *   const ImageSimilarityClient = require('image-similarity-client');       // CommonJS: the class itself,
 *   const { ImageSimilarityClient } = require('image-similarity-client');   // its named exports as properties
 *   const client = new ImageSimilarityClient('http://localhost:8000');
 *   const results = await client.searchSimilar(vectorArray, 5);
 */
import { ImageSimilarityClient } from './client.js';

export { ImageSearchClient, ImageSimilarityClient, responseOf } from './client.js';
export {
  AbortError, AuthenticationError, BadResponseError, ConflictError, ConnectionError, FileReadError, ImageSearchError,
  NotFoundError, PayloadTooLargeError, RateLimitError, ServerError, TimeoutError, UnavailableError,
  UnsupportedMediaError, ValidationError, WaitTimeoutError,
} from './errors.js';
export { guessType, toUpload } from './upload.js';

/** Shorthand for `new ImageSimilarityClient(options)`. */
export function createClient(options) {
  return new ImageSimilarityClient(options);
}

export default ImageSimilarityClient;
