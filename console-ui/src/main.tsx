/**
 * Berth's web console: a single page under /ui. Views are chosen by the path
 * (/ui/, /ui/repository?name=…, /ui/manifest?repository=…&reference=…,
 * /ui/storage, /ui/lifecycle, /ui/login), so every view has a link.
 */
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, login, logout, setUnauthorizedHandler, type GcReport, type LifecycleRun, type ManifestView, type RepositorySummary, type Session, type StorageView, type TagRow } from './api.js';
import { bytes, mediaTypeName, shortDigest, time } from './format.js';

// --- routing -------------------------------------------------------------------

type Route = { path: string; params: URLSearchParams };

function current(): Route {
  return { path: location.pathname.replace(/^\/ui\/?/, '') || '', params: new URLSearchParams(location.search) };
}

let setRoute: (r: Route) => void = () => {};

function go(href: string): void {
  history.pushState(null, '', href);
  setRoute(current());
  window.scrollTo(0, 0);
}

function Link({ href, children, class: cls }: { href: string; children: preact.ComponentChildren; class?: string }) {
  return (
    <a
      href={href}
      class={cls}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        go(href);
      }}
    >
      {children}
    </a>
  );
}

const repoHref = (name: string) => `/ui/repository?name=${encodeURIComponent(name)}`;
const manifestHref = (repository: string, reference: string) =>
  `/ui/manifest?repository=${encodeURIComponent(repository)}&reference=${encodeURIComponent(reference)}`;

// --- data loading ----------------------------------------------------------------

function useApi<T>(path: string | undefined, deps: unknown[] = []): { data?: T; error?: ApiError; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: ApiError }>({});
  const [n, setN] = useState(0);
  useEffect(() => {
    if (!path) return;
    let live = true;
    api<T>(path).then(
      (data) => live && setState({ data }),
      (error: ApiError) => live && setState({ error }),
    );
    return () => {
      live = false;
    };
  }, [path, n, ...deps]);
  return { ...state, reload: () => setN((x) => x + 1) };
}

function Status({ error, loading }: { error?: ApiError; loading?: boolean }) {
  if (error) return <p role="alert" class="error">{error.status === 404 ? 'Not found, or not visible to you.' : error.message}</p>;
  if (loading) return <p aria-live="polite" class="muted">Loading…</p>;
  return null;
}

// --- shared widgets --------------------------------------------------------------

function Copy({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <span class="copy">
      <code>{text}</code>
      <button
        type="button"
        class="small"
        aria-label={`Copy ${label}`}
        onClick={() => {
          void navigator.clipboard?.writeText(text).catch(() => {});
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        }}
      >
        {done ? 'Copied' : 'Copy'}
      </button>
    </span>
  );
}

/** A modal confirmation (the native <dialog>: focus is trapped and Escape cancels). */
function Confirm({ title, children, action, onConfirm, onClose }: { title: string; children: preact.ComponentChildren; action: string; onConfirm: () => Promise<void>; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onClose={onClose}>
      <h2 id="confirm-title">{title}</h2>
      <div>{children}</div>
      {error && <p role="alert" class="error">{error}</p>}
      <div class="actions">
        <button type="button" onClick={() => ref.current?.close()}>Cancel</button>
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await onConfirm();
              ref.current?.close();
            } catch (e) {
              setError((e as Error).message);
              setBusy(false);
            }
          }}
        >
          {action}
        </button>
      </div>
    </dialog>
  );
}

// --- pages -------------------------------------------------------------------------

function Repositories() {
  const [q, setQ] = useState(current().params.get('q') ?? '');
  const [sort, setSort] = useState(current().params.get('sort') ?? 'name');
  const [limit, setLimit] = useState(100);
  const { data, error } = useApi<{ total: number; repositories: RepositorySummary[] }>(
    `repositories?q=${encodeURIComponent(q)}&sort=${sort}&limit=${limit}`,
  );
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">Repositories</h1>
      <form class="toolbar" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search <input type="search" name="q" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} placeholder="name contains…" />
        </label>
        <label>
          Sort by{' '}
          <select name="sort" value={sort} onChange={(e) => setSort((e.target as HTMLSelectElement).value)}>
            <option value="name">name</option>
            <option value="size">size</option>
            <option value="pushed">last push</option>
          </select>
        </label>
      </form>
      <Status error={error} loading={!data && !error} />
      {data && (
        <>
          <p class="muted" aria-live="polite">
            {data.total} {data.total === 1 ? 'repository' : 'repositories'}
          </p>
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Repository</th>
                  <th scope="col" class="num">Tags</th>
                  <th scope="col" class="num">Size</th>
                  <th scope="col">Last push</th>
                </tr>
              </thead>
              <tbody>
                {data.repositories.map((r) => (
                  <tr key={r.name}>
                    <th scope="row">
                      <Link href={repoHref(r.name)}>{r.name}</Link>
                    </th>
                    <td class="num">{r.tags}</td>
                    <td class="num">{bytes(r.bytes)}</td>
                    <td>{time(r.lastPush)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {data.total > data.repositories.length && (
            <button type="button" onClick={() => setLimit(limit + 100)}>
              Show more
            </button>
          )}
        </>
      )}
    </section>
  );
}

function Repository({ name }: { name: string }) {
  const [pages, setPages] = useState<{ tags: TagRow[]; more: boolean; canDelete: boolean } | undefined>();
  const [error, setError] = useState<ApiError>();
  const [confirm, setConfirm] = useState<TagRow>();
  const [version, setVersion] = useState(0);
  const host = location.host;

  const load = async (after?: string) => {
    try {
      const page = await api<{ tags: TagRow[]; more: boolean; canDelete: boolean }>(
        `tags?repository=${encodeURIComponent(name)}&limit=100${after ? `&last=${encodeURIComponent(after)}` : ''}`,
      );
      setPages((prev) => (after && prev ? { ...page, tags: [...prev.tags, ...page.tags] } : page));
    } catch (e) {
      setError(e as ApiError);
    }
  };
  useEffect(() => {
    setPages(undefined);
    setError(undefined);
    void load();
  }, [name, version]);

  return (
    <section aria-labelledby="page-title">
      <nav aria-label="Breadcrumb" class="crumbs">
        <Link href="/ui/">Repositories</Link> / <span>{name}</span>
      </nav>
      <h1 id="page-title">{name}</h1>
      <Status error={error} loading={!pages && !error} />
      {pages && (
        <>
          <div class="scroll">
            <table class="tags">
              <thead>
                <tr>
                  <th scope="col">Tag</th>
                  <th scope="col">Digest</th>
                  <th scope="col">Type</th>
                  <th scope="col">Platform</th>
                  <th scope="col" class="num">Size</th>
                  <th scope="col">Pushed</th>
                  <th scope="col" class="num">Pulls</th>
                  <th scope="col">Pull</th>
                  {pages.canDelete && <th scope="col"><span class="sr-only">Actions</span></th>}
                </tr>
              </thead>
              <tbody>
                {pages.tags.map((t) => {
                  const rows = t.platforms && t.platforms.length > 0 ? t.platforms : [undefined];
                  return rows.map((p, i) => (
                    <tr key={`${t.tag}-${i}`} class={i > 0 ? 'cont' : ''} data-tag={t.tag}>
                      {i === 0 && (
                        <th scope="row" rowSpan={rows.length}>
                          <Link href={manifestHref(name, t.tag)}>{t.tag}</Link>
                        </th>
                      )}
                      <td>
                        <Link href={manifestHref(name, p ? p.digest : t.digest)} class="digest">
                          <code title={p ? p.digest : t.digest}>{shortDigest(p ? p.digest : t.digest)}</code>
                        </Link>
                      </td>
                      <td>{i === 0 ? t.artifactType ?? mediaTypeName(t.mediaType) : ''}</td>
                      <td class="nowrap">{p ? p.platform : t.kind === 'image' ? '—' : ''}</td>
                      <td class="num">{bytes(p ? p.size : t.size)}</td>
                      <td class="nowrap">{i === 0 ? time(t.pushedAt) : ''}</td>
                      <td class="num" title={i === 0 && t.lastPulled ? `last pulled ${time(t.lastPulled)}` : undefined}>
                        {i === 0 ? t.pulls : ''}
                      </td>
                      <td>
                        {i === 0 && (
                          <details>
                            <summary>Pull command</summary>
                            <Copy text={`docker pull ${host}/${name}:${t.tag}`} label={`docker pull command for ${t.tag}`} />
                            <Copy text={`podman pull ${host}/${name}:${t.tag}`} label={`podman pull command for ${t.tag}`} />
                          </details>
                        )}
                      </td>
                      {pages.canDelete && (
                        <td>
                          {i === 0 && (
                            <button type="button" class="danger small" aria-label={`Delete tag ${t.tag}`} onClick={() => setConfirm(t)}>
                              Delete
                            </button>
                          )}
                        </td>
                      )}
                    </tr>
                  ));
                })}
              </tbody>
            </table>
          </div>
          {pages.tags.length === 0 && <p class="muted">No tags.</p>}
          {pages.more && (
            <button type="button" onClick={() => void load(pages.tags[pages.tags.length - 1]!.tag)}>
              Show more tags
            </button>
          )}
        </>
      )}
      {confirm && (
        <DeleteTag
          repository={name}
          tag={confirm}
          onClose={() => setConfirm(undefined)}
          onDeleted={() => setVersion((v) => v + 1)}
        />
      )}
    </section>
  );
}

function DeleteTag({ repository, tag, onClose, onDeleted }: { repository: string; tag: TagRow; onClose: () => void; onDeleted: () => void }) {
  const { data } = useApi<ManifestView>(`manifest?repository=${encodeURIComponent(repository)}&reference=${encodeURIComponent(tag.digest)}`);
  const others = data ? data.tags.filter((t) => t !== tag.tag) : [];
  return (
    <Confirm
      title={`Delete tag ${tag.tag}?`}
      action="Delete tag"
      onClose={onClose}
      onConfirm={async () => {
        await api(`tag?repository=${encodeURIComponent(repository)}&tag=${encodeURIComponent(tag.tag)}`, { method: 'DELETE' });
        onDeleted();
      }}
    >
      <p>
        <code>{repository}:{tag.tag}</code> will no longer pull.
      </p>
      {data &&
        (others.length > 0 || data.parents.length > 0 ? (
          <p>
            Its manifest <code>{shortDigest(tag.digest)}</code> stays: {others.length > 0 ? `still tagged ${others.join(', ')}` : 'an index lists it'}.
          </p>
        ) : (
          <p>
            Its manifest <code>{shortDigest(tag.digest)}</code> is then untagged: garbage collection removes it after the grace period
            {tag.platforms ? `, with its ${tag.platforms.length} platform manifests` : ''}
            {data.referrers.length > 0 ? ` and ${data.referrers.length} referrer(s) (signatures, SBOMs…)` : ''}, and the layers no other manifest uses.
          </p>
        ))}
    </Confirm>
  );
}

function Manifest({ repository, reference }: { repository: string; reference: string }) {
  const { data, error } = useApi<ManifestView>(`manifest?repository=${encodeURIComponent(repository)}&reference=${encodeURIComponent(reference)}`);
  const [confirm, setConfirm] = useState(false);
  const byType = new Map<string, ManifestView['referrers']>();
  for (const r of data?.referrers ?? []) {
    const key = r.artifactType ?? r.mediaType;
    byType.set(key, [...(byType.get(key) ?? []), r]);
  }
  const image = data?.config?.image;
  return (
    <section aria-labelledby="page-title">
      <nav aria-label="Breadcrumb" class="crumbs">
        <Link href="/ui/">Repositories</Link> / <Link href={repoHref(repository)}>{repository}</Link> / <span>{reference.includes(':') ? shortDigest(reference) : reference}</span>
      </nav>
      <h1 id="page-title">
        {repository}
        {reference.includes(':') ? '@' : ':'}
        {reference.includes(':') ? shortDigest(reference) : reference}
      </h1>
      <Status error={error} loading={!data && !error} />
      {data && (
        <>
          <dl class="facts">
            <dt>Digest</dt>
            <dd>
              <Copy text={data.digest} label="digest" />
            </dd>
            <dt>Media type</dt>
            <dd>{data.mediaType}</dd>
            {data.artifactType && (
              <>
                <dt>Artifact type</dt>
                <dd>{data.artifactType}</dd>
              </>
            )}
            <dt>Size</dt>
            <dd>{bytes(data.size)} compressed (manifest {bytes(data.manifestSize)})</dd>
            <dt>Tags</dt>
            <dd>{data.tags.length > 0 ? data.tags.join(', ') : 'none'}</dd>
            <dt>Pulls</dt>
            <dd>
              {data.pulls}
              {data.lastPulled ? `, last ${time(data.lastPulled)}` : ''}
            </dd>
            {data.subject && (
              <>
                <dt>Subject</dt>
                <dd>
                  <Link href={manifestHref(repository, data.subject.digest)}>
                    <code>{shortDigest(data.subject.digest)}</code>
                  </Link>
                </dd>
              </>
            )}
            {data.parents.length > 0 && (
              <>
                <dt>In indexes</dt>
                <dd>
                  {data.parents.map((p) => (
                    <Link key={p} href={manifestHref(repository, p)}>
                      <code>{shortDigest(p)}</code>{' '}
                    </Link>
                  ))}
                </dd>
              </>
            )}
          </dl>
          {data.canDelete && (
            <button type="button" class="danger" onClick={() => setConfirm(true)}>
              Delete manifest
            </button>
          )}

          {data.manifests && (
            <>
              <h2>Platforms</h2>
              <div class="scroll">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Platform</th>
                      <th scope="col">Digest</th>
                      <th scope="col" class="num">Size</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.manifests.map((m) => (
                      <tr key={m.digest}>
                        <th scope="row">{m.platform}</th>
                        <td>
                          <Link href={manifestHref(repository, m.digest)}>
                            <code>{shortDigest(m.digest)}</code>
                          </Link>
                        </td>
                        <td class="num">{bytes(m.size)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}

          {data.layers && (
            <>
              <h2>Layers</h2>
              <div class="scroll">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">#</th>
                      <th scope="col">Digest</th>
                      <th scope="col">Media type</th>
                      <th scope="col" class="num">Size</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.config && (
                      <tr>
                        <th scope="row">config</th>
                        <td><code title={data.config.digest}>{shortDigest(data.config.digest)}</code></td>
                        <td>{data.config.mediaType}</td>
                        <td class="num">{bytes(data.config.size)}</td>
                      </tr>
                    )}
                    {data.layers.map((l, i) => (
                      <tr key={`${l.digest}-${i}`}>
                        <th scope="row">{i + 1}</th>
                        <td><code title={l.digest}>{shortDigest(l.digest)}</code></td>
                        <td>{l.mediaType}</td>
                        <td class="num">{bytes(l.size)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}

          {image && (
            <>
              <h2>Configuration</h2>
              <dl class="facts">
                {image.platform && (<><dt>Platform</dt><dd>{image.platform}</dd></>)}
                {image.created && (<><dt>Created</dt><dd>{image.created}</dd></>)}
                {image.entrypoint && (<><dt>Entrypoint</dt><dd><code>{JSON.stringify(image.entrypoint)}</code></dd></>)}
                {image.cmd && (<><dt>Command</dt><dd><code>{JSON.stringify(image.cmd)}</code></dd></>)}
                {image.workingDir && (<><dt>Working directory</dt><dd><code>{image.workingDir}</code></dd></>)}
                {image.user && (<><dt>User</dt><dd><code>{image.user}</code></dd></>)}
                {image.exposedPorts && (<><dt>Ports</dt><dd>{image.exposedPorts.join(', ')}</dd></>)}
                {image.env && (
                  <>
                    <dt>Environment</dt>
                    <dd>
                      <ul class="plain">{image.env.map((e) => <li key={e}><code>{e}</code></li>)}</ul>
                    </dd>
                  </>
                )}
              </dl>
              {image.history && image.history.length > 0 && (
                <details>
                  <summary>History ({image.history.length} steps)</summary>
                  <ol class="history">
                    {image.history.map((h, i) => (
                      <li key={i}>
                        <code>{h.createdBy ?? h.comment ?? ''}</code>
                        {h.emptyLayer ? <span class="muted"> (no layer)</span> : null}
                      </li>
                    ))}
                  </ol>
                </details>
              )}
            </>
          )}

          {Object.keys(data.annotations).length > 0 && (
            <>
              <h2>Annotations</h2>
              <dl class="facts">
                {Object.entries(data.annotations).map(([k, v]) => (
                  <>
                    <dt key={k}>{k}</dt>
                    <dd>{v}</dd>
                  </>
                ))}
              </dl>
            </>
          )}

          <h2>Referrers</h2>
          {data.referrers.length === 0 ? (
            <p class="muted">No signatures, SBOMs or attestations refer to this manifest.</p>
          ) : (
            [...byType].map(([type, list]) => (
              <div key={type} class="referrers">
                <h3>{type}</h3>
                <ul>
                  {list.map((r) => (
                    <li key={r.digest}>
                      <Link href={manifestHref(repository, r.digest)}>
                        <code>{shortDigest(r.digest)}</code>
                      </Link>{' '}
                      <span class="muted">{bytes(r.size)}</span>
                    </li>
                  ))}
                </ul>
              </div>
            ))
          )}
          {confirm && (
            <Confirm
              title="Delete this manifest?"
              action="Delete manifest"
              onClose={() => setConfirm(false)}
              onConfirm={async () => {
                await api(`manifest?repository=${encodeURIComponent(repository)}&digest=${encodeURIComponent(data.digest)}`, { method: 'DELETE' });
                go(repoHref(repository));
              }}
            >
              <p>
                <code>{repository}@{shortDigest(data.digest)}</code> is deleted now
                {data.tags.length > 0 ? `, with its tags ${data.tags.join(', ')}` : ''}.
              </p>
              <p>
                Garbage collection then removes {data.manifests ? `its ${data.manifests.length} platform manifests, ` : ''}
                {data.referrers.length > 0 ? `its ${data.referrers.length} referrer(s), ` : ''}and the layers no other manifest uses.
              </p>
            </Confirm>
          )}
        </>
      )}
    </section>
  );
}

function Storage({ session }: { session: Session }) {
  const { data, error } = useApi<StorageView>('storage');
  const t = data?.totals;
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">Storage</h1>
      <Status error={error} loading={!data && !error} />
      {t && (
        <dl class="cards">
          <div><dt>Stored</dt><dd>{bytes(t.bytes)}</dd><dd class="muted">{t.blobs} blobs</dd></div>
          <div><dt>Awaiting GC</dt><dd>{bytes(t.unlinkedBytes)}</dd><dd class="muted">{t.unlinkedBlobs} unlinked blobs, {t.untaggedManifests} untagged manifests, {t.queuedBlobs} blobs queued</dd></div>
          <div><dt>Being deleted</dt><dd>{t.deletingBlobs}</dd><dd class="muted">blobs</dd></div>
          <div><dt>Uploads in flight</dt><dd>{t.uploads}</dd><dd class="muted">{bytes(t.uploadBytes)} received</dd></div>
        </dl>
      )}
      {data && !t && session.auth && <p class="muted">Registry-wide totals are shown to admins.</p>}
      {data && (
        <div class="scroll">
          <table>
            <caption>Per repository: unique bytes are what deleting it would reclaim</caption>
            <thead>
              <tr>
                <th scope="col">Repository</th>
                <th scope="col" class="num">Size</th>
                <th scope="col" class="num">Unique</th>
                <th scope="col" class="num">Shared</th>
                <th scope="col" class="num">Manifests</th>
              </tr>
            </thead>
            <tbody>
              {data.repositories.map((r) => (
                <tr key={r.name}>
                  <th scope="row"><Link href={repoHref(r.name)}>{r.name}</Link></th>
                  <td class="num">{bytes(r.bytes)}</td>
                  <td class="num">{bytes(r.uniqueBytes)}</td>
                  <td class="num">{bytes(r.sharedBytes)}</td>
                  <td class="num">{r.manifests}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Lifecycle() {
  const { data, error, reload } = useApi<{ runs: LifecycleRun[] }>('lifecycle');
  const [preview, setPreview] = useState<GcReport>();
  const [result, setResult] = useState<GcReport>();
  const [busy, setBusy] = useState(false);
  const [gcError, setGcError] = useState<string>();
  const runGc = async (dryRun: boolean) => {
    setBusy(true);
    setGcError(undefined);
    try {
      const report = await api<GcReport>(`gc?dryRun=${dryRun ? 1 : 0}`, { method: 'POST' });
      if (dryRun) setPreview(report);
      else {
        setResult(report);
        setPreview(undefined);
        reload();
      }
    } catch (e) {
      setGcError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">Lifecycle</h1>
      <Status error={error} loading={!data && !error} />
      {data && (
        <>
          <h2>Garbage collection</h2>
          <p>A dry run shows what a collection would delete now; nothing changes until you run it.</p>
          <div class="actions">
            <button type="button" disabled={busy} onClick={() => void runGc(true)}>
              Dry run
            </button>
            <button type="button" class="danger" disabled={busy || !preview} onClick={() => void runGc(false)}>
              Run GC now
            </button>
          </div>
          {gcError && <p role="alert" class="error">{gcError}</p>}
          <div aria-live="polite">
            {preview && (
              <div class="report" data-testid="gc-preview">
                <p>
                  Would delete {preview.manifestsDeleted} manifests and {preview.blobsDeleted} blobs ({bytes(preview.bytesReclaimed)}), and purge{' '}
                  {preview.uploadsPurged} abandoned uploads.
                </p>
                {(preview.manifests?.length ?? 0) + (preview.blobs?.length ?? 0) > 0 && (
                  <details>
                    <summary>What would go</summary>
                    <ul class="plain">
                      {(preview.manifests ?? []).map((m) => <li key={m}><code>{m}</code></li>)}
                      {(preview.blobs ?? []).map((b) => <li key={b}><code>{b}</code></li>)}
                    </ul>
                  </details>
                )}
              </div>
            )}
            {result && (
              <p class="report" data-testid="gc-result">
                Deleted {result.manifestsDeleted} manifests and {result.blobsDeleted} blobs, reclaimed {bytes(result.bytesReclaimed)} in {result.durationMs} ms.
              </p>
            )}
          </div>
          <h2>History</h2>
          {data.runs.length === 0 ? (
            <p class="muted">No GC or fsck run yet.</p>
          ) : (
            <div class="scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Trigger</th>
                    <th scope="col" class="num">Manifests</th>
                    <th scope="col" class="num">Blobs</th>
                    <th scope="col" class="num">Reclaimed</th>
                    <th scope="col" class="num">Uploads purged</th>
                    <th scope="col" class="num">Problems</th>
                    <th scope="col" class="num">Duration</th>
                  </tr>
                </thead>
                <tbody>
                  {data.runs.map((r) => (
                    <tr key={r.id}>
                      <th scope="row">{time(r.startedAt)}</th>
                      <td>{r.kind}</td>
                      <td>{r.trigger}</td>
                      <td class="num">{r.manifestsDeleted}</td>
                      <td class="num">{r.blobsDeleted}</td>
                      <td class="num">{bytes(r.bytesReclaimed)}</td>
                      <td class="num">{r.uploadsPurged}</td>
                      <td class="num">{r.problems}</td>
                      <td class="num">{r.durationMs} ms</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}

function Login({ message, onDone }: { message?: string; onDone: () => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <section aria-labelledby="page-title" class="login">
      <h1 id="page-title">Sign in</h1>
      <p class="muted">With your registry username and password.</p>
      {message && !error && <p role="status">{message}</p>}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          const f = new FormData(e.currentTarget as HTMLFormElement);
          setBusy(true);
          setError(undefined);
          try {
            await login(String(f.get('username')), String(f.get('password')));
            onDone();
          } catch (err) {
            setError((err as Error).message);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="username">Username</label>
        <input id="username" name="username" autoComplete="username" required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" required />
        {error && <p role="alert" class="error">{error}</p>}
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
    </section>
  );
}

// --- the app -------------------------------------------------------------------------

function App() {
  const [route, setR] = useState(current());
  const [session, setSession] = useState<Session>();
  const [loginMessage, setLoginMessage] = useState<string>();
  const [back, setBack] = useState<string>('/ui/');
  setRoute = setR;
  const refresh = () => api<Session>('session').then(setSession, () => setSession({ auth: true, tokenLogin: true, user: null, admin: false, deletes: false }));
  useEffect(() => {
    const pop = () => setR(current());
    addEventListener('popstate', pop);
    setUnauthorizedHandler((message) => {
      setLoginMessage(message);
      setBack(location.pathname + location.search);
      void refresh();
      go('/ui/login');
    });
    void refresh();
    return () => removeEventListener('popstate', pop);
  }, []);
  const first = useRef(true);
  useEffect(() => {
    // After a navigation, keyboard and screen-reader focus moves to the new view.
    if (first.current) first.current = false;
    else document.getElementById('main')?.focus();
  }, [route]);
  if (!session) return <p class="muted">Loading…</p>;

  const { path, params } = route;
  let page: preact.JSX.Element;
  let title = 'Repositories';
  if (path === 'login') {
    title = 'Sign in';
    page = <Login message={loginMessage} onDone={() => void refresh().then(() => go(back))} />;
  } else if (path === 'repository' && params.get('name')) {
    title = params.get('name')!;
    page = <Repository name={params.get('name')!} />;
  } else if (path === 'manifest' && params.get('repository') && params.get('reference')) {
    title = `${params.get('repository')} ${params.get('reference')}`;
    page = <Manifest repository={params.get('repository')!} reference={params.get('reference')!} />;
  } else if (path === 'storage') {
    title = 'Storage';
    page = <Storage session={session} />;
  } else if (path === 'lifecycle') {
    title = 'Lifecycle';
    page = <Lifecycle />;
  } else {
    page = <Repositories />;
  }
  document.title = `${title} · Berth`;
  const nav = [
    ['/ui/', 'Repositories', path === '' || path === 'repository' || path === 'manifest'],
    ['/ui/storage', 'Storage', path === 'storage'],
    ...(session.admin ? [['/ui/lifecycle', 'Lifecycle', path === 'lifecycle'] as const] : []),
  ] as const;
  return (
    <>
      <a href="#main" class="skip">Skip to content</a>
      <header>
        <Link href="/ui/" class="brand">Berth</Link>
        <nav aria-label="Main">
          {nav.map(([href, label, active]) => (
            <a
              key={href}
              href={href}
              aria-current={active ? 'page' : undefined}
              onClick={(e) => {
                e.preventDefault();
                go(href);
              }}
            >
              {label}
            </a>
          ))}
        </nav>
        <div class="user">
          {session.user ? (
            <>
              <span>{session.user}</span>
              <button
                type="button"
                class="small"
                onClick={() => {
                  logout();
                  void refresh().then(() => go('/ui/'));
                }}
              >
                Sign out
              </button>
            </>
          ) : session.auth && session.tokenLogin && path !== 'login' ? (
            <Link href="/ui/login">Sign in</Link>
          ) : null}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
