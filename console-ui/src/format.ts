/** How numbers, times and digests read on the page. */

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function time(ms: number): string {
  if (!ms) return '—';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

export function shortDigest(d: string): string {
  const colon = d.indexOf(':');
  return `${d.slice(0, colon + 1)}${d.slice(colon + 1, colon + 13)}`;
}

export function mediaTypeName(t: string): string {
  const names: Record<string, string> = {
    'application/vnd.oci.image.manifest.v1+json': 'OCI image',
    'application/vnd.oci.image.index.v1+json': 'OCI index',
    'application/vnd.docker.distribution.manifest.v2+json': 'Docker image',
    'application/vnd.docker.distribution.manifest.list.v2+json': 'Docker manifest list',
  };
  return names[t] ?? t;
}
