/** FileAppender: chunks land in order at their positions, batched while a write runs, and a failed write is reported. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileAppender } from '../../src/storage/file-appender.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-appender-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A FileHandle whose writev calls are counted and can be made to fail. */
function counted(fh: FileHandle, failAt?: number): { fh: FileHandle; calls: () => number } {
  let calls = 0;
  const wrapped = Object.create(fh) as FileHandle;
  wrapped.writev = ((buffers: NodeJS.ArrayBufferView[], position?: number) => {
    calls++;
    if (failAt !== undefined && calls === failAt) return Promise.reject(new Error('disk full'));
    return fh.writev(buffers, position);
  }) as FileHandle['writev'];
  return { fh: wrapped, calls: () => calls };
}

describe('FileAppender', () => {
  it('writes every chunk in order after the start position, with fewer writes than chunks', async () => {
    const path = join(dir, 'ordered');
    const fh = await open(path, 'w+');
    await fh.write(Buffer.from('HEAD'), 0, 4, 0);
    const { fh: spy, calls } = counted(fh);
    const seen: number[] = [];
    const appender = new FileAppender(spy, 4, 256 * 1024, (w) => seen.push(w));
    const chunks: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const chunk = Buffer.alloc(1000 + i, i % 251);
      chunks.push(chunk);
      await appender.add(chunk);
    }
    await appender.end();
    await fh.close();
    const expected = Buffer.concat([Buffer.from('HEAD'), ...chunks]);
    assert.equal(appender.written, expected.length);
    assert.deepEqual(readFileSync(path), expected);
    assert.ok(calls() < 200, `${calls()} writes for 200 chunks`);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'written positions only grow');
    assert.equal(seen.at(-1), expected.length);
  });

  it('reports a failed write and does not count its bytes as written', async () => {
    const fh = await open(join(dir, 'failing'), 'w+');
    const { fh: spy } = counted(fh, 2);
    const appender = new FileAppender(spy, 0, 1024);
    let error: unknown;
    try {
      for (let i = 0; i < 50; i++) await appender.add(Buffer.alloc(4096, 1));
      await appender.end();
    } catch (e) {
      error = e;
    }
    await appender.abandon();
    await fh.close();
    assert.match(String(error), /disk full/);
    assert.ok(appender.written <= 4096, `written ${appender.written} must stop before the failed write`);
  });
});
