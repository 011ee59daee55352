/**
 * Turn what a Node app has at hand (a path, a Buffer, a Blob) into a multipart part.
 * Files are read whole: the server caps uploads (MAX_UPLOAD_MB, 20 MB by default) anyway.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const BY_EXTENSION = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp',
  bmp: 'image/bmp', tif: 'image/tiff', tiff: 'image/tiff', ppm: 'image/x-portable-pixmap',
  pgm: 'image/x-portable-graymap', pbm: 'image/x-portable-bitmap', heic: 'image/heic', avif: 'image/avif',
};

/** The content type from the first bytes (what the file is), else from the name (what it claims). */
export function guessType(bytes, name) {
  const b = bytes ?? new Uint8Array(0);
  const starts = (...sig) => sig.every((v, i) => b[i] === v);
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) {
    return 'image/webp';
  }
  if (starts(0x42, 0x4d)) return 'image/bmp';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return 'image/tiff';
  const ext = typeof name === 'string' ? name.split('.').pop().toLowerCase() : '';
  return BY_EXTENSION[ext] ?? 'application/octet-stream';
}

/**
 * A `{ blob, filename }` for FormData from a file path (string or file: URL), a Buffer,
 * Uint8Array, ArrayBuffer or any typed array, or a Blob/File.
 * @param {string | URL | Blob | ArrayBuffer | ArrayBufferView} input
 * @param {string} [filename] overrides the name sent to the server
 */
export async function toUpload(input, filename) {
  if (typeof input === 'string' || input instanceof URL) {
    const path = input instanceof URL ? fileURLToPath(input) : input;
    const bytes = await readFile(path);
    const name = filename ?? basename(path);
    return { blob: new Blob([bytes], { type: guessType(bytes, name) }), filename: name };
  }
  if (typeof Blob !== 'undefined' && input instanceof Blob) {
    const name = filename ?? (typeof input.name === 'string' && input.name ? input.name : 'upload');
    if (input.type) return { blob: input, filename: name };
    const head = new Uint8Array(await input.slice(0, 16).arrayBuffer());
    return { blob: new Blob([input], { type: guessType(head, name) }), filename: name };
  }
  let bytes;
  if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
  else if (ArrayBuffer.isView(input)) bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (!bytes) {
    throw new TypeError(
      `upload must be a file path, a file: URL, a Buffer/Uint8Array/ArrayBuffer or a Blob, got ${describe(input)}`,
    );
  }
  const name = filename ?? 'upload';
  return { blob: new Blob([bytes], { type: guessType(bytes, name) }), filename: name };
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return typeof value;
}
