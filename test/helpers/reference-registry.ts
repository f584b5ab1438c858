/**
 * The reference registry (Debian's `docker-registry`, CNCF distribution
 * 2.8) as a test fixture: started on a free loopback port with its storage
 * in a directory (or an S3 prefix), stopped before Berth imports it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface ReferenceRegistry {
  url: string;
  host: string;
  stop(): Promise<void>;
  output(): string;
}

export interface ReferenceStorageConfig {
  /** storage.filesystem.rootdirectory */
  root?: string;
  /** The s3 driver's settings. */
  s3?: { bucket: string; rootdirectory: string; endpoint: string; accessKey: string; secretKey: string };
  readOnly?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A config.yml (version 0.1) for the given storage, as an operator would write it. */
export function referenceConfig(storage: ReferenceStorageConfig, addr: string): string {
  const lines = ['version: 0.1', 'log:', '  level: warn', 'storage:', '  delete:', '    enabled: true'];
  if (storage.s3) {
    const s = storage.s3;
    lines.push(
      '  s3:',
      `    accesskey: ${s.accessKey}`,
      `    secretkey: ${s.secretKey}`,
      '    region: us-east-1',
      `    regionendpoint: ${s.endpoint}`,
      `    bucket: ${s.bucket}`,
      `    rootdirectory: ${s.rootdirectory}`,
      '    secure: false',
      '    v4auth: true',
      '    forcepathstyle: true',
    );
  } else {
    lines.push('  filesystem:', `    rootdirectory: ${storage.root}`);
  }
  if (storage.readOnly) lines.push('  maintenance:', '    readonly:', '      enabled: true');
  lines.push('http:', `  addr: ${addr}`);
  return lines.join('\n') + '\n';
}

export async function startReferenceRegistry(workDir: string, storage: ReferenceStorageConfig): Promise<ReferenceRegistry> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(workDir, `reference-${port}.yml`);
  writeFileSync(config, referenceConfig(storage, host));
  // The aws-sdk-go of distribution 2.8 panics on AWS_CA_BUNDLE with its own
  // HTTP transport ("unable to load custom CA bundle"); the test S3 server is
  // plain HTTP, so the bundle is not needed.
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited:\n${out}`);
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`docker-registry did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://${host}`,
    host,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
