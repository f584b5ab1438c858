/** The pull-through cache's counters, per upstream; /metrics exports them (src/http/admin.ts). */
export interface UpstreamCounters {
  /** Manifests and blobs answered from the cache. */
  hits: number;
  /** Manifests and blobs fetched from upstream for a request. */
  misses: number;
  /** Cached manifests served because upstream could not confirm the tag. */
  stale: number;
  /** Requests that joined a fetch already in flight instead of starting one. */
  joined: number;
  /** Requests sent upstream (including tag re-checks and token requests' retries). */
  upstreamRequests: number;
  /** Body bytes received from upstream (blobs and manifests). */
  upstreamBytes: number;
  /** Upstream requests that failed (unreachable, timed out, 429, 5xx, bad content). */
  upstreamErrors: number;
}

export class ProxyMetrics {
  readonly byUpstream = new Map<string, UpstreamCounters>();

  of(upstream: string): UpstreamCounters {
    let c = this.byUpstream.get(upstream);
    if (!c) {
      c = { hits: 0, misses: 0, stale: 0, joined: 0, upstreamRequests: 0, upstreamBytes: 0, upstreamErrors: 0 };
      this.byUpstream.set(upstream, c);
    }
    return c;
  }
}
