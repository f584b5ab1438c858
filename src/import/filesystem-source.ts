/** A reference registry's storage on a local file system (its `storage.filesystem.rootdirectory`). */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { BlobSource } from '../storage/blob-store.js';
import type { DirEntry, ReferenceStorage } from './source.js';

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
    return (await stat(this.base).catch(() => undefined))?.isDirectory() === true;
  }

  async list(p: string): Promise<DirEntry[]> {
    try {
      const entries = await readdir(this.path(p), { withFileTypes: true });
      return entries.map((e) => ({ name: e.name, directory: e.isDirectory() }));
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
  }

  async read(p: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(p));
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  async size(p: string): Promise<number | undefined> {
    const st = await stat(this.path(p)).catch((e: unknown) => {
      if (isMissing(e)) return undefined;
      throw e;
    });
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
