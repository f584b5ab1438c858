/**
 * Validation of the identifiers that arrive from the network: repository
 * names, tags and digests, following the grammar of the distribution spec.
 */
import { RegistryError } from './errors.js';

const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

/** Digest algorithms Berth can verify, with the length of their hex encoding. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** `algorithm:hex`, the canonical string form. */
  readonly value: string;
}

export function isValidRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function parseRepositoryName(name: string): string {
  if (!isValidRepositoryName(name)) {
    throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name: name.slice(0, 300) } });
  }
  return name;
}

export function isTag(reference: string): boolean {
  return TAG_RE.test(reference);
}

/** Parses `algorithm:hex`; unknown algorithms and malformed encodings are DIGEST_INVALID. */
export function parseDigest(value: string): Digest {
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (colon <= 0 || !(algorithm in DIGEST_ALGORITHMS)) {
    throw new RegistryError('DIGEST_INVALID', 'unsupported or malformed digest', { detail: { digest: value.slice(0, 200) } });
  }
  const length = DIGEST_ALGORITHMS[algorithm as DigestAlgorithm];
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError('DIGEST_INVALID', 'malformed digest', { detail: { digest: value.slice(0, 200) } });
  }
  return { algorithm: algorithm as DigestAlgorithm, hex, value };
}

export type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/**
 * A manifest reference is a tag or a digest. A string that is neither can
 * name nothing: reading it is MANIFEST_UNKNOWN (404, as the spec's
 * conformance suite expects), writing it is MANIFEST_INVALID.
 */
export function parseManifestReference(reference: string, mode: 'read' | 'write' = 'read'): ManifestReference {
  if (reference.includes(':')) return { kind: 'digest', digest: parseDigest(reference) };
  if (isTag(reference)) return { kind: 'tag', tag: reference };
  throw new RegistryError(mode === 'read' ? 'MANIFEST_UNKNOWN' : 'MANIFEST_INVALID', 'invalid tag', {
    detail: { reference: reference.slice(0, 200) },
  });
}
