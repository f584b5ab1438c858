/**
 * The BlobStore contract, as one suite every implementation must pass (the
 * filesystem store and the S3 store): appends at offsets, interrupted
 * appends, uploads continued by another instance (another node), commit,
 * ranges, listings, deletes, quarantine, and the optional capabilities.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import type { BlobSource, BlobStore, StoredObject } from '../../src/storage/blob-store.js';

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export interface StoreUnderTest {
  /** A store instance. */
  store: BlobStore;
  /** A second instance over the same storage, as another node would have. */
  other: BlobStore;
  /** Bytes per part, for stores that have parts (sizes in the tests cross it); any size otherwise. */
  partSize: number;
  /** Writes bytes where this store's importBlob can take them from (outside the store), for stores that have it. */
  importSource?(data: Buffer): Promise<BlobSource>;
  cleanup(): Promise<void>;
}

export type StoreFactory = () => Promise<StoreUnderTest>;

/** A stream that yields `data` in chunks of at most `chunk` bytes. */
export function chunked(data: Buffer, chunk = 256 * 1024): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) pieces.push(data.subarray(i, i + chunk));
  return Readable.from(pieces, { objectMode: false });
}

/** A stream that yields `data`, then fails (a client cut off mid-body). */
export function failingAfter(data: Buffer, chunk = 256 * 1024): Readable {
  let i = 0;
  return new Readable({
    read() {
      if (i < data.length) {
        this.push(data.subarray(i, i + chunk));
        i += chunk;
      } else {
        this.destroy(new Error('connection reset by test'));
      }
    },
  });
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function collect(it: AsyncIterable<StoredObject>): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  for await (const o of it) out.push(o);
  return out;
}

let counter = 0;
/** An upload id unique to this run (the ids are UUIDs in the registry). */
function newId(): string {
  return `${process.pid.toString(36)}-${Date.now().toString(36)}-${(counter++).toString(36)}-${randomBytes(4).toString('hex')}`;
}

const DIGEST = `sha256:${'ab'.repeat(32)}`;

export function blobStoreSuite(name: string, factory: StoreFactory): void {
  describe(`BlobStore contract: ${name}`, () => {
    let t: StoreUnderTest;
    let P: number;
    before(async () => {
      t = await factory();
      P = t.partSize;
    });
    after(async () => {
      await t?.cleanup();
    });

    /** Appends buffers in turn; returns the offset reached. */
    async function appendAll(store: BlobStore, id: string, offset: number, ...pieces: Buffer[]): Promise<number> {
      for (const p of pieces) {
        const seen: Buffer[] = [];
        const n = await store.appendUpload(id, offset, chunked(p), (c) => seen.push(c));
        assert.equal(n, p.length, 'append returns the bytes appended');
        assert.ok(Buffer.concat(seen).equals(p), 'onChunk sees every byte, in order');
        offset += n;
      }
      return offset;
    }

    test('a single append, commit, read back; the key is the one returned and is unique per upload', async () => {
      const data = randomBytes(100_000);
      const a = newId();
      const b = newId();
      for (const id of [a, b]) {
        await t.store.createUpload(id);
        await appendAll(t.store, id, 0, data);
      }
      const keyA = await t.store.commitUpload(a, data.length, DIGEST);
      const keyB = await t.store.commitUpload(b, data.length, DIGEST);
      assert.notEqual(keyA, keyB, 'same digest, two uploads: two keys (invariant 3)');
      assert.ok((await readAll(await t.store.openBlob(keyA))).equals(data));
      const st = await t.store.statBlob(keyA);
      assert.equal(st?.size, data.length);
      assert.ok(st!.modifiedAt > Date.now() - 10 * 60_000);
      const keys = (await collect(t.store.listBlobs())).map((o) => o.key);
      assert.ok(keys.includes(keyA) && keys.includes(keyB));
      const uploads = (await collect(t.store.listUploads())).map((o) => o.key);
      assert.ok(!uploads.includes(a) && !uploads.includes(b), 'a committed upload is no longer an upload');
      await t.store.deleteBlob(keyA);
      await t.store.deleteBlob(keyB);
    });

    test('commitKey names, before storage is touched, the key commitUpload and writeBlob write (the commit claims it first: invariant 9)', async () => {
      const data = randomBytes(1000);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, data);
      const expected = t.store.commitKey(id, digestOf(data));
      assert.equal(await t.store.commitUpload(id, data.length, digestOf(data)), expected);
      await t.store.deleteBlob(expected);
      if (t.store.writeBlob) {
        const whole = newId();
        assert.equal(await t.store.writeBlob(whole, digestOf(data), chunked(data), data.length, () => {}), t.store.commitKey(whole, digestOf(data)));
        await t.store.deleteBlob(t.store.commitKey(whole, digestOf(data)));
      }
    });

    test('a committed blob is as new as its commit, not as its last append (fsck judges age by it: invariant 9)', async () => {
      const data = randomBytes(1000);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, data);
      // Object stores keep whole seconds: wait past the next one.
      await new Promise((r) => setTimeout(r, 1200));
      const committing = Math.floor(Date.now() / 1000) * 1000;
      const key = await t.store.commitUpload(id, data.length, digestOf(data));
      const st = await t.store.statBlob(key);
      assert.ok(st!.modifiedAt >= committing, `modified ${new Date(st!.modifiedAt).toISOString()}, committed from ${new Date(committing).toISOString()}`);
      const listed = (await collect(t.store.listBlobs())).find((o) => o.key === key);
      assert.ok(listed!.modifiedAt >= committing, 'as listed');
      await t.store.deleteBlob(key);
    });

    test('appends at offsets, with pieces crossing part boundaries, on two instances', async () => {
      const pieces = [randomBytes(1000), randomBytes(P - 1000 + 1), randomBytes(P + 7), randomBytes(13), randomBytes(P - 13 - 8 + P)];
      const id = newId();
      await t.store.createUpload(id);
      let offset = 0;
      // Alternate between the two instances: each append starts on the "other node".
      for (const [i, p] of pieces.entries()) offset = await appendAll(i % 2 ? t.other : t.store, id, offset, p);
      const data = Buffer.concat(pieces);
      assert.equal(offset, data.length);
      if (t.store.readUpload) assert.ok((await readAll(t.store.readUpload(id, 5000))).equals(data.subarray(0, 5000)));
      const listed = (await collect(t.store.listUploads())).find((o) => o.key === id);
      assert.ok(listed, 'an upload with bytes is listed');
      const key = await t.other.commitUpload(id, data.length, DIGEST);
      const back = await readAll(await t.store.openBlob(key));
      assert.equal(back.length, data.length);
      assert.ok(back.equals(data), 'bytes read back are the bytes appended');
      // Ranges: inside the first part, across a part boundary, the last byte.
      for (const [start, end] of [[10, 20], [P - 5, P + 5], [2 * P - 1, 2 * P], [data.length - 1, data.length - 1], [0, data.length - 1]] as const) {
        const got = await readAll(await t.store.openBlob(key, { start, end }));
        assert.ok(got.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
      }
      await t.store.deleteBlob(key);
    });

    test('an interrupted append leaves the upload at its acknowledged offset', async () => {
      const first = randomBytes(P + 4321); // one full part and a tail
      const id = newId();
      await t.store.createUpload(id);
      const offset = await appendAll(t.store, id, 0, first);
      // Cut off after more than a part: the store has written a part past the offset.
      await assert.rejects(t.store.appendUpload(id, offset, failingAfter(randomBytes(P + 99_000)), () => {}));
      await assert.rejects(t.other.appendUpload(id, offset, failingAfter(randomBytes(1000)), () => {}));
      // Another node continues from the acknowledged offset.
      const rest = randomBytes(P / 2 + 3);
      const end = await appendAll(t.other, id, offset, rest);
      const key = await t.store.commitUpload(id, end, DIGEST);
      assert.ok((await readAll(await t.store.openBlob(key))).equals(Buffer.concat([first, rest])));
      await t.store.deleteBlob(key);
    });

    test('an append cut off after several parts (one may still be uploading) leaves the upload at its offset', async () => {
      const first = randomBytes(3000);
      const id = newId();
      await t.store.createUpload(id);
      const offset = await appendAll(t.store, id, 0, first);
      // Small chunks: the body fails while the previous part may still be on its way to the store.
      await assert.rejects(t.store.appendUpload(id, offset, failingAfter(randomBytes(2 * P + 5), 64 * 1024), () => {}));
      const rest = randomBytes(P + 11);
      const end = await appendAll(t.other, id, offset, rest);
      const key = await t.other.commitUpload(id, end, DIGEST);
      assert.ok((await readAll(await t.store.openBlob(key))).equals(Buffer.concat([first, rest])));
      await t.store.deleteBlob(key);
    });

    test('copyBlobTo (optional): whole blob and ranges, across read segments; a missing blob rejects before opened', async (c) => {
      if (!t.store.copyBlobTo) return c.skip('store has no copyBlobTo');
      const copy = t.store.copyBlobTo.bind(t.store);
      const M = 8 * 1024 * 1024; // S3's read segment
      const data = randomBytes(2 * M + 12_345);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, data);
      const key = await t.store.commitUpload(id, data.length, DIGEST);
      const read = async (start: number, end: number) => {
        // Copies each chunk when written, as a socket does: a store may reuse a buffer once its write is done.
        const chunks: Buffer[] = [];
        const out = new Writable({
          write(chunk: Buffer, _enc, done) {
            chunks.push(Buffer.from(chunk));
            setImmediate(done);
          },
        });
        let opened = 0;
        await copy(key, { start, end }, out, () => opened++);
        assert.equal(opened, 1);
        // Writes still queued in `out` are the caller's to flush (a reply ends its socket).
        out.end();
        await finished(out);
        return Buffer.concat(chunks);
      };
      for (const [start, end] of [[0, data.length - 1], [0, 0], [M - 1, M], [5, 2 * M + 100], [data.length - 1, data.length - 1]] as const) {
        assert.ok((await read(start, end)).equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
      }
      let opened = false;
      await assert.rejects(
        copy(`no-such-${newId()}`, { start: 0, end: 10 }, new Writable({ write: (_c, _e, done) => done() }), () => (opened = true)),
        (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
      );
      assert.equal(opened, false);
      await t.store.deleteBlob(key);
    });

    test('an append whose offset was never acknowledged is overwritten by the next append at that offset', async () => {
      // A crash between storage and the metadata compare-and-set: the same offset is appended again.
      const first = randomBytes(3000);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, first);
      await appendAll(t.store, id, first.length, randomBytes(P + 50)); // never acknowledged
      const again = randomBytes(2000);
      const end = await appendAll(t.other, id, first.length, again);
      const key = await t.other.commitUpload(id, end, DIGEST);
      assert.ok((await readAll(await t.store.openBlob(key))).equals(Buffer.concat([first, again])));
      await t.store.deleteBlob(key);
    });

    test('an upload of exactly whole parts, and an empty upload', async () => {
      const data = randomBytes(P);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, data.subarray(0, 100), data.subarray(100));
      const key = await t.store.commitUpload(id, data.length, DIGEST);
      assert.ok((await readAll(await t.store.openBlob(key))).equals(data));
      await t.store.deleteBlob(key);

      const empty = newId();
      await t.store.createUpload(empty);
      await appendAll(t.store, empty, 0, Buffer.alloc(0));
      const emptyKey = await t.store.commitUpload(empty, 0, DIGEST);
      assert.equal((await t.store.statBlob(emptyKey))?.size, 0);
      assert.equal((await readAll(await t.store.openBlob(emptyKey))).length, 0);
      await t.store.deleteBlob(emptyKey);
    });

    test('missing blobs: openBlob rejects with ENOENT, statBlob is undefined, deleteBlob is idempotent', async () => {
      await assert.rejects(t.store.openBlob(`no-such-${newId()}`), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
      assert.equal(await t.store.statBlob(`no-such-${newId()}`), undefined);
      await t.store.deleteBlob(`no-such-${newId()}`);
    });

    test('deleteBlob and quarantineBlob: the object is no longer served or listed', async () => {
      const keys: string[] = [];
      for (let i = 0; i < 2; i++) {
        const id = newId();
        await t.store.createUpload(id);
        await appendAll(t.store, id, 0, randomBytes(5000));
        keys.push(await t.store.commitUpload(id, 5000, DIGEST));
      }
      await t.store.deleteBlob(keys[0]!);
      await t.other.quarantineBlob(keys[1]!);
      for (const key of keys) {
        assert.equal(await t.store.statBlob(key), undefined);
        await assert.rejects(t.store.openBlob(key), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
      }
      const listed = (await collect(t.store.listBlobs())).map((o) => o.key);
      assert.ok(!listed.includes(keys[0]!) && !listed.includes(keys[1]!));
    });

    test('deleteUpload removes every trace of an upload in progress, from any instance', async () => {
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, randomBytes(P + 10));
      assert.ok((await collect(t.store.listUploads())).some((o) => o.key === id));
      await t.other.deleteUpload(id);
      assert.ok(!(await collect(t.store.listUploads())).some((o) => o.key === id));
      await t.store.deleteUpload(id); // idempotent
    });

    test('listBlobs and listUploads see many objects (pagination)', async () => {
      const ids: string[] = [];
      const keys: string[] = [];
      for (let i = 0; i < 12; i++) {
        const id = newId();
        await t.store.createUpload(id);
        await appendAll(t.store, id, 0, randomBytes(10));
        if (i % 2) keys.push(await t.store.commitUpload(id, 10, DIGEST));
        else ids.push(id);
      }
      const blobs = new Set((await collect(t.other.listBlobs())).map((o) => o.key));
      for (const k of keys) assert.ok(blobs.has(k), `blob ${k} listed`);
      const uploads = await collect(t.other.listUploads());
      for (const id of ids) assert.equal(uploads.find((o) => o.key === id)?.size, 10, `upload ${id} listed with its size`);
      for (const k of keys) await t.store.deleteBlob(k);
      for (const id of ids) await t.store.deleteUpload(id);
    });

    test('writeBlob (optional): a whole body in one write; a short body stores nothing', async (c) => {
      if (!t.store.writeBlob) return c.skip('store has no writeBlob');
      const data = randomBytes(70_000);
      const id = newId();
      const seen: Buffer[] = [];
      const key = await t.store.writeBlob(id, digestOf(data), chunked(data, 8192), data.length, (b) => seen.push(b));
      assert.ok(Buffer.concat(seen).equals(data));
      assert.ok((await readAll(await t.other.openBlob(key))).equals(data));
      await t.store.deleteBlob(key);
      const cut = newId();
      await assert.rejects(t.store.writeBlob(cut, `sha256:${'0'.repeat(64)}`, failingAfter(randomBytes(30_000), 8192), 70_000, () => {}));
      await assert.rejects(t.store.writeBlob(cut, `sha256:${'0'.repeat(64)}`, chunked(randomBytes(100)), 200, () => {}));
      assert.ok(!(await collect(t.store.listBlobs())).some((o) => o.key === cut), 'nothing stored for a failed body');
    });

    test('importBlob (optional): takes outside bytes as a blob under the upload key, leaves the source, refuses a missing one', async (c) => {
      if (!t.store.importBlob || !t.importSource) return c.skip('store has no importBlob');
      const data = randomBytes(70_000);
      const source = await t.importSource(data);
      const id = newId();
      const imported = await t.store.importBlob(id, digestOf(data), source);
      assert.ok(imported, 'the store takes its own kind of source');
      assert.deepEqual(await readAll(await t.other.openBlob(imported.key)), data, 'another instance reads the imported bytes');
      assert.equal((await t.store.statBlob(imported.key))?.size, data.length);
      const again = await t.store.importBlob(newId(), digestOf(data), source);
      assert.ok(again, 'the source is still there: it can be imported again');
      assert.notEqual(again.key, imported.key, 'each import has a key of its own (invariant 3)');
      await t.store.deleteBlob(again.key);
      assert.deepEqual(await readAll(await t.store.openBlob(imported.key)), data, 'deleting one import leaves the other');
      const other: BlobSource = source.kind === 'file' ? { kind: 's3', bucket: 'b', key: 'k', size: 1 } : { kind: 'file', path: '/nonexistent', size: 1 };
      assert.equal(await t.store.importBlob(newId(), digestOf(data), other), undefined, 'a kind of source it cannot take: the caller streams');
      const gone: BlobSource = source.kind === 'file' ? { ...source, path: `${source.path}.missing` } : { ...source, key: `${source.key}.missing` };
      await assert.rejects(t.store.importBlob(newId(), digestOf(data), gone), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    });

    test('presignBlob (optional): the URL serves the bytes without credentials', async (c) => {
      if (!t.store.presignBlob) return c.skip('store has no presignBlob');
      const data = randomBytes(20_000);
      const id = newId();
      await t.store.createUpload(id);
      await appendAll(t.store, id, 0, data);
      const key = await t.store.commitUpload(id, data.length, DIGEST);
      const url = await t.store.presignBlob(key, 60);
      const res = await fetch(url, { headers: { Range: 'bytes=100-199' } });
      assert.equal(res.status, 206);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(100, 200)));
      await t.store.deleteBlob(key);
    });
  });
}
