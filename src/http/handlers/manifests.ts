/** GET, HEAD, PUT and DELETE /v2/<name>/manifests/<reference>. */
import { parseManifestReference } from '../../registry/reference.js';
import { readLimited } from '../request-body.js';
import { eventContext } from '../event-context.js';
import { CACHE_HEADER } from './cache-header.js';
import type { Handler, RequestContext } from './handler.js';

async function fetchManifest(c: RequestContext, withBody: boolean): Promise<void> {
  const { req, reply, registry, repository, reference } = c;
  // A GET or a HEAD is a pull, as the reference registry reports it.
  const ev = registry.ctx.pullEvents ? eventContext(c) : undefined;
  const manifest = await registry.manifests.get(repository, parseManifestReference(reference), req.headers.accept, ev);
  // Lowercase names: Fastify lowercases every name it is given (and sends
  // them so); one that already is costs it no new string per request.
  reply
    .header('content-type', manifest.mediaType)
    .header('content-length', manifest.size)
    .header('docker-content-digest', manifest.digest)
    .header('etag', `"${manifest.digest}"`);
  if (withBody) registry.ctx.pulls?.record(repository, manifest.digest);
  if (manifest.cache) {
    reply.header(CACHE_HEADER, manifest.cache);
    // RFC 7234's stale warning, which caches and humans know, beside Berth's own header.
    if (manifest.cache === 'stale') reply.header('Warning', '110 - "Response is Stale"');
  }
  reply.send(withBody ? manifest.body : undefined);
}

export const getManifest: Handler = (c) => fetchManifest(c, true);
export const headManifest: Handler = (c) => fetchManifest(c, false);

export const putManifest: Handler = async (c) => {
  const { req, reply, registry, repository, reference } = c;
  const ref = parseManifestReference(reference, 'write');
  const body = await readLimited(req.raw, registry.ctx.options.maxManifestBytes);
  const pushed = await registry.manifests.put(repository, ref, body, req.headers['content-type'], eventContext(c));
  reply.code(201).header('Location', `/v2/${repository}/manifests/${pushed.digest}`).header('Docker-Content-Digest', pushed.digest);
  if (pushed.subject) reply.header('OCI-Subject', pushed.subject);
  reply.header('Content-Length', 0).send();
};

export const deleteManifest: Handler = async (c) => {
  const { reply, registry, repository, reference } = c;
  await registry.manifests.delete(repository, parseManifestReference(reference), eventContext(c));
  reply.code(202).header('Content-Length', 0).send();
};
