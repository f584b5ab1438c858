// Helpers for end-to-end tests that drive real registry clients (docker,
// skopeo, podman) against a running Berth.
//
// The clients are provisioned by .ci/setup-clients.sh (dockerd with the vfs
// storage driver, podman configured by the files in .ci/podman/). A test that
// needs a client calls requireClient(t, name) first: outside CI a missing
// client skips the test with a visible message; with CI=true it fails.
//
// This module has no side effects on import (node --test also loads it as a
// test file, because it lives under test/).

import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

// ---------------------------------------------------------------------------
// Running commands

export interface RunOptions {
  /** Extra environment, merged over process.env. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the command (SIGKILL) after this long. Default 120 000 ms. */
  timeoutMs?: number;
  /** Written to the command's stdin (stdin is closed either way). */
  input?: string | Buffer;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly result: RunResult & { timedOut: boolean },
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

function tail(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}

/**
 * Runs a command without a shell, asynchronously (a Berth running in the same
 * process keeps serving meanwhile). Throws a CommandError carrying stderr and
 * stdout when it exits non-zero (unless allowFailure) or times out.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const started = Date.now();
  const line = [cmd, ...args].join(' ');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run \`${line}\`: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = {
        code: code ?? 128,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (!timedOut && (result.code === 0 || opts.allowFailure)) {
        resolvePromise(result);
        return;
      }
      const why = timedOut
        ? `timed out after ${timeoutMs} ms`
        : `exited with code ${code ?? `null (signal ${signal})`} after ${Date.now() - started} ms`;
      reject(
        new CommandError(
          `\`${line}\` ${why}\n--- stderr ---\n${tail(result.stderr, 4000)}\n--- stdout ---\n${tail(result.stdout, 2000)}`,
          { ...result, timedOut },
        ),
      );
    });
    child.stdin.on('error', () => {
      /* the command may exit without reading its input */
    });
    child.stdin.end(opts.input);
  });
}

// ---------------------------------------------------------------------------
// Client availability

export type ClientName = 'docker' | 'skopeo' | 'podman' | 'docker-registry' | 'wrk' | 'curl';

const availability = new Map<ClientName, string | null>();

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), fsConstants.X_OK);
      return true;
    } catch {
      /* keep looking */
    }
  }
  return false;
}

function probe(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string | null {
  const r = spawnSync(cmd, args, {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) return r.error.message;
  if (r.status === 0) return null;
  const msg = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
  return `\`${cmd} ${args.join(' ')}\` exited with ${r.status ?? r.signal}: ${msg}`;
}

/**
 * Why `name` is not usable, or null when it is. Checks the binary, and for
 * docker a daemon that answers, for podman that it works with podmanEnv().
 * Cached per process.
 */
export function clientUnavailableReason(name: ClientName): string | null {
  const cached = availability.get(name);
  if (cached !== undefined) return cached;
  let why: string | null;
  if (!onPath(name)) {
    why = `\`${name}\` is not on PATH`;
  } else if (name === 'docker') {
    why = probe('docker', ['version', '--format', '{{.Server.Version}}']);
    if (why) why = `no docker daemon answers (${why})`;
  } else if (name === 'podman') {
    why = probe('podman', ['info', '--format', '{{.Store.GraphDriverName}}'], podmanEnv());
  } else if (name === 'skopeo' || name === 'docker-registry') {
    why = probe(name, ['--version']);
  } else {
    why = null; // wrk, curl: being on PATH is enough
  }
  availability.set(name, why);
  return why;
}

/**
 * True when the client is usable. Otherwise: with CI=true throws (the test
 * fails); else marks the test skipped with '<name> not available: <why>' and
 * returns false, so the test body can `return`.
 *
 *   if (!requireClient(t, 'docker')) return;
 */
export function requireClient(t: Pick<TestContext, 'skip'>, name: ClientName): boolean {
  const why = clientUnavailableReason(name);
  if (why === null) return true;
  const message = `${name} not available: ${why}`;
  if (process.env.CI === 'true') {
    throw new Error(`${message} (CI=true, so this fails instead of skipping; run .ci/setup-clients.sh)`);
  }
  t.skip(`${message} (run .ci/setup-clients.sh as root)`);
  return false;
}

// ---------------------------------------------------------------------------
// Podman (and skopeo) configuration

function findCiConfigDir(): string {
  const override = process.env.BERTH_PODMAN_CONF_DIR;
  if (override) return resolve(override);
  // Works from test/helpers/ (tsx) and dist/test/helpers/ (compiled).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, '.ci', 'podman');
    if (existsSync(join(candidate, 'containers.conf'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find .ci/podman/containers.conf above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/**
 * Environment for podman (also fine for skopeo): process.env plus
 * CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF
 * pointing at .ci/podman/ — the same settings .ci/setup-clients.sh checks
 * (vfs storage, cgroupfs, file events logger, no short-name search).
 */
export function podmanEnv(): NodeJS.ProcessEnv {
  const dir = findCiConfigDir();
  return {
    ...process.env,
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
  };
}

// ---------------------------------------------------------------------------
// Content: tar, layers, images

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A name fragment unique to this call, for repositories and tags. */
export function uniqueName(prefix = 'e2e'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

export interface TarEntry {
  path: string;
  /** Omit for a directory. */
  content?: Buffer | string;
  mode?: number;
  /** Seconds since the epoch; default 0, so archives are reproducible. */
  mtime?: number;
}

function writeOctal(header: Buffer, offset: number, width: number, value: number): void {
  // width-1 octal digits, zero padded, then NUL
  const s = value.toString(8).padStart(width - 1, '0');
  if (s.length > width - 1) throw new Error(`tar: value ${value} does not fit`);
  header.write(s + '\0', offset, width, 'ascii');
}

function tarHeader(entry: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const isDir = entry.content === undefined;
  let name = entry.path.replace(/^\/+/, '');
  if (isDir && !name.endsWith('/')) name += '/';
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
    if (cut < 0 || Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) {
      throw new Error(`tar: path too long for ustar: ${entry.path}`);
    }
  }
  h.write(name, 0, 100, 'utf8');
  writeOctal(h, 100, 8, entry.mode ?? (isDir ? 0o755 : 0o644));
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, entry.mtime ?? 0);
  h.write('        ', 148, 8, 'ascii'); // checksum placeholder
  h.write(isDir ? '5' : '0', 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** A POSIX ustar archive of the given entries (regular files and directories). */
export function tarBuffer(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.content === undefined ? Buffer.alloc(0) : Buffer.from(entry.content);
    parts.push(tarHeader(entry, data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** One layer: file contents (stored as /layer-<i>.txt) or an explicit file. */
export type LayerSpec = Buffer | string | { path: string; content: Buffer | string };

export interface BuiltLayer {
  /** The uncompressed tar. Its digest is the diff_id. */
  tar: Buffer;
  diffId: string;
  /** The gzip'd tar, as stored in registries. */
  blob: Buffer;
  descriptor: Descriptor;
}

export interface BuiltImage {
  platform: Platform;
  layers: BuiltLayer[];
  config: Descriptor;
  configBytes: Buffer;
  manifest: Descriptor;
  manifestBytes: Buffer;
}

function layerEntry(spec: LayerSpec, index: number): TarEntry {
  if (typeof spec === 'string' || Buffer.isBuffer(spec)) return { path: `layer-${index}.txt`, content: spec };
  return { path: spec.path, content: spec.content };
}

export function buildLayer(entry: TarEntry): BuiltLayer {
  const tar = tarBuffer([entry]);
  const blob = gzipSync(tar);
  return {
    tar,
    diffId: sha256(tar),
    blob,
    descriptor: { mediaType: MEDIA_TYPES.ociLayerGzip, digest: sha256(blob), size: blob.length },
  };
}

function platformString(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

function buildConfig(platform: Platform, layers: readonly BuiltLayer[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      created: '1970-01-01T00:00:00Z',
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '1970-01-01T00:00:00Z', created_by: `berth e2e layer ${i}` })),
    }),
  );
}

/** An OCI image (manifest + config + gzip'd layers) held in memory. */
export function buildImage(opts: { layers: readonly LayerSpec[]; platform?: Platform }): BuiltImage {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers = opts.layers.map((spec, i) => buildLayer(layerEntry(spec, i)));
  const configBytes = buildConfig(platform, layers);
  const config: Descriptor = { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(configBytes), size: configBytes.length };
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config,
      layers: layers.map((l) => l.descriptor),
    }),
  );
  return {
    platform,
    layers,
    config,
    configBytes,
    manifest: { mediaType: MEDIA_TYPES.ociManifest, digest: sha256(manifestBytes), size: manifestBytes.length },
    manifestBytes,
  };
}

export interface OciLayoutOptions {
  /** Contents of the layers every image has, in order (at least one). */
  layers: readonly LayerSpec[];
  /**
   * Without: one image (for `platform`, default linux/amd64). With: an image
   * index of one image per platform; each gets the shared `layers` plus a
   * last layer of its own (/platform.txt naming the platform), so the
   * per-platform manifests share some blobs and differ in others.
   */
  platforms?: readonly Platform[];
  platform?: Platform;
  /** Tag recorded in index.json (org.opencontainers.image.ref.name). Default 'latest'. */
  tag?: string;
}

export interface OciLayout {
  dir: string;
  tag: string;
  /** The skopeo reference, `oci:<dir>:<tag>`. */
  ref: string;
  /** What the tag points at: the image index (multi-platform) or the manifest. */
  top: Descriptor;
  /** Same as top.digest. */
  digest: string;
  /** The image index bytes, when `platforms` was given. */
  indexBytes?: Buffer;
  images: BuiltImage[];
  /** Digests of all configs and layers (unique). */
  blobDigests: string[];
  /** Digests of all image manifests (not the index). */
  manifestDigests: string[];
  /** Every blob written (layers, configs, manifests, index) by digest. */
  blobs: Map<string, Buffer>;
}

/**
 * Writes an OCI image layout to `dir` (created if needed; an existing layout
 * there is replaced in index.json, its blobs kept). Content is deterministic:
 * the same options give the same digests. Use unique layer contents (e.g.
 * uniqueName()) when a test must not find blobs left by another test.
 */
export async function makeOciLayout(dir: string, opts: OciLayoutOptions): Promise<OciLayout> {
  if (opts.layers.length === 0 && !opts.platforms?.length) throw new Error('makeOciLayout: need at least one layer');
  const tag = opts.tag ?? 'latest';
  const blobs = new Map<string, Buffer>();
  const addImage = (img: BuiltImage) => {
    for (const l of img.layers) blobs.set(l.descriptor.digest, l.blob);
    blobs.set(img.config.digest, img.configBytes);
    blobs.set(img.manifest.digest, img.manifestBytes);
  };

  let images: BuiltImage[];
  let top: Descriptor;
  let indexBytes: Buffer | undefined;
  if (opts.platforms && opts.platforms.length > 0) {
    images = opts.platforms.map((platform) =>
      buildImage({
        platform,
        layers: [...opts.layers, { path: 'platform.txt', content: `${platformString(platform)}\n` }],
      }),
    );
    images.forEach(addImage);
    indexBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: images.map((img) => ({ ...img.manifest, platform: img.platform })),
      }),
    );
    top = { mediaType: MEDIA_TYPES.ociIndex, digest: sha256(indexBytes), size: indexBytes.length };
    blobs.set(top.digest, indexBytes);
  } else {
    const img = buildImage({ layers: opts.layers, platform: opts.platform });
    images = [img];
    addImage(img);
    top = img.manifest;
  }

  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [digest, bytes] of blobs) await writeFile(join(blobDir, digest.slice('sha256:'.length)), bytes);
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );

  return {
    dir,
    tag,
    ref: `oci:${dir}:${tag}`,
    top,
    digest: top.digest,
    indexBytes,
    images,
    blobDigests: [...new Set(images.flatMap((img) => [img.config.digest, ...img.layers.map((l) => l.descriptor.digest)]))],
    manifestDigests: images.map((img) => img.manifest.digest),
    blobs,
  };
}

export interface DockerArchiveOptions {
  layers: readonly LayerSpec[];
  /** e.g. ['127.0.0.1:5000/e2e/app:v1']; tags the image on `docker load`. */
  repoTags: readonly string[];
  platform?: Platform;
}

export interface DockerArchive {
  file: string;
  repoTags: string[];
  /** The config digest: what `docker image inspect -f {{.Id}}` shows, before push and after pull. */
  imageId: string;
  diffIds: string[];
  image: BuiltImage;
}

/**
 * Writes a docker-archive tarball (the `docker save` format) of a multi-layer
 * image for `docker load -i <file>` (docker) or `podman load -i <file>`.
 * Docker can neither import nor build multi-layer images without running
 * containers; loading this is the way. Layers are stored uncompressed, as
 * `docker save` does; docker compresses them itself on push, so the pushed
 * manifest digest is docker's choice, but the image ID (config digest) is
 * preserved end to end.
 */
export async function makeDockerArchive(file: string, opts: DockerArchiveOptions): Promise<DockerArchive> {
  const image = buildImage({ layers: opts.layers, platform: opts.platform });
  const configHex = image.config.digest.slice('sha256:'.length);
  const entries: TarEntry[] = [];
  const layerPaths: string[] = [];
  for (const layer of image.layers) {
    const hex = layer.diffId.slice('sha256:'.length);
    entries.push({ path: `${hex}/` }, { path: `${hex}/layer.tar`, content: layer.tar });
    layerPaths.push(`${hex}/layer.tar`);
  }
  entries.push({ path: `${configHex}.json`, content: image.configBytes });
  entries.push({
    path: 'manifest.json',
    content: JSON.stringify([{ Config: `${configHex}.json`, RepoTags: [...opts.repoTags], Layers: layerPaths }]),
  });
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, tarBuffer(entries));
  return {
    file,
    repoTags: [...opts.repoTags],
    imageId: image.config.digest,
    diffIds: image.layers.map((l) => l.diffId),
    image,
  };
}

/** `docker rmi -f` the given references, ignoring ones that do not exist. */
export async function dockerRemoveImages(refs: readonly string[]): Promise<void> {
  if (refs.length === 0) return;
  await run('docker', ['rmi', '-f', ...refs], { allowFailure: true });
}
