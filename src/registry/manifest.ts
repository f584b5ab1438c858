/**
 * Parsing and validation of pushed manifests. A manifest is accepted only if
 * it is JSON of a supported media type with the shape that type requires;
 * what it references is returned so the metadata store can check, in the same
 * transaction that stores it, that every referenced blob and child exists.
 */
import { RegistryError } from './errors.js';
import { isForeignLayer, manifestKind, MediaType, type ManifestKind } from './media-types.js';
import { parseDigest } from './reference.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string };
}

export interface ParsedManifest {
  mediaType: string;
  kind: ManifestKind;
  /** Config and layers that must exist as blobs in the repository. */
  blobs: string[];
  /** Manifests an index points at, which must exist in the repository. */
  children: string[];
  subject?: string;
  /** artifactType, or for an image manifest its config's media type (spec: referrers API). */
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, { detail });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalid(`${where} is not a descriptor`);
  const { mediaType, digest, size, artifactType, annotations } = v;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw invalid(`${where}.mediaType is missing`);
  if (typeof digest !== 'string') throw invalid(`${where}.digest is missing`);
  try {
    parseDigest(digest);
  } catch {
    throw invalid(`${where}.digest is not a valid digest`, { digest: digest.slice(0, 200) });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}.size is not a valid size`);
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid(`${where}.artifactType is not a string`);
  if (annotations !== undefined && !isStringMap(annotations)) throw invalid(`${where}.annotations is not a string map`);
  return v as unknown as Descriptor;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return isObject(v) && Object.values(v).every((x) => typeof x === 'string');
}

/**
 * The media type of a pushed manifest: the Content-Type the client sent,
 * which must agree with the `mediaType` field when the body has one. OCI
 * manifests may omit the field, in which case the header decides.
 */
function resolveMediaType(contentType: string | undefined, doc: Record<string, unknown>): string {
  const header = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
  const field = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (doc.mediaType !== undefined && field === undefined) throw invalid('mediaType is not a string');
  if (header === MediaType.DockerSchema1 || header === MediaType.DockerSchema1Signed || doc.schemaVersion === 1) {
    throw invalid('Docker schema 1 manifests are not supported; push schema 2 or OCI');
  }
  if (header && manifestKind(header)) {
    if (field && field !== header) throw invalid('mediaType does not match Content-Type', { mediaType: field, contentType: header });
    return header;
  }
  if (field && manifestKind(field)) return field;
  // No usable header or field: the shape decides (an OCI manifest may carry neither).
  if (!field && Array.isArray(doc.manifests)) return MediaType.OciIndex;
  if (!field && isObject(doc.config)) return MediaType.OciManifest;
  throw invalid('unsupported manifest media type', { mediaType: field ?? header ?? null });
}

export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!isObject(doc)) throw invalid('manifest is not a JSON object');
  const mediaType = resolveMediaType(contentType, doc);
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const kind = manifestKind(mediaType)!;

  let subject: string | undefined;
  if (doc.subject !== undefined) subject = parseDescriptor(doc.subject, 'subject').digest;
  if (doc.annotations !== undefined && !isStringMap(doc.annotations)) throw invalid('annotations is not a string map');
  if (doc.artifactType !== undefined && typeof doc.artifactType !== 'string') throw invalid('artifactType is not a string');
  const annotations = doc.annotations as Record<string, string> | undefined;

  if (kind === 'image') {
    const config = parseDescriptor(doc.config, 'config');
    if (!Array.isArray(doc.layers)) throw invalid('layers is missing');
    const layers = doc.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`));
    if (mediaType === MediaType.DockerManifest && layers.length === 0) throw invalid('a Docker image manifest needs layers');
    const blobs = [config.digest, ...layers.filter((l) => !isForeignLayer(l.mediaType)).map((l) => l.digest)];
    const artifactType = (doc.artifactType as string | undefined) ?? config.mediaType;
    return { mediaType, kind, blobs: unique(blobs), children: [], subject, artifactType, annotations };
  }
  if (!Array.isArray(doc.manifests)) throw invalid('manifests is missing');
  const children = doc.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`).digest);
  return {
    mediaType,
    kind,
    blobs: [],
    children: unique(children),
    subject,
    artifactType: doc.artifactType as string | undefined,
    annotations,
  };
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}
