/**
 * This process's wall clock, ms since the epoch. Grace periods are compared
 * against one clock (invariant 10): with SQLite that is this machine's,
 * shared by every process on it; with PostgreSQL it is the database
 * server's, and this one only names times nobody compares.
 *
 * BERTH_TEST_CLOCK_SKEW_MS shifts it, for tests only: it is how a test gives
 * one process (a `berth gc` run) a clock that is ahead of the others', as a
 * badly synchronised node would have. It is not a setting.
 */
const skew = Number(process.env.BERTH_TEST_CLOCK_SKEW_MS ?? 0) || 0;

export function systemNow(): number {
  return Date.now() + skew;
}
