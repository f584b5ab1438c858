/**
 * Retention's pull times are batched in memory (src/policy/pull-recorder.ts):
 * a burst of pulls over many distinct tags must not grow that map for the
 * whole interval (issue 18: memory flat at a million images). Counted with a
 * recording store, no clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MetadataStore, TagPull } from '../../src/metadata/store.js';
import { Policies } from '../../src/policy/policies.js';
import { TagPullRecorder } from '../../src/policy/pull-recorder.js';

describe('tag pull recorder', () => {
  it('writes early once maxPending distinct tags wait, instead of holding them for the interval', async () => {
    const batches: TagPull[][] = [];
    const metadata = { recordTagPulls: async (p: TagPull[]) => void batches.push(p) } as unknown as MetadataStore;
    const policies = { current: new Policies([{ repositories: ['**'], retention: { pulledWithin: 86_400_000 } }] as never) };
    const recorder = new TagPullRecorder(metadata, policies, 3_600_000, undefined, 100);
    for (let i = 0; i < 250; i++) recorder.record('ci/app', `build-${i}`);
    await recorder.flush();
    assert.deepEqual(batches.map((b) => b.length), [100, 100, 50]);
  });
});
