/** Reading request bodies at the edge: declared lengths, ranges, and bounded buffering. */
import type { IncomingMessage } from 'node:http';
import type { UploadBody } from '../registry/uploads.js';
import { RegistryError } from '../registry/errors.js';

/** Content-Length as a number, undefined when absent; SIZE_INVALID when malformed. */
export function contentLength(req: IncomingMessage): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new RegistryError('SIZE_INVALID', 'malformed Content-Length');
  return Number(raw);
}

/** Whether the request carries a body at all (a length > 0, or chunked transfer). */
export function hasBody(req: IncomingMessage): boolean {
  const length = contentLength(req);
  return (length !== undefined && length > 0) || (length === undefined && req.headers['transfer-encoding'] !== undefined);
}

/**
 * A chunk's Content-Range: `<start>-<end>` per the spec (a `bytes ` prefix is
 * tolerated). Anything else is refused with 416.
 */
export function uploadBody(req: IncomingMessage): UploadBody {
  const length = contentLength(req);
  const header = req.headers['content-range'];
  if (header === undefined) return { stream: req, length };
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!m) throw new RegistryError('BLOB_UPLOAD_INVALID', 'malformed Content-Range', { status: 416 });
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryError('BLOB_UPLOAD_INVALID', 'Content-Range ends before it starts', { status: 416 });
  return { stream: req, length, range: { start, end } };
}

/** Buffers a small body (a manifest), refusing more than `limit` bytes with 413. */
export async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new RegistryError('SIZE_INVALID', `manifest exceeds the ${limit}-byte limit`, { status: 413, detail: { limit } });
  const length = contentLength(req);
  if (length !== undefined && length > limit) {
    req.resume();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  // Listeners, not `for await`: leaving a for-await early destroys the
  // request, and with it a keep-alive connection the client is about to
  // reuse (its next request then hangs). Past the limit the rest of the body
  // is drained and discarded, so the 413 leaves the connection usable.
  await new Promise<void>((resolve, reject) => {
    const done = (error?: RegistryError) => {
      req.off('data', onData).off('end', onEnd).off('error', onCut).off('aborted', onCut);
      if (error) {
        req.resume();
        reject(error);
      } else {
        resolve();
      }
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > limit) done(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => done();
    const onCut = () => done(new RegistryError('MANIFEST_INVALID', 'request body was cut off'));
    req.on('data', onData).on('end', onEnd).on('error', onCut).on('aborted', onCut);
  });
  if (length !== undefined && total !== length) throw new RegistryError('SIZE_INVALID', 'body shorter than Content-Length');
  return Buffer.concat(chunks, total);
}
