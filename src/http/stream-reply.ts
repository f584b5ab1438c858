/**
 * Sends a large body (a blob) straight to the socket. The framework's
 * stream handling allocates and copies per chunk, which costs a third of
 * pull throughput, so blob bodies bypass it: the reply is hijacked once the
 * body's source is open (errors before that still leave as spec errors).
 * The framework's onResponse hook still logs it when the response finishes.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Writable } from 'node:stream';

export type BodyWriter = (out: Writable, opened: () => void) => Promise<void>;

export async function sendBody(req: FastifyRequest, reply: FastifyReply, write: BodyWriter): Promise<void> {
  const res = reply.raw;
  let started = false;
  const opened = () => {
    started = true;
    reply.hijack();
    res.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string | number | string[]>);
  };
  try {
    await write(res, opened);
  } catch (e) {
    if (!started) throw e; // nothing sent yet: the caller answers with the error
    // The client went away mid-transfer, or the bytes could not be read: the
    // status is already sent, so all that is left is to log and close.
    req.log.warn({ err: e, path: req.url }, 'blob transfer interrupted');
    res.destroy();
    return;
  }
  if (!started) opened();
  res.end();
}
