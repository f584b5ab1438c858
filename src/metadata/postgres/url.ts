/** PostgreSQL URLs as Berth prints them: never with their password. (No `pg` import: cheap to load.) */

/** The URL with its password hidden, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}
