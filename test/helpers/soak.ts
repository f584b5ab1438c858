/**
 * The soak harness: clients push, delete and re-push images with shared
 * layers, on one or more nodes, while a collector with a real grace period
 * runs in a loop as a separate process; it counts what a user would call a
 * lie. Used by test/lifecycle/soak.test.ts (short, inside npm test) and by
 * bench/soak.mjs (long runs, a table of counts, non-zero exit on anomalies).
 *
 * The anomalies:
 *
 * - false exists: the registry said a blob is in the repository (HEAD 200, a
 *   mount's 201, an upload's 201) and a manifest PUT whose answer came back
 *   less than one grace period after that request was sent still got
 *   MANIFEST_BLOB_UNKNOWN for it. No collector may take a blob within the
 *   grace of its last "exists" (invariant: an answer is a promise), so the
 *   bound is strict and does not depend on how loaded the machine is: a slower
 *   answer is counted as `late` (an honest retry), never as an anomaly.
 * - lost: a tagged image that does not pull whole (manifest bytes, every blob
 *   with its digest), checked while the run goes on and once at the end.
 * - server errors: any 5xx answer; unexpected: any other answer the protocol
 *   does not allow here; GC failures: a collector run that exits non-zero.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { blob, bytes, randomBlob, withQuery, type Blob, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from './registry-client.js';

export interface SoakOptions {
  /** Base URLs of the nodes; each client spreads its requests over all of them. */
  nodes: string[];
  seconds: number;
  clients: number;
  /** The grace period the collector runs with, in milliseconds. */
  graceMs: number;
  /** One collector run (e.g. `berth gc --grace 10s --json` as a separate process). */
  runGc: () => Promise<{ code: number; stdout: string; stderr: string }>;
  /** Pause between collector runs (default 100 ms). */
  gcPauseMs?: number;
}

export interface SoakCounts {
  pushes: number;
  /** Pushes of an image this client had deleted (same manifest, same blobs). */
  repushes: number;
  deletes: number;
  heads: number;
  headsExisting: number;
  mounts: number;
  mountsDone: number;
  uploads: number;
  manifestPuts: number;
  /** Manifest PUTs that got MANIFEST_BLOB_UNKNOWN after the grace had passed (allowed; retried). */
  late: number;
  pulls: number;
  gcRuns: number;
  gcBlobsDeleted: number;
  gcManifestsDeleted: number;
  gcLinksRemoved: number;
  lost: number;
  falseExists: number;
  serverErrors: number;
  unexpected: number;
  gcFailures: number;
}

export type AnomalyKind = 'false-exists' | 'lost' | 'server-error' | 'unexpected' | 'gc-failure';

export interface Anomaly {
  kind: AnomalyKind;
  /** Seconds since the start of the run. */
  at: number;
  what: string;
}

export interface SoakReport {
  options: { nodes: number; seconds: number; clients: number; graceMs: number };
  counts: SoakCounts;
  /** False exists by the answer that made the promise. */
  falseExistsBy: { head: number; mount: number; upload: number };
  /** The first anomalies of each kind (at most 10 each), for the report. */
  anomalies: Anomaly[];
  elapsedSeconds: number;
}

/** Anomalies that fail a soak. */
export function anomalyCount(r: SoakReport): number {
  const c = r.counts;
  return c.lost + c.falseExists + c.serverErrors + c.unexpected + c.gcFailures;
}

type Confirmation = { kind: 'head' | 'mount' | 'upload'; sentAt: number; node: string };

interface Image {
  repo: string;
  tag: string;
  manifest: Buffer;
  digest: string;
  blobs: Blob[];
}

const REPOS = 4;
const SHARED_BLOBS = 16;
const MAX_ATTEMPTS = 20;

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function manifestFor(config: Blob, layers: Blob[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    }),
  );
}

async function errorBody(res: Response): Promise<{ code?: string; digests?: string[] }> {
  const text = await res.text();
  try {
    const e = (JSON.parse(text) as { errors?: { code: string; detail?: { digests?: string[]; digest?: string } }[] }).errors?.[0];
    const d = e?.detail;
    return { code: e?.code, digests: d?.digests ?? (d?.digest ? [d.digest] : undefined) };
  } catch {
    return {};
  }
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const started = performance.now();
  const deadline = started + opts.seconds * 1000;
  // A run whose collector took no blob while the clients pushed did not test
  // what it is for; on a slow machine (CI runs two test files at once) the
  // first blobs come due only after a few collector runs, so the clients go
  // on past `seconds` until one is taken, up to three times as long.
  const latest = started + opts.seconds * 3000;
  const running = () => {
    const now = performance.now();
    return now < deadline || (counts.gcBlobsDeleted === 0 && now < latest);
  };
  const counts: SoakCounts = {
    pushes: 0, repushes: 0, deletes: 0, heads: 0, headsExisting: 0, mounts: 0, mountsDone: 0, uploads: 0, manifestPuts: 0, late: 0, pulls: 0,
    gcRuns: 0, gcBlobsDeleted: 0, gcManifestsDeleted: 0, gcLinksRemoved: 0,
    lost: 0, falseExists: 0, serverErrors: 0, unexpected: 0, gcFailures: 0,
  };
  const falseExistsBy = { head: 0, mount: 0, upload: 0 };
  const anomalies: Anomaly[] = [];
  const seen = new Map<AnomalyKind, number>();
  const since = () => Math.round((performance.now() - started) / 100) / 10;
  function anomaly(kind: AnomalyKind, what: string): void {
    const n = (seen.get(kind) ?? 0) + 1;
    seen.set(kind, n);
    if (n <= 10) anomalies.push({ kind, at: since(), what });
  }

  /** Every request goes through here: 5xx answers are counted wherever they happen. */
  async function request(node: string, path: string, init: RequestInit = {}): Promise<Response> {
    const res = await fetch(node + path, { redirect: 'manual', ...init });
    if (res.status >= 500) {
      counts.serverErrors++;
      anomaly('server-error', `${init.method ?? 'GET'} ${path} on ${node}: ${res.status} ${(await res.clone().text()).slice(0, 200)}`);
    }
    return res;
  }
  async function unexpected(what: string, res: Response): Promise<void> {
    if (res.status >= 500) return; // counted as a server error already
    counts.unexpected++;
    anomaly('unexpected', `${what}: ${res.status} ${(await res.text()).slice(0, 200)}`);
  }

  const shared = Array.from({ length: SHARED_BLOBS }, () => randomBlob(2048 + Math.floor(Math.random() * 2048)));
  const sharedDigests = new Set(shared.map((b) => b.digest));

  /** Pulls an image whole; false (and counted as lost) when it does not. */
  async function verify(pick: () => string, image: Image, when: string): Promise<boolean> {
    const where = `${image.repo}:${image.tag} (${image.digest.slice(7, 19)}) ${when}`;
    const res = await request(pick(), `/v2/${image.repo}/manifests/${image.tag}`, { headers: { Accept: OCI_MANIFEST } });
    const body = Buffer.from(await res.arrayBuffer());
    let problem: string | undefined;
    if (res.status !== 200) problem = `manifest GET ${res.status}`;
    else if (!body.equals(image.manifest)) problem = 'manifest bytes differ';
    for (const b of problem ? [] : image.blobs) {
      const got = await request(pick(), `/v2/${image.repo}/blobs/${b.digest}`);
      const data = Buffer.from(await got.arrayBuffer());
      if (got.status !== 200) problem = `blob ${b.digest.slice(7, 19)} GET ${got.status}`;
      else if (sha256(data) !== b.digest) problem = `blob ${b.digest.slice(7, 19)} bytes differ`;
      if (problem) break;
    }
    counts.pulls++;
    if (!problem) return true;
    counts.lost++;
    anomaly('lost', `${where}: ${problem}`);
    return false;
  }

  async function worker(id: number): Promise<Image[]> {
    const repo = `soak/r${id % REPOS}`;
    let turn = id;
    /** Successive requests of a client alternate between the nodes (a load balancer's round robin). */
    const pick = () => opts.nodes[turn++ % opts.nodes.length]!;
    const mine = new Map<string, Image>();

    /** Makes the registry say every blob is in `repo`; returns when each "exists" was asked for. */
    async function ensureBlobs(blobs: Blob[]): Promise<Map<string, Confirmation> | undefined> {
      const confirmed = new Map<string, Confirmation>();
      for (const b of blobs) {
        let node = pick();
        let sentAt = performance.now();
        const head = await request(node, `/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
        counts.heads++;
        if (head.status === 200) {
          counts.headsExisting++;
          confirmed.set(b.digest, { kind: 'head', sentAt, node });
          continue;
        }
        if (head.status !== 404) return void (await unexpected(`HEAD blob in ${repo}`, head));
        let location: string | undefined;
        if (sharedDigests.has(b.digest)) {
          // A layer other repositories may hold: ask for a cross-repository mount first, as docker does.
          const from = `soak/r${(id + 1 + Math.floor(Math.random() * (REPOS - 1))) % REPOS}`;
          node = pick();
          sentAt = performance.now();
          const mount = await request(node, `/v2/${repo}/blobs/uploads/?mount=${b.digest}&from=${from}`, { method: 'POST' });
          counts.mounts++;
          if (mount.status === 201) {
            counts.mountsDone++;
            confirmed.set(b.digest, { kind: 'mount', sentAt, node });
            continue;
          }
          if (mount.status !== 202) return void (await unexpected(`mount into ${repo}`, mount));
          location = mount.headers.get('location') ?? undefined;
          await mount.arrayBuffer();
        }
        node = pick();
        sentAt = performance.now();
        const res = location
          ? await request(node, withQuery(location, `digest=${b.digest}`), {
              method: 'PUT',
              headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
              body: bytes(b.data),
            })
          : await request(node, `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
              method: 'POST',
              headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
              body: bytes(b.data),
            });
        counts.uploads++;
        if (res.status !== 201) return void (await unexpected(`upload into ${repo}`, res));
        await res.arrayBuffer();
        confirmed.set(b.digest, { kind: 'upload', sentAt, node });
      }
      return confirmed;
    }

    async function push(image: Image): Promise<boolean> {
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        const confirmed = await ensureBlobs(image.blobs);
        if (!confirmed) return false;
        const node = pick();
        const res = await request(node, `/v2/${repo}/manifests/${image.tag}`, {
          method: 'PUT',
          headers: { 'Content-Type': OCI_MANIFEST },
          body: bytes(image.manifest),
        });
        const answeredAt = performance.now();
        counts.manifestPuts++;
        if (res.status === 201) {
          await res.arrayBuffer();
          return true;
        }
        const err = await errorBody(res.clone());
        if (err.code !== 'MANIFEST_BLOB_UNKNOWN') {
          await unexpected(`manifest PUT ${repo}:${image.tag}`, res);
          return false;
        }
        // Which promises did the registry break? Those named in the error; without names, any of them.
        const named = (err.digests ?? []).filter((d) => confirmed.has(d));
        const suspects = named.length > 0 ? named : [...confirmed.keys()];
        const broken = suspects
          .map((d) => ({ d, c: confirmed.get(d)! }))
          .filter(({ c }) => answeredAt - c.sentAt < opts.graceMs)
          .sort((x, y) => x.c.sentAt - y.c.sentAt);
        if (broken.length === 0 || (named.length === 0 && suspects.some((d) => answeredAt - confirmed.get(d)!.sentAt >= opts.graceMs))) {
          counts.late++;
          continue;
        }
        for (const { d, c } of broken) {
          counts.falseExists++;
          falseExistsBy[c.kind]++;
          anomaly(
            'false-exists',
            `${c.kind} said ${d.slice(7, 19)} exists in ${repo} (${c.node}); manifest PUT (${node}) answered MANIFEST_BLOB_UNKNOWN ${Math.round(answeredAt - c.sentAt)} ms later (grace ${opts.graceMs} ms)`,
          );
        }
      }
      counts.unexpected++;
      anomaly('unexpected', `manifest PUT ${repo}:${image.tag} failed ${MAX_ATTEMPTS} times`);
      return false;
    }

    /**
     * Images this client deleted in the last two grace periods: re-pushing one
     * HEADs blobs of every age around the grace, the collector's edge.
     */
    const deleted: { image: Image; at: number }[] = [];
    const keepDeletedMs = Math.max(2 * opts.graceMs, 2000);
    for (let n = 0; running(); n++) {
      const tag = `c${id}-${n % 3}`;
      let image: Image;
      while (deleted.length > 0 && performance.now() - deleted[0]!.at > keepDeletedMs) deleted.shift();
      const again = n % 3 === 2 && deleted.length > 0 ? deleted.splice(Math.floor(Math.random() * deleted.length), 1)[0]!.image : undefined;
      if (again) {
        image = { ...again, tag };
        counts.repushes++;
      } else {
        const config = blob(JSON.stringify({ client: id, n, nonce: Math.random() }));
        const first = Math.floor(Math.random() * SHARED_BLOBS);
        const second = (first + 1 + Math.floor(Math.random() * (SHARED_BLOBS - 1))) % SHARED_BLOBS;
        const layers = [shared[first]!, shared[second]!, randomBlob(256 + Math.floor(Math.random() * 1024))];
        const manifest = manifestFor(config, layers);
        image = { repo, tag, manifest, digest: sha256(manifest), blobs: [config, ...layers] };
      }
      if (!(await push(image))) continue;
      counts.pushes++;
      mine.set(tag, image);

      if (n % 2 === 1) {
        // Delete another of this client's images by digest (untags it): GC takes what only it used.
        const victim = mine.get(`c${id}-${(n + 1) % 3}`);
        if (victim) {
          const res = await request(pick(), `/v2/${repo}/manifests/${victim.digest}`, { method: 'DELETE' });
          if (res.status === 202) {
            await res.arrayBuffer();
            counts.deletes++;
            mine.delete(victim.tag);
            deleted.push({ image: victim, at: performance.now() });
          } else await unexpected(`DELETE ${repo}@${victim.digest}`, res);
        }
      }
      if (n % 4 === 3) {
        const images = [...mine.values()];
        const image = images[Math.floor(Math.random() * images.length)];
        if (image) await verify(pick, image, 'during the run');
      }
    }
    return [...mine.values()];
  }

  async function collector(): Promise<void> {
    while (running()) {
      const r = await opts.runGc();
      counts.gcRuns++;
      if (r.code !== 0) {
        counts.gcFailures++;
        anomaly('gc-failure', `exit ${r.code}: ${r.stderr.slice(0, 300)}`);
      } else {
        try {
          const report = JSON.parse(r.stdout) as { blobsDeleted?: number; manifestsDeleted?: number; linksRemoved?: number };
          counts.gcBlobsDeleted += report.blobsDeleted ?? 0;
          counts.gcManifestsDeleted += report.manifestsDeleted ?? 0;
          counts.gcLinksRemoved += report.linksRemoved ?? 0;
        } catch {
          // A report that is not JSON is not an anomaly of the registry.
        }
      }
      await new Promise((resolve) => setTimeout(resolve, opts.gcPauseMs ?? 100));
    }
  }

  const [tagged] = await Promise.all([Promise.all(Array.from({ length: opts.clients }, (_, i) => worker(i))), collector()]);

  // One more collection with nothing else running, then every tagged image must pull whole.
  const last = await opts.runGc();
  counts.gcRuns++;
  if (last.code !== 0) {
    counts.gcFailures++;
    anomaly('gc-failure', `final run, exit ${last.code}: ${last.stderr.slice(0, 300)}`);
  }
  let n = 0;
  const pickAny = () => opts.nodes[n++ % opts.nodes.length]!;
  for (const images of tagged) for (const image of images) await verify(pickAny, image, 'at the end');

  return {
    options: { nodes: opts.nodes.length, seconds: opts.seconds, clients: opts.clients, graceMs: opts.graceMs },
    counts,
    falseExistsBy,
    anomalies,
    elapsedSeconds: Math.round((performance.now() - started) / 100) / 10,
  };
}

/** The counts as an aligned two-column table, anomalies last. */
export function formatReport(r: SoakReport): string {
  const c = r.counts;
  const rows: [string, string | number][] = [
    ['nodes × clients', `${r.options.nodes} × ${r.options.clients}`],
    ['duration (s)', r.elapsedSeconds],
    ['GC grace (ms)', r.options.graceMs],
    ['image pushes (re-pushes)', `${c.pushes} (${c.repushes})`],
    ['manifest PUTs', c.manifestPuts],
    ['image deletes', c.deletes],
    ['blob HEADs (200)', `${c.heads} (${c.headsExisting})`],
    ['mounts (201)', `${c.mounts} (${c.mountsDone})`],
    ['blob uploads', c.uploads],
    ['images pulled whole', c.pulls - c.lost],
    ['late retries (allowed)', c.late],
    ['GC runs', c.gcRuns],
    ['GC blobs / manifests / links', `${c.gcBlobsDeleted} / ${c.gcManifestsDeleted} / ${c.gcLinksRemoved}`],
    ['LOST images', c.lost],
    ['FALSE EXISTS (head/mount/upload)', `${c.falseExists} (${r.falseExistsBy.head}/${r.falseExistsBy.mount}/${r.falseExistsBy.upload})`],
    ['SERVER ERRORS (5xx)', c.serverErrors],
    ['UNEXPECTED answers', c.unexpected],
    ['GC FAILURES', c.gcFailures],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  for (const a of r.anomalies) lines.push(`  ${a.kind} at ${a.at}s: ${a.what}`);
  return lines.join('\n');
}
