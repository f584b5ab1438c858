/** `berth config check FILE`: validates a configuration file and shows what each key of it becomes. */
import { loadConfig } from '../config.js';

export async function configCheckCommand(file: string, opts: { json?: boolean }): Promise<number> {
  // Only the file: the environment's BERTH_* settings are not what is being checked.
  const config = loadConfig({ config: file }, {});
  if (!config.reference) {
    if (opts.json) process.stdout.write(JSON.stringify({ format: 'berth', file, valid: true }, null, 2) + '\n');
    else process.stdout.write(`${file}: a valid Berth configuration file\n`);
    return 0;
  }
  const { mappings, ignored } = config.reference;
  if (opts.json) {
    process.stdout.write(JSON.stringify({ format: 'reference 0.1', file, valid: true, mappings }, null, 2) + '\n');
    return 0;
  }
  const out: string[] = [`${file}: the reference registry's configuration (version 0.1), read as follows:`];
  const width = Math.min(48, Math.max(...mappings.map((m) => m.key.length + m.value.length + 2)));
  for (const m of mappings) {
    const left = `${m.key}: ${m.value}`.padEnd(width);
    out.push(m.berth !== undefined ? `  ${left}  -> ${m.berth}${m.note ? ` (${m.note})` : ''}` : `  ${left}  IGNORED: ${m.note}`);
  }
  out.push(ignored.length === 0 ? 'every key is mapped' : `${ignored.length} keys ignored (berth serve names them in one warning at start)`);
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
