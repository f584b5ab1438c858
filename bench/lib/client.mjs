// A small registry client that speaks the push protocol (OCI Distribution
// v1.1) over keep-alive HTTP/1.1. Used to seed data and to drive the
// "many small images" workload. No dependencies beyond Node's standard library.
import http from 'node:http';
import crypto from 'node:crypto';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

export function sha256(buf) {
  return 'sha256:' + crypto.createHash('sha256').update(buf).digest('hex');
}

export class HttpError extends Error {
  constructor(what, res) {
    const body = res.body ? res.body.toString('utf8', 0, Math.min(res.body.length, 300)) : '';
    super(`${what}: HTTP ${res.status}${body ? ` ${body.trim()}` : ''}`);
    this.status = res.status;
  }
}

/** Append a query parameter to an upload Location without re-encoding the rest of it. */
export function withParam(location, name, value) {
  return location + (location.includes('?') ? '&' : '?') + name + '=' + encodeURIComponent(value);
}

export class RegistryClient {
  /**
   * @param {string} baseUrl e.g. http://127.0.0.1:5000
   * @param {{maxSockets?: number, timeoutMs?: number}} [opts]
   */
  constructor(baseUrl, { maxSockets = 16, timeoutMs = 60_000 } = {}) {
    this.base = new URL(baseUrl);
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
    this.timeoutMs = timeoutMs;
  }

  close() {
    this.agent.destroy();
  }

  /**
   * @returns {Promise<{status: number, headers: import('node:http').IncomingHttpHeaders, body: Buffer}>}
   */
  request(method, pathOrUrl, { headers = {}, body } = {}) {
    const url = new URL(pathOrUrl, this.base);
    return new Promise((resolve, reject) => {
      const h = { ...headers };
      if (body !== undefined) h['content-length'] = String(body.length);
      const req = http.request(
        {
          agent: this.agent,
          host: url.hostname,
          port: url.port,
          method,
          path: url.pathname + url.search,
          headers: h,
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname}: timed out after ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** HEAD, then (if absent) POST + monolithic PUT ?digest=. Returns 'exists' or 'pushed'. */
  async pushBlob(repo, data, digest = sha256(data)) {
    const head = await this.request('HEAD', `/v2/${repo}/blobs/${digest}`);
    if (head.status === 200) return 'exists';
    if (head.status !== 404) throw new HttpError(`HEAD blob ${digest}`, head);
    const post = await this.request('POST', `/v2/${repo}/blobs/uploads/`, { body: Buffer.alloc(0) });
    if (post.status !== 202) throw new HttpError(`POST upload in ${repo}`, post);
    const location = post.headers.location;
    if (!location) throw new Error(`POST upload in ${repo}: 202 without Location`);
    const put = await this.request('PUT', withParam(location, 'digest', digest), {
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
    });
    if (put.status !== 201) throw new HttpError(`PUT blob ${digest}`, put);
    const got = put.headers['docker-content-digest'];
    if (got && got !== digest) throw new Error(`PUT blob: server says digest ${got}, expected ${digest}`);
    return 'pushed';
  }

  async pushManifest(repo, reference, bytes, mediaType = OCI_MANIFEST) {
    const res = await this.request('PUT', `/v2/${repo}/manifests/${reference}`, {
      headers: { 'content-type': mediaType },
      body: bytes,
    });
    if (res.status !== 201) throw new HttpError(`PUT manifest ${repo}:${reference}`, res);
    const digest = sha256(bytes);
    const got = res.headers['docker-content-digest'];
    if (got && got !== digest) throw new Error(`PUT manifest: server says digest ${got}, expected ${digest}`);
    return digest;
  }

  /**
   * Push a small random image (`randomImage`), tagged `tag`.
   */
  async pushRandomImage(repo, tag, { layers = 3, layerSize = 4096 } = {}) {
    const img = randomImage({ layers, layerSize });
    // One request at a time per image: with N images in flight the server sees
    // at most N concurrent requests (the agent's maxSockets is the same N).
    for (let i = 0; i < img.layerBlobs.length; i++) await this.pushBlob(repo, img.layerBlobs[i], img.layers[i].digest);
    await this.pushBlob(repo, img.configBlob, img.config.digest);
    await this.pushManifest(repo, tag, img.manifest, img.mediaType);
    return img;
  }
}

/**
 * A small random image, not pushed: `layers` random layers of `layerSize`
 * bytes, a config naming them, and an OCI image manifest.
 */
export function randomImage({ layers = 3, layerSize = 4096 } = {}) {
  const layerBlobs = Array.from({ length: layers }, () => crypto.randomBytes(layerSize));
  const layerDescs = layerBlobs.map((b) => ({ mediaType: OCI_LAYER, digest: sha256(b), size: b.length }));
  const configBlob = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: { Labels: { 'bench.nonce': crypto.randomBytes(8).toString('hex') } },
      rootfs: { type: 'layers', diff_ids: layerDescs.map((d) => d.digest) },
    }),
  );
  const configDesc = { mediaType: OCI_CONFIG, digest: sha256(configBlob), size: configBlob.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: layerDescs }));
  return { digest: sha256(manifest), manifest, mediaType: OCI_MANIFEST, layers: layerDescs, config: configDesc, layerBlobs, configBlob };
}

/** Run `fn(i)` for i in [0, n) with at most `concurrency` in flight. Rejects on the first error. */
export async function pool(n, concurrency, fn) {
  let next = 0;
  let failed = null;
  async function worker() {
    while (failed === null && next < n) {
      const i = next++;
      try {
        await fn(i);
      } catch (e) {
        failed ??= e;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  if (failed) throw failed;
}
