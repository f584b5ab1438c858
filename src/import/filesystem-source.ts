/** A reference registry's storage on a local file system (its `storage.filesystem.rootdirectory`). */
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { BlobSource } from '../storage/blob-store.js';
import type { DirEntry, ReferenceStorage } from './source.js';

/**
 * Directory listings, link files and manifests are read with synchronous
 * calls: they are tiny and usually cached, and a round trip through the
 * thread pool cost more than the read (a third of the import's main-thread
 * time on 10,000 small images). Blob bytes are streamed, or linked.
 */
export class FilesystemReferenceStorage implements ReferenceStorage {
  readonly description: string;
  private readonly base: string;

  constructor(root: string) {
    this.description = resolve(root);
    this.base = join(this.description, 'docker', 'registry', 'v2');
  }

  private path(p: string): string {
    return join(this.base, ...p.split('/'));
  }

  async exists(): Promise<boolean> {
    return statSync(this.base, { throwIfNoEntry: false })?.isDirectory() === true;
  }

  async list(p: string): Promise<DirEntry[]> {
    try {
      const entries = readdirSync(this.path(p), { withFileTypes: true });
      return entries.map((e) => ({ name: e.name, directory: e.isDirectory() }));
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
  }

  async read(p: string): Promise<Buffer | undefined> {
    try {
      return readFileSync(this.path(p));
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  async size(p: string): Promise<number | undefined> {
    let st;
    try {
      st = statSync(this.path(p), { throwIfNoEntry: false });
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    return st?.isFile() ? st.size : undefined;
  }

  async open(p: string): Promise<Readable> {
    return createReadStream(this.path(p), { highWaterMark: 1024 * 1024 });
  }

  blobSource(p: string, size: number): BlobSource {
    return { kind: 'file', path: this.path(p), size };
  }
}

/** A missing file, or a path through something that is not a directory (a damaged tree). */
function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
