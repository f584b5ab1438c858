/**
 * Manifest bytes by digest, kept in memory so that a manifest pull need not
 * read its body from the database on every request.
 *
 * Only bytes are kept, never existence (invariant 1): the store still reads
 * the manifest's row on every request, from the same snapshot as always, and
 * takes the body from here only for a row it has just found. A body is named
 * by its digest, which was computed from it when it was stored, so the bytes
 * for a digest never change, whichever repository or row they came from.
 *
 * Why: better-sqlite3 copies a BLOB column into a new Buffer (its own
 * ArrayBuffer, which the V8 GC must then track and free) on every read. A
 * tag lookup with the body took ~9 µs against ~4.5 µs without it, in a loop
 * on the (loaded) 2-core bench machine: the largest single cost of a
 * manifest GET that Berth can avoid.
 *
 * Bounded by bytes; the oldest entry goes first (no reordering on a hit, so
 * a hit is one Map lookup). Large manifests (big indexes) are not kept: they
 * are rare, and would push out many small hot ones.
 */
export class ManifestBodies {
  private readonly bodies = new Map<string, Buffer>();
  private bytes = 0;

  constructor(
    /** Total bytes kept at most. */
    readonly maxBytes = 8 * 1024 * 1024,
    /** A body larger than this is never kept. */
    readonly maxBody = 256 * 1024,
  ) {}

  get(digest: string): Buffer | undefined {
    return this.bodies.get(digest);
  }

  set(digest: string, body: Buffer): void {
    if (body.length > this.maxBody || body.length > this.maxBytes || this.bodies.has(digest)) return;
    for (const [oldest, old] of this.bodies) {
      if (this.bytes + body.length <= this.maxBytes) break;
      this.bodies.delete(oldest);
      this.bytes -= old.length;
    }
    this.bodies.set(digest, body);
    this.bytes += body.length;
  }

  /** Bytes held now (for tests). */
  get size(): number {
    return this.bytes;
  }
}
