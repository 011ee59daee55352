/**
 * Turn what a Node app has at hand into a multipart part: a path, a Buffer, a Blob (read
 * whole: the server caps uploads at MAX_UPLOAD_MB anyway, and these can be sent again on a
 * retry), or a stream (a Node Readable from busboy or S3, a web ReadableStream, any async
 * iterable of bytes, a multer file object), which is sent as it arrives and never retried.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

import { FileReadError } from './errors.js';

const BY_EXTENSION = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp',
  bmp: 'image/bmp', tif: 'image/tiff', tiff: 'image/tiff', ppm: 'image/x-portable-pixmap',
  pgm: 'image/x-portable-graymap', pbm: 'image/x-portable-bitmap', heic: 'image/heic', avif: 'image/avif',
};

const FILE_PROBLEMS = {
  ENOENT: 'no such file', EACCES: 'permission denied', EPERM: 'permission denied', EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory', ELOOP: 'too many symbolic links', ENAMETOOLONG: 'name too long',
  EMFILE: 'too many open files',
};

/**
 * A system error reading a file (it has `code` and `syscall`, and a path: its own or the stream's) as a
 * FileReadError; undefined for anything else (a stream from the network that breaks stays what it is).
 */
export function fileReadError(err, path) {
  if (err instanceof FileReadError) return err;
  if (!err || typeof err.code !== 'string' || typeof err.syscall !== 'string') return undefined;
  const where = typeof err.path === 'string' ? err.path : path;
  if (typeof where !== 'string') return undefined;
  return new FileReadError(`cannot read the upload ${where}: ${FILE_PROBLEMS[err.code] ?? err.message} (${err.code})`,
    { code: err.code, path: where, syscall: err.syscall, cause: err });
}

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

/** A Node Readable, a web ReadableStream or any async iterable (but not a string or bytes). */
export function isStream(input) {
  if (input === null || typeof input !== 'object') return false;
  if (ArrayBuffer.isView(input) || input instanceof ArrayBuffer) return false;
  if (typeof Blob !== 'undefined' && input instanceof Blob) return false;
  return typeof input[Symbol.asyncIterator] === 'function' || typeof input.getReader === 'function';
}

/** A multer file (`{originalname, mimetype, buffer | path | stream}`) or busboy-like `{stream, filename}`. */
function fromFileObject(input, filename) {
  const name = filename ?? input.originalname ?? input.filename ?? input.name;
  const type = input.mimetype ?? input.mimeType ?? input.contentType;
  if (input.buffer !== undefined) return { source: input.buffer, name, type };
  if (typeof input.path === 'string') return { source: input.path, name: name ?? basename(input.path), type };
  if (input.stream !== undefined && isStream(input.stream)) return { source: input.stream, name, type };
  return undefined;
}

/**
 * `{ blob, filename }` for a replayable input, or `{ stream, filename, type }` for a stream:
 * a file path (string or file: URL), a Buffer, Uint8Array, ArrayBuffer or any typed array, a Blob/File,
 * a Node Readable / web ReadableStream / async iterable, or a multer file object.
 * @param {any} input
 * @param {string} [filename] overrides the name sent to the server
 */
export async function toUpload(input, filename) {
  if (input !== null && typeof input === 'object' && !isStream(input) && !(input instanceof URL)
      && !ArrayBuffer.isView(input) && !(input instanceof ArrayBuffer)
      && !(typeof Blob !== 'undefined' && input instanceof Blob)) {
    const file = fromFileObject(input, filename);
    if (file) {
      const upload = await toUpload(file.source, file.name);
      if (file.type && upload.blob && !upload.blob.type) upload.blob = new Blob([upload.blob], { type: file.type });
      if (file.type && upload.stream) upload.type = file.type;
      return upload;
    }
  }
  if (isStream(input)) {
    const name = filename ?? (typeof input.path === 'string' ? basename(input.path) : 'upload');
    return { stream: input, filename: name, type: undefined };
  }
  return toBlobUpload(input, filename);
}

async function toBlobUpload(input, filename) {
  if (typeof input === 'string' || input instanceof URL) {
    const path = input instanceof URL ? fileURLToPath(input) : input;
    let bytes;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw fileReadError(err, path) ?? err;
    }
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
      'upload must be a file path, a file: URL, a Buffer/Uint8Array/ArrayBuffer, a Blob, a stream '
        + `or a multer file object, got ${describe(input)}`,
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

function asBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return new TextEncoder().encode(chunk);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`an upload stream yielded ${describe(chunk)}, not bytes`);
}

/** `filename="..."` safe for any name: quotes and line breaks percent-encoded, as browsers do. */
function quoted(name) {
  return String(name).replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/**
 * A streamed multipart/form-data body: the form fields, then the `file` part as the stream
 * delivers it. The content type comes from the first bytes (unless the caller gave one), which
 * are read before anything is sent: a file stream that cannot be opened (a missing path) throws
 * its FileReadError here, before the request starts.
 * @returns {Promise<{ body: ReadableStream<Uint8Array>, contentType: string }>}
 */
export async function multipartStream({ stream, filename, type }, fields) {
  const boundary = `----image-similarity-${randomBytes(12).toString('hex')}`;
  const enc = new TextEncoder();
  const source = typeof stream[Symbol.asyncIterator] === 'function' ? stream : readerIterable(stream);
  const filePath = typeof stream.path === 'string' ? stream.path : undefined; // fs.createReadStream(path)
  const it = source[Symbol.asyncIterator]();
  let head;
  let failed;
  try {
    let first = await it.next();
    while (!first.done && asBytes(first.value).length === 0) first = await it.next();
    head = first.done ? new Uint8Array(0) : asBytes(first.value);
  } catch (err) {
    const unreadable = fileReadError(err, filePath);
    if (unreadable) throw unreadable;
    failed = err; // another stream's failure travels with the body, as it would have a moment later
  }

  async function* chunks() {
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined || value === null) continue;
      yield enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="${quoted(key)}"\r\n\r\n${value}\r\n`);
    }
    if (failed) throw failed;
    const contentType = type ?? guessType(head, filename);
    yield enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quoted(filename)}"`
      + `\r\nContent-Type: ${contentType}\r\n\r\n`);
    if (head.length) yield head;
    try {
      for (let next = await it.next(); !next.done; next = await it.next()) yield asBytes(next.value);
    } catch (err) {
      throw fileReadError(err, filePath) ?? err;
    }
    yield enc.encode(`\r\n--${boundary}--\r\n`);
  }

  const gen = chunks();
  const body = new ReadableStream({
    async pull(controller) {
      try {
        const { value, done } = await gen.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel(reason) {
      await gen.return(undefined);
      if (typeof stream.destroy === 'function') stream.destroy(reason instanceof Error ? reason : undefined);
    },
  });
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A web ReadableStream without async iteration (older runtimes) as an async iterable. */
function readerIterable(stream) {
  return {
    async* [Symbol.asyncIterator]() {
      const reader = stream.getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        reader.releaseLock();
      }
    },
  };
}

