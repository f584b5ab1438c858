/** Which upstream serves a local repository name, and under which name upstream. */
import type { UpstreamConfig } from './config.js';

export interface Route {
  upstream: UpstreamConfig;
  /** The repository's name upstream. */
  remote: string;
}

export class Routing {
  /** Longest prefix first, the default mirror (prefix '') last. */
  private readonly upstreams: UpstreamConfig[];

  constructor(upstreams: UpstreamConfig[]) {
    this.upstreams = [...upstreams].sort((a, b) => b.prefix.length - a.prefix.length);
  }

  route(repository: string): Route | undefined {
    for (const upstream of this.upstreams) {
      let remote: string;
      if (upstream.prefix === '') remote = repository;
      else if (repository.startsWith(upstream.prefix + '/')) remote = repository.slice(upstream.prefix.length + 1);
      else continue;
      // Docker Hub's official images live under library/: `docker.io/alpine` is `library/alpine` there.
      if (upstream.libraryPrefix && !remote.includes('/')) remote = `library/${remote}`;
      return { upstream, remote };
    }
    return undefined;
  }
}
