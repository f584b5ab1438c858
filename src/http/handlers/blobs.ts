/** GET, HEAD and DELETE /v2/<name>/blobs/<digest>. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ByteRange } from '../../storage/blob-store.js';
import type { RemoteBlob } from '../../registry/pull-through.js';
import { CACHE_HEADER } from './cache-header.js';
import { RegistryError } from '../../registry/errors.js';
import { parseDigest } from '../../registry/reference.js';
import { sendBody } from '../stream-reply.js';
import type { Handler } from './handler.js';
import { eventContext } from '../event-context.js';

export const headBlob: Handler = async (rc) => {
  const { reply, registry, repository, reference } = rc;
  const blob = await registry.blobs.size(repository, parseDigest(reference));
  if (blob.cache) reply.header(CACHE_HEADER, blob.cache);
  // A HEAD that finds the blob is a pull, as the reference registry reports it.
  if (registry.ctx.pullEvents) registry.blobs.pulled(repository, blob, eventContext(rc)!);
  reply
    .headers({
      'Content-Length': blob.size,
      'Content-Type': 'application/octet-stream',
      'Docker-Content-Digest': blob.digest,
      'Accept-Ranges': 'bytes',
      ETag: `"${blob.digest}"`,
    })
    .send();
};

export const getBlob: Handler = async (rc) => {
  const { req, reply, registry, repository, reference, access } = rc;
  const found = await registry.blobs.find(repository, parseDigest(reference));
  if (registry.ctx.pullEvents) registry.blobs.pulled(repository, 'remote' in found ? { digest: found.remote.digest, size: found.remote.size } : found.blob, eventContext(rc)!);
  if ('remote' in found) return sendRemote(c(req, reply), found.remote, access !== undefined);
  const blob = found.blob;
  if (registry.ctx.pullThrough?.serves(repository)) reply.header(CACHE_HEADER, 'hit');
  const location = await registry.blobs.redirectUrl(blob);
  if (location) {
    // Existence was answered by metadata above; the bytes (and any Range) are the object store's.
    reply.code(307).headers({ Location: location, 'Docker-Content-Digest': blob.digest, 'Content-Length': 0 }).send();
    return;
  }
  const range = parseRange(req.headers.range, blob.size);
  reply
    .header('Content-Type', 'application/octet-stream')
    .header('Docker-Content-Digest', blob.digest)
    .header('Accept-Ranges', 'bytes')
    .header('ETag', `"${blob.digest}"`)
    // With auth on, shared caches must not hand a private blob to someone else.
    .header('Cache-Control', access ? 'private, max-age=31536000' : 'max-age=31536000');
  if (range) {
    reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`).header('Content-Length', range.end - range.start + 1);
  } else {
    reply.code(200).header('Content-Length', blob.size);
  }
  await sendBody(req, reply, (out, opened) => registry.blobs.copyTo(blob, range, out, opened));
};

/**
 * A blob being fetched from upstream, streamed as it arrives. A Range is
 * ignored (HTTP allows it): the whole blob is sent, from the first byte
 * upstream gave.
 */
async function sendRemote({ req, reply }: { req: FastifyRequest; reply: FastifyReply }, remote: RemoteBlob, authOn: boolean): Promise<void> {
  reply
    .code(200)
    .header('Content-Type', 'application/octet-stream')
    .header('Docker-Content-Digest', remote.digest)
    .header('ETag', `"${remote.digest}"`)
    .header('Cache-Control', authOn ? 'private, max-age=31536000' : 'max-age=31536000')
    .header(CACHE_HEADER, 'miss');
  if (remote.size !== undefined) reply.header('Content-Length', remote.size);
  await sendBody(req, reply, (out, opened) => remote.copyTo(out, opened));
}

const c = (req: FastifyRequest, reply: FastifyReply) => ({ req, reply });

export const deleteBlob: Handler = async (rc) => {
  const { reply, registry, repository, reference } = rc;
  await registry.blobs.delete(repository, parseDigest(reference), eventContext(rc));
  reply.code(202).header('Content-Length', 0).send();
};

/**
 * A single `bytes=` range (RFC 9110). Malformed or multi-range headers are
 * ignored (the whole blob is sent); a range past the end is 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): RegistryError {
  return new RegistryError('SIZE_INVALID', 'requested range not satisfiable', {
    status: 416,
    headers: { 'Content-Range': `bytes */${size}` },
  });
}
