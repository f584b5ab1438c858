/** The console's JSON API (docs/console.md), with the registry token held in memory only. */

let token: string | undefined;
let onUnauthorized: (message: string) => void = () => {};

export function setUnauthorizedHandler(fn: (message: string) => void): void {
  onUnauthorized = fn;
}

export function loggedIn(): boolean {
  return token !== undefined;
}

export function logout(): void {
  token = undefined;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`/ui/api/${path}`, { ...init, headers, credentials: 'omit' });
  const text = await res.text();
  const body = text ? (JSON.parse(text) as unknown) : {};
  if (!res.ok) {
    const e = (body as { errors?: { code: string; message: string }[] }).errors?.[0];
    const err = new ApiError(res.status, e?.code ?? 'UNKNOWN', e?.message ?? res.statusText);
    if (res.status === 401) {
      token = undefined;
      onUnauthorized(e?.message ?? 'please sign in');
    }
    throw err;
  }
  return body as T;
}

/** Username and password for the registry's own token (POST /auth/token, OAuth2 password grant). */
export async function login(username: string, password: string): Promise<void> {
  const form = new URLSearchParams({ grant_type: 'password', username, password, client_id: 'berth-console' });
  const res = await fetch('/auth/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
    credentials: 'omit',
  });
  const body = (await res.json().catch(() => ({}))) as { access_token?: string; errors?: { message: string }[] };
  if (!res.ok || !body.access_token) throw new ApiError(res.status, 'UNAUTHORIZED', body.errors?.[0]?.message ?? 'sign-in failed');
  token = body.access_token;
}

export interface Session {
  auth: boolean;
  tokenLogin: boolean;
  user: string | null;
  admin: boolean;
  deletes: boolean;
}

export interface RepositorySummary {
  name: string;
  tags: number;
  manifests: number;
  bytes: number;
  uniqueBytes: number;
  lastPush: number;
}

export interface PlatformRow {
  digest: string;
  mediaType: string;
  platform: string;
  size: number;
}

export interface TagRow {
  tag: string;
  digest: string;
  mediaType: string;
  artifactType?: string;
  pushedAt: number;
  pulls: number;
  lastPulled?: number;
  kind: 'image' | 'index' | 'other';
  size: number;
  platforms?: PlatformRow[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: string;
}

export interface ImageConfig {
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

export interface ManifestView {
  repository: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index' | 'other';
  manifestSize: number;
  size: number;
  artifactType?: string;
  annotations: Record<string, string>;
  subject?: { digest: string; mediaType: string };
  config?: Descriptor & { image?: ImageConfig };
  layers?: Descriptor[];
  manifests?: PlatformRow[];
  pulls: number;
  lastPulled?: number;
  tags: string[];
  parents: string[];
  referrers: Descriptor[];
  canDelete: boolean;
}

export interface StorageView {
  totals?: {
    blobs: number;
    bytes: number;
    unlinkedBlobs: number;
    unlinkedBytes: number;
    deletingBlobs: number;
    queuedBlobs: number;
    untaggedManifests: number;
    uploads: number;
    uploadBytes: number;
  };
  repositories: { name: string; bytes: number; uniqueBytes: number; sharedBytes: number; manifests: number; tags: number }[];
}

export interface LifecycleRun {
  id: number;
  kind: string;
  trigger: string;
  startedAt: number;
  durationMs: number;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  uploadsPurged: number;
  problems: number;
}

export interface GcReport {
  dryRun: boolean;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  uploadsPurged: number;
  durationMs: number;
  manifests?: string[];
  blobs?: string[];
}
