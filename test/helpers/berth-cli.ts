/** Runs `berth <command>` as a separate process, as an operator would beside a running server. */
import { execFile } from 'node:child_process';
import { BERTH_BIN, metadataArgs } from './server.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function berth(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  // A test server's data directory names its metadata database too (BERTH_TEST_METADATA=postgres).
  const data = args.indexOf('--data');
  if (data >= 0 && !args.includes('--metadata')) args = [...args, ...(await metadataArgs(args[data + 1]!))];
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
