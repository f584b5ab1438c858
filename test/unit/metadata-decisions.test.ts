/** The decisions and row mapping both MetadataStore implementations share (src/metadata/decisions.ts, records.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blobRecheckAt, manifestDue, unknownBlobsError } from '../../src/metadata/decisions.js';
import { toReferrers, toUpload } from '../../src/metadata/records.js';

describe('shared metadata decisions', () => {
  it('a manifest is due once untagged at or before the cutoff, never while held (null)', () => {
    assert.equal(manifestDue(null, 100), false);
    assert.equal(manifestDue(100, 100), true);
    assert.equal(manifestDue(99, 100), true);
    assert.equal(manifestDue(101, 100), false);
  });

  it('a blob with a link left, or seen after the cutoff, is looked at again from its newest time', () => {
    assert.equal(blobRecheckAt(null, 50, 100), undefined);
    assert.equal(blobRecheckAt(null, 100, 100), undefined);
    assert.equal(blobRecheckAt(null, 150, 100), 150);
    assert.equal(blobRecheckAt(20, 50, 100), 50);
    assert.equal(blobRecheckAt(120, 50, 100), 120);
  });

  it('unknown-blob errors name at most 20 digests', () => {
    const digests = Array.from({ length: 25 }, (_, i) => `sha256:${i}`);
    const e = unknownBlobsError(digests);
    assert.equal(e.code, 'MANIFEST_BLOB_UNKNOWN');
    assert.deepEqual((e.detail as { digests: string[] }).digests, digests.slice(0, 20));
  });
});

describe('shared row mapping', () => {
  it('an upload has hashState only when the row holds one', () => {
    const row = { id: 'u', repository: 'r', offset: 3, created_at: 1, updated_at: 2, hash_state: null };
    assert.deepEqual(toUpload(row), { id: 'u', repository: 'r', offset: 3, createdAt: 1, updatedAt: 2 });
    assert.deepEqual(toUpload({ ...row, hash_state: Buffer.from('h') })?.hashState, Buffer.from('h'));
    assert.equal(toUpload(undefined), undefined);
  });

  it('referrers keep only the asked artifact type and parse annotations', () => {
    const rows = [
      { digest: 'a', media_type: 'm', size: 1, artifact_type: 'x', annotations: '{"k":"v"}' },
      { digest: 'b', media_type: 'm', size: 2, artifact_type: null, annotations: null },
    ];
    assert.deepEqual(toReferrers(rows, undefined), [
      { mediaType: 'm', digest: 'a', size: 1, artifactType: 'x', annotations: { k: 'v' } },
      { mediaType: 'm', digest: 'b', size: 2 },
    ]);
    assert.deepEqual(toReferrers(rows, 'x').map((d) => d.digest), ['a']);
  });
});
