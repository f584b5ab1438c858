/** POST, GET, PATCH, PUT and DELETE of /v2/<name>/blobs/uploads/. */
import type { FastifyReply } from 'fastify';
import type { UploadRecord } from '../../metadata/store.js';
import { RegistryError } from '../../registry/errors.js';
import { isValidRepositoryName, parseDigest } from '../../registry/reference.js';
import { uploadRange } from '../../registry/uploads.js';
import { hasBody, uploadBody } from '../request-body.js';
import type { Handler, RequestContext } from './handler.js';
import { eventContext } from '../event-context.js';

/**
 * With auth on, upload sessions belong to who opened them ('' for anonymous):
 * another principal's requests find no such session. Undefined with auth off.
 */
function callerOf({ req, access }: RequestContext): string | undefined {
  return access === undefined ? undefined : (req.principal ?? '');
}

function uploadLocation(repository: string, id: string): string {
  return `/v2/${repository}/blobs/uploads/${id}`;
}

function replyUpload(reply: FastifyReply, repository: string, upload: UploadRecord, status: number): void {
  reply
    .code(status)
    .header('Location', uploadLocation(repository, upload.id))
    .header('Range', uploadRange(upload.offset))
    .header('Docker-Upload-UUID', upload.id)
    .header('Content-Length', 0)
    .send();
}

function replyBlobCreated(reply: FastifyReply, repository: string, digest: string): void {
  reply
    .code(201)
    .header('Location', `/v2/${repository}/blobs/${digest}`)
    .header('Docker-Content-Digest', digest)
    .header('Content-Length', 0)
    .send();
}

/** POST: a monolithic upload (?digest=), a mount (?mount=[&from=]), or a new session. */
export const startUpload: Handler = async (c) => {
  const { req, reply, registry, repository, query, access } = c;
  const caller = callerOf(c);
  const mount = query.get('mount');
  const digestParam = query.get('digest');
  if (mount !== null) {
    const from = query.get('from') ?? undefined;
    const digest = parseDigest(mount);
    // An invalid `from` cannot hold the blob: fall back to an upload, as for an
    // unknown one. Which sources the caller may pull is the registry's check.
    const result =
      from !== undefined && !isValidRepositoryName(from)
        ? { mounted: false as const, upload: await registry.uploads.start(repository, caller) }
        : await registry.uploads.mount(repository, digest, from, caller, access === undefined ? undefined : (r) => access.canPull(r), eventContext(c));
    if (result.mounted) return replyBlobCreated(reply, repository, result.blob.digest);
    return replyUpload(reply, repository, result.upload, 202);
  }
  if (digestParam !== null) {
    const blob = await registry.uploads.monolithic(repository, parseDigest(digestParam), uploadBody(req.raw), eventContext(c));
    return replyBlobCreated(reply, repository, blob.digest);
  }
  const upload = await registry.uploads.start(repository, caller);
  replyUpload(reply, repository, upload, 202);
};

export const getUpload: Handler = async (c) => {
  const { reply, registry, repository, reference } = c;
  const upload = await registry.uploads.status(repository, reference, callerOf(c));
  replyUpload(reply, repository, upload, 204);
};

export const patchUpload: Handler = async (c) => {
  const { req, reply, registry, repository, reference } = c;
  const upload = await registry.uploads.append(repository, reference, uploadBody(req.raw), callerOf(c));
  replyUpload(reply, repository, upload, 202);
};

export const putUpload: Handler = async (c) => {
  const { req, reply, registry, repository, reference, query } = c;
  const digestParam = query.get('digest');
  if (digestParam === null) {
    req.raw.resume();
    throw new RegistryError('DIGEST_INVALID', 'the digest parameter is required to finish an upload');
  }
  const digest = parseDigest(digestParam);
  const body = hasBody(req.raw) ? uploadBody(req.raw) : undefined;
  const blob = await registry.uploads.finish(repository, reference, digest, body, callerOf(c), eventContext(c));
  replyBlobCreated(reply, repository, blob.digest);
};

export const deleteUpload: Handler = async (c) => {
  const { reply, registry, repository, reference } = c;
  await registry.uploads.cancel(repository, reference, callerOf(c));
  reply.code(204).header('Content-Length', 0).send();
};
