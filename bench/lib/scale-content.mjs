// The scale benchmark's images: deterministic, so image i has the same bytes
// (and digests) on every run, on every machine, whatever loaded it. Per
// image: a config of its own, one small layer of its own, and one layer
// shared from a pool (as base layers are shared between real images).
import crypto from 'node:crypto';
import { OCI_MANIFEST, OCI_CONFIG, OCI_LAYER } from './client.mjs';

export const REPOSITORIES = 1000;
export const POOL = 64;
/** Images per 100,000-tag repository: the tags point at these in turn. */
export const TAGGED_IMAGES = 100;
export const UNIQUE_LAYER_BYTES = 512;
export const POOL_LAYER_BYTES = 4096;

const sha256hex = (b) => crypto.createHash('sha256').update(b).digest('hex');
const digestOf = (b) => 'sha256:' + sha256hex(b);

/** A UUID-shaped upload id derived from a name: the storage key of a loaded blob is the same on every run. */
export function uploadIdFor(name) {
  const h = sha256hex(`scale-upload:${name}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export const repositoryOf = (i) => `scale/r${String(i % REPOSITORIES).padStart(4, '0')}`;
export const tagOf = (i) => `i${String(i).padStart(7, '0')}`;
export const bigRepository = (k) => `scale/tags-${k}`;
export const bigTag = (t) => `v${String(t).padStart(6, '0')}`;

function filled(header, size) {
  const b = Buffer.alloc(size, 0x2e);
  b.write(header);
  return b;
}

const poolCache = new Map();
/** Shared layer j of the pool. */
export function poolLayer(j) {
  let l = poolCache.get(j);
  if (!l) {
    const data = filled(`scale shared layer ${j}\n`, POOL_LAYER_BYTES);
    l = { data, digest: digestOf(data), uploadId: uploadIdFor(`pool-${j}`) };
    poolCache.set(j, l);
  }
  return l;
}

/**
 * Image `id` (a number for the main images, or a string such as 'tags-0/17'
 * for the images of a many-tag repository). `pool` is the index of its shared layer.
 */
export function makeImage(id, pool) {
  const shared = poolLayer(pool);
  const layerData = filled(`scale layer of image ${id}\n`, UNIQUE_LAYER_BYTES);
  const layer = { data: layerData, digest: digestOf(layerData), uploadId: uploadIdFor(`layer-${id}`) };
  const layers = [
    { mediaType: OCI_LAYER, digest: shared.digest, size: shared.data.length },
    { mediaType: OCI_LAYER, digest: layer.digest, size: layerData.length },
  ];
  const configData = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2026-01-01T00:00:00Z',
      config: { Labels: { 'scale.image': String(id) } },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const config = { data: configData, digest: digestOf(configData), uploadId: uploadIdFor(`config-${id}`) };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: configData.length },
      layers,
    }),
  );
  return { id, shared, pool, config, layer, manifest, digest: digestOf(manifest), mediaType: OCI_MANIFEST };
}

/** Main image i: in repository i mod 1,000 (so every size fills all repositories), tagged tagOf(i). */
export function mainImage(i) {
  return { ...makeImage(i, i % POOL), repository: repositoryOf(i), tag: tagOf(i) };
}
