/**
 * The response header that says how a pull-through cache answered: `hit`
 * (from the cache), `miss` (fetched from upstream now) or `stale` (from the
 * cache because upstream could not confirm the tag). Absent for hosted
 * repositories.
 */
export const CACHE_HEADER = 'X-Berth-Cache';
