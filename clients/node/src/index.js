/**
 * image-similarity-client: find duplicate and related event photos through the search server.
 *
 *   import { ImageSearchClient } from 'image-similarity-client';
 *   const client = new ImageSearchClient({ baseUrl: 'http://127.0.0.1:8000' });
 */
import { ImageSearchClient } from './client.js';

export { ImageSearchClient } from './client.js';
export { ImageSearchError } from './errors.js';
export { guessType, toUpload } from './upload.js';

/** Shorthand for `new ImageSearchClient(options)`. */
export function createClient(options) {
  return new ImageSearchClient(options);
}

export default ImageSearchClient;
