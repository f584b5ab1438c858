/**
 * The value parsers and the error every configuration reader shares: the
 * general settings (config.ts) and the security ones (auth/config.ts) both
 * import them from here, so neither imports the other's module for them.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses `0`, `90s`, `30m`, `1h`, `2d` (or a bare number of seconds) into milliseconds. */
export function parseDuration(value: string | number, what = 'duration'): number {
  if (typeof value === 'number') return value * 1000;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new ConfigError(`invalid ${what} "${value}": use a number with ms, s, m, h or d (e.g. 30m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

export function parseBoolean(value: string | boolean, what: string): boolean {
  if (typeof value === 'boolean') return value;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ConfigError(`invalid ${what} "${value}": use true or false`);
}

export function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`invalid address "${addr}": use HOST:PORT, e.g. 0.0.0.0:5000`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
