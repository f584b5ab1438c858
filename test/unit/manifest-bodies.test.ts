/** The in-memory manifest bytes of the SQLite store's pull path: bounded, and never larger than allowed. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManifestBodies } from '../../src/metadata/manifest-bodies.js';

const body = (n: number, fill = 'x') => Buffer.from(fill.repeat(n));

describe('ManifestBodies', () => {
  it('keeps bodies by digest up to maxBytes, letting the oldest go first', () => {
    const bodies = new ManifestBodies(100, 100);
    bodies.set('sha256:a', body(40, 'a'));
    bodies.set('sha256:b', body(40, 'b'));
    assert.equal(bodies.size, 80);
    bodies.set('sha256:c', body(40, 'c'));
    assert.equal(bodies.get('sha256:a'), undefined, 'the oldest went');
    assert.deepEqual(bodies.get('sha256:b'), body(40, 'b'));
    assert.deepEqual(bodies.get('sha256:c'), body(40, 'c'));
    assert.equal(bodies.size, 80);
    bodies.set('sha256:d', body(100, 'd'));
    assert.equal(bodies.size, 100, 'room made for a body of maxBytes');
    assert.deepEqual(bodies.get('sha256:d'), body(100, 'd'));
  });

  it('does not keep a body larger than maxBody, nor replace one it has', () => {
    const bodies = new ManifestBodies(1000, 50);
    bodies.set('sha256:big', body(51));
    assert.equal(bodies.get('sha256:big'), undefined);
    assert.equal(bodies.size, 0);
    const first = body(10, 'a');
    bodies.set('sha256:a', first);
    bodies.set('sha256:a', body(10, 'a'));
    assert.equal(bodies.get('sha256:a'), first);
    assert.equal(bodies.size, 10);
  });
});
