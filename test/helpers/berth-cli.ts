/** Runs `berth <command>` as a separate process, as an operator would beside a running server. */
import { execFile } from 'node:child_process';
import { BERTH_BIN, metadataArgs, storageArgs } from './server.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function berth(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  // A test server's data directory names its metadata database too (BERTH_TEST_METADATA=postgres).
  const data = args.indexOf('--data');
  if (data >= 0 && !args.includes('--metadata')) args = [...args, ...(await metadataArgs(args[data + 1]!))];
  // A command on a test server's data directory uses that server's storage too.
  const storage = data >= 0 && args[data + 1] ? storageArgs(args[data + 1]!) : { args: [], env: {} };
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, ...args, ...storage.args], { env: { ...process.env, ...storage.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
