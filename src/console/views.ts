/**
 * What the console shows of a manifest, computed from its stored bytes: its
 * kind, platforms (one per child of an index), compressed size (config and
 * layers, each counted once) and, for an image, what its config says.
 */
import { manifestKind } from '../registry/media-types.js';

export interface DescriptorView {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: string;
}

interface ParsedBody {
  mediaType?: string;
  artifactType?: string;
  config?: DescriptorView;
  layers?: DescriptorView[];
  manifests?: (DescriptorView & { platform?: { os?: string; architecture?: string; variant?: string } | string })[];
  subject?: DescriptorView;
  annotations?: Record<string, string>;
}

/** The manifest's JSON; a body that does not parse (it was validated at push) reads as empty. */
export function parseBody(body: Buffer): ParsedBody {
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as ParsedBody) : {};
  } catch {
    return {};
  }
}

export function kindOf(mediaType: string): 'image' | 'index' | 'other' {
  return manifestKind(mediaType) ?? 'other';
}

export function platformName(p: unknown): string | undefined {
  if (typeof p !== 'object' || p === null) return undefined;
  const { os, architecture, variant } = p as Record<string, unknown>;
  if (typeof os !== 'string' || typeof architecture !== 'string') return undefined;
  return `${os}/${architecture}${typeof variant === 'string' && variant ? `/${variant}` : ''}`;
}

function descriptor(d: DescriptorView): DescriptorView {
  const out: DescriptorView = { mediaType: String(d.mediaType), digest: String(d.digest), size: Number(d.size) || 0 };
  if (typeof d.artifactType === 'string') out.artifactType = d.artifactType;
  if (d.annotations && typeof d.annotations === 'object') out.annotations = d.annotations;
  return out;
}

/** Config and layers of an image manifest. */
export function imageParts(body: ParsedBody): { config?: DescriptorView; layers: DescriptorView[] } {
  const layers = Array.isArray(body.layers) ? body.layers.map(descriptor) : [];
  return { ...(body.config ? { config: descriptor(body.config) } : {}), layers };
}

/** Adds an image's config and layers to `into` (digest → size), so a blob listed twice counts once. */
export function addImageBlobs(body: ParsedBody, into: Map<string, number>): Map<string, number> {
  const { config, layers } = imageParts(body);
  for (const d of [...(config ? [config] : []), ...layers]) into.set(d.digest, d.size);
  return into;
}

export function totalSize(blobs: Map<string, number>): number {
  let total = 0;
  for (const size of blobs.values()) total += size;
  return total;
}

/** Compressed size of an image: its config and layers, a blob listed twice counted once. */
export function imageSize(body: ParsedBody): number {
  return totalSize(addImageBlobs(body, new Map()));
}

/** The children of an index, with their platforms. */
export function indexChildren(body: ParsedBody): DescriptorView[] {
  if (!Array.isArray(body.manifests)) return [];
  return body.manifests.map((m) => {
    const d = descriptor(m);
    const platform = platformName(m.platform);
    if (platform) d.platform = platform;
    return d;
  });
}

export interface ImageConfigView {
  created?: string;
  author?: string;
  platform?: string;
  entrypoint?: string[];
  cmd?: string[];
  workingDir?: string;
  user?: string;
  env?: string[];
  labels?: Record<string, string>;
  exposedPorts?: string[];
  history?: { created?: string; createdBy?: string; comment?: string; emptyLayer?: boolean }[];
}

const strings = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);

/** The parts of an OCI / Docker image config a person reads; undefined when it is not one. */
export function imageConfig(bytes: Buffer): ImageConfigView | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const c = (typeof v.config === 'object' && v.config !== null ? v.config : {}) as Record<string, unknown>;
  const out: ImageConfigView = {};
  if (typeof v.created === 'string') out.created = v.created;
  if (typeof v.author === 'string') out.author = v.author;
  const platform = platformName(v);
  if (platform) out.platform = platform;
  const entrypoint = strings(c.Entrypoint);
  if (entrypoint) out.entrypoint = entrypoint;
  const cmd = strings(c.Cmd);
  if (cmd) out.cmd = cmd;
  if (typeof c.WorkingDir === 'string' && c.WorkingDir) out.workingDir = c.WorkingDir;
  if (typeof c.User === 'string' && c.User) out.user = c.User;
  const env = strings(c.Env);
  if (env) out.env = env;
  if (typeof c.Labels === 'object' && c.Labels !== null) out.labels = c.Labels as Record<string, string>;
  if (typeof c.ExposedPorts === 'object' && c.ExposedPorts !== null) out.exposedPorts = Object.keys(c.ExposedPorts);
  if (Array.isArray(v.history)) {
    out.history = (v.history as Record<string, unknown>[]).slice(0, 500).map((h) => ({
      ...(typeof h.created === 'string' ? { created: h.created } : {}),
      ...(typeof h.created_by === 'string' ? { createdBy: h.created_by } : {}),
      ...(typeof h.comment === 'string' ? { comment: h.comment } : {}),
      ...(h.empty_layer === true ? { emptyLayer: true } : {}),
    }));
  }
  return out;
}
