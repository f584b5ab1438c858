// The scale benchmark's bulk loader: builds a registry of N images through
// Berth's own ports, in-process: blob bytes through the filesystem BlobStore
// (writeBlob, as a monolithic push stores them: synced, under a key unique to
// the "upload"), then the same MetadataStore operations the registry runs for
// a push (commitBlob per uploaded blob, mountBlob for a blob another
// repository holds, putManifest with its tag). The result is what pushes
// would have produced, so fsck finds it clean and GC treats it normally; it
// skips only HTTP and the upload sessions' own rows.
//
// Resumable: the dataset directory's state.json records how many images (and
// tags of the many-tag repositories) are committed, after each chunk. A run
// that stopped mid-chunk redoes that chunk carefully (each blob looked up
// first), so running again continues, and a larger --images grows the dataset.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { pool } from './client.mjs';
import { POOL, TAGGED_IMAGES, mainImage, makeImage, bigRepository, bigTag } from './scale-content.mjs';

const CHUNK = 5000;

export function readState(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  }
}

export function writeState(dir, state) {
  const tmp = path.join(dir, 'state.json.tmp');
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  fs.renameSync(tmp, path.join(dir, 'state.json'));
}

/** Creates the dataset's PostgreSQL database (named after the dataset) if it does not exist yet; returns its URL. */
export async function ensurePgDatabase(repoRoot, maintenanceUrl, name) {
  const { default: pg } = await import(pathToFileURL(path.join(repoRoot, 'node_modules/pg/lib/index.js')).href);
  const client = new pg.Client({ connectionString: maintenanceUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const u = new URL(maintenanceUrl);
  u.pathname = '/' + name;
  return u.toString();
}

/** Opens the dataset's stores with the modules of the built Berth (dist/). */
export async function openStores(repoRoot, state, dataDir) {
  const dist = (p) => pathToFileURL(path.join(repoRoot, 'dist/src', p)).href;
  const { FilesystemBlobStore } = await import(dist('storage/filesystem.js'));
  const storage = new FilesystemBlobStore(dataDir);
  await storage.init();
  let metadata;
  if (state.metadataUrl) {
    const { PostgresMetadataStore } = await import(dist('metadata/postgres/postgres-store.js'));
    // The loader's own sessions commit without waiting for the WAL flush:
    // tags of one repository serialize on its row (the tags_version bump),
    // and at one flush per commit on this disk the many-tag repositories
    // loaded at ~120 tags/s. Bytes and rows are what a push leaves either
    // way; a PostgreSQL crash during a load can lose its last commits, and
    // then the dataset is to be built again (state.json would overstate it).
    const url = new URL(state.metadataUrl);
    url.searchParams.set('options', '-c synchronous_commit=off');
    metadata = await PostgresMetadataStore.open(url.toString(), { poolSize: 16 });
  } else {
    const { SqliteMetadataStore } = await import(dist('metadata/sqlite/sqlite-store.js'));
    metadata = new SqliteMetadataStore(path.join(dataDir, 'metadata.db'));
  }
  return { storage, metadata };
}

/**
 * Loads the dataset in `dir` up to `images` images and `bigRepos`
 * repositories of `bigTags` tags. Returns { images, seconds, imagesSeconds,
 * rate } for the images loaded by this call (the rate over the images'
 * phase, without the many-tag repositories).
 *
 * `durability`: 'chunk' (default) writes a chunk's blob files without a sync
 * each, then syncs the file system once (`sync -f`) before any of their
 * metadata commits, so bytes are still durable before metadata names them
 * (invariant 8), at one sync per chunk instead of two per blob; 'blob' stores
 * each blob through BlobStore.writeBlob, exactly as a monolithic push does
 * (about 300 images/s on this machine: its two fsyncs per blob bound it).
 */
export async function load({ repoRoot, dir, images, bigRepos, bigTags, concurrency, durability = 'chunk', log, progress }) {
  const state = readState(dir);
  if (!state) throw new Error(`${dir}: no state.json (create the dataset first)`);
  const dataDir = path.join(dir, 'data');
  const { storage, metadata } = await openStores(repoRoot, state, dataDir);
  const loader = new Loader(storage, metadata, dataDir, durability);
  const started = Date.now();
  const startImages = state.images;
  let imagesSeconds = 0;
  // Within a chunk too: the images whose manifest is in (state.json moves per chunk).
  const ticker = setInterval(() => {
    if (state.images < images) progress?.(`images ~${state.images + loader.counts.inChunk}/${images}`, state.images + loader.counts.inChunk - startImages, started);
  }, 10_000);
  try {
    // Images first: the shared pool's blobs are committed by images 0..POOL-1
    // (in their repositories), so those go alone before any image mounts them.
    let careful = state.inProgress === true;
    while (state.images < images) {
      const from = state.images;
      const to = from < POOL ? Math.min(images, POOL) : Math.min(images, from + CHUNK);
      state.inProgress = true;
      writeState(dir, state);
      const chunk = Array.from({ length: to - from }, (_, k) => mainImage(from + k));
      await loader.images(chunk, concurrency, careful);
      careful = false;
      state.images = to;
      state.inProgress = false;
      writeState(dir, state);
      progress?.(`images ${to}/${images}`, to - startImages, started);
    }
    imagesSeconds = (Date.now() - started) / 1000;
    state.bigTags ??= [];
    for (let k = 0; k < bigRepos; k++) {
      const repo = bigRepository(k);
      const imgs = Array.from({ length: TAGGED_IMAGES }, (_, j) => ({ ...makeImage(`tags-${k}/${j}`, j % POOL), repository: repo, tag: bigTag(j) }));
      while ((state.bigTags[k] ?? 0) < bigTags) {
        const from = state.bigTags[k] ?? 0;
        const to = Math.min(bigTags, from + CHUNK);
        const wasCareful = state.inProgress === true;
        state.inProgress = true;
        writeState(dir, state);
        // The first round pushes each image; later tags re-put its manifest
        // with the tag (what pushing one more tag of an image does).
        if (from < TAGGED_IMAGES) await loader.images(imgs.slice(from, Math.min(to, TAGGED_IMAGES)), concurrency, wasCareful);
        const first = Math.max(from, TAGGED_IMAGES);
        await pool(Math.max(0, to - first), concurrency, (t) => loader.putManifest(imgs[(first + t) % TAGGED_IMAGES], bigTag(first + t)));
        state.bigTags[k] = to;
        state.inProgress = false;
        writeState(dir, state);
        progress?.(`${repo} tags ${to}/${bigTags}`, state.images - startImages, started);
      }
    }
  } finally {
    clearInterval(ticker);
    await metadata.close();
  }
  const seconds = (Date.now() - started) / 1000;
  const loaded = state.images - startImages;
  return { images: loaded, seconds, imagesSeconds, rate: imagesSeconds > 0 ? loaded / imagesSeconds : NaN, loader: { written: loader.counts.written, mounted: loader.counts.mounted, manifests: loader.counts.manifests, seconds: Object.fromEntries(Object.entries(loader.seconds).map(([k, v]) => [k, Number(v.toFixed(1))])) } };
}

class Loader {
  constructor(storage, metadata, dataDir, durability) {
    this.storage = storage;
    this.metadata = metadata;
    this.dataDir = dataDir;
    this.durability = durability;
    this.dirs = new Set();
    this.counts = { written: 0, mounted: 0, manifests: 0, inChunk: 0 };
    /** Seconds spent writing bytes, syncing, and in metadata operations (chunk durability). */
    this.seconds = {};
  }

  /** The blobs an image uploads (the pool's shared layer only for the image that brings it first). */
  static uploads(img) {
    const ownsShared = typeof img.id === 'number' && img.id < POOL;
    return ownsShared ? [img.config, img.layer, img.shared] : [img.config, img.layer];
  }

  async images(chunk, concurrency, careful) {
    const t = this.seconds;
    let t0 = performance.now();
    const lap = (what) => {
      const t1 = performance.now();
      t[what] = (t[what] ?? 0) + (t1 - t0) / 1000;
      t0 = t1;
    };
    if (this.durability === 'chunk') {
      const blobs = chunk.flatMap((img) => Loader.uploads(img));
      await pool(blobs.length, concurrency, (k) => this.writeBytes(blobs[k], careful));
      lap('write');
      await syncFileSystem(this.dataDir);
      lap('sync');
    }
    this.counts.inChunk = 0;
    await pool(chunk.length, concurrency, async (k) => {
      await this.image(chunk[k], careful);
      this.counts.inChunk++;
    });
    this.counts.inChunk = 0;
    lap('metadata');
  }

  /**
   * A blob's bytes at the key the BlobStore would give its upload (the same
   * layout: blobs/<algorithm>/<2 hex>/<hex>.<upload id>), not synced: the
   * chunk's one file-system sync follows. When the chunk is redone after a
   * crash, through a temporary file and a rename, since the file may be a
   * committed blob already (the same bytes: replacing it atomically is harmless).
   */
  async writeBytes(blob, careful) {
    const file = path.join(this.dataDir, 'blobs', this.storage.commitKey(blob.uploadId, blob.digest));
    const d = path.dirname(file);
    if (!this.dirs.has(d)) {
      await fs.promises.mkdir(d, { recursive: true });
      this.dirs.add(d);
    }
    if (careful) {
      await fs.promises.writeFile(file + '.tmp', blob.data);
      await fs.promises.rename(file + '.tmp', file);
    } else {
      await fs.promises.writeFile(file, blob.data);
    }
  }

  /** Stores one blob's bytes (durability 'blob') and records it in the repository, as a monolithic upload does. */
  async commit(repository, blob, careful) {
    const m = this.metadata;
    if (careful) {
      // A chunk interrupted by a crash: this blob may be committed already.
      if (await m.findBlob(repository, blob.digest)) return;
      if (await m.findAnyBlob(blob.digest)) return this.mount(repository, blob);
    }
    const key = this.storage.commitKey(blob.uploadId, blob.digest);
    if (this.durability === 'blob') {
      if (careful) await fs.promises.rm(path.join(this.dataDir, 'blobs', key), { force: true }); // bytes of an interrupted write, named by no metadata
      const written = await this.storage.writeBlob(blob.uploadId, blob.digest, Readable.from([blob.data]), blob.data.length, () => {});
      if (written !== key) throw new Error(`store wrote ${written}, expected ${key}`);
    }
    const result = await m.commitBlob(undefined, repository, { digest: blob.digest, size: blob.data.length, storageKey: key }, Date.now());
    // Deterministic content: a blob already present would share our key, so its bytes are not ours to remove.
    if (result.outcome !== 'stored') throw new Error(`${blob.digest} was already present in ${repository}: the dataset is not what state.json says`);
    this.counts.written++;
  }

  /** Links a blob another repository holds (a HEAD found it: a cross-repository mount). */
  async mount(repository, blob) {
    if (await this.metadata.findBlob(repository, blob.digest)) return;
    const b = await this.metadata.mountBlob(repository, blob.digest, undefined, Date.now());
    if (!b) throw new Error(`mount of ${blob.digest} into ${repository} failed: not live anywhere`);
    this.counts.mounted++;
  }

  async image(img, careful) {
    const repo = img.repository;
    const uploads = Loader.uploads(img);
    await Promise.all([...uploads.map((b) => this.commit(repo, b, careful)), uploads.includes(img.shared) ? undefined : this.mount(repo, img.shared)]);
    await this.putManifest(img, img.tag);
  }

  async putManifest(img, tag) {
    await this.metadata.putManifest(
      img.repository,
      { digest: img.digest, mediaType: img.mediaType, size: img.manifest.length, body: img.manifest, blobs: [img.config.digest, img.shared.digest, img.layer.digest], children: [] },
      tag,
      Date.now(),
    );
    this.counts.manifests++;
  }
}

/** syncfs(2) of the file system holding `dir` (coreutils `sync -f`): one flush for a whole chunk of files. */
function syncFileSystem(dir) {
  return new Promise((resolve, reject) => {
    execFile('sync', ['-f', dir], (e) => (e ? reject(new Error(`sync -f ${dir}: ${e.message}`)) : resolve()));
  });
}
