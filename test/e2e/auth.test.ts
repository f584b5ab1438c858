/**
 * Real clients against Berth with token authentication: `docker login`, push
 * and pull as a writer; a read-only user's `docker push` refused; anonymous
 * pull of a public repository (and refusal of a private one); skopeo with
 * --creds; podman login, push and pull.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { dockerRemoveImages, makeDockerArchive, makeOciLayout, podmanEnv, requireClient, run, uniqueName } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';

const USERS = { writer: 'writer-secret-1', reader: 'reader-secret-2' };

describe('auth with real clients', () => {
  let server: TestServer | undefined;
  let work: string;
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-auth-'));
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), USERS);
    writeFileSync(
      join(dir, 'berth.yaml'),
      `auth:
  htpasswd: ${join(dir, 'htpasswd')}
  rules:
    - { repositories: ["**"], users: [writer], actions: [pull, push, delete] }
    - { repositories: ["**"], users: [reader], actions: [pull] }
    - { repositories: ["public/**"], anonymous: true, actions: [pull] }
`,
    );
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    await dockerRemoveImages(images).catch(() => {});
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const tagsOf = async (repo: string): Promise<string[]> => {
    const res = await fetch(`${server!.url}/v2/${repo}/tags/list`, { headers: { authorization: basic('writer', USERS.writer) } });
    return res.status === 200 ? ((await res.json()) as { tags: string[] }).tags : [];
  };

  it('docker: login, push, pull; a reader cannot push; anonymous pulls only public repositories', async (t) => {
    if (!requireClient(t, 'docker')) return;
    const s = server!;
    const writerConf = mkdtempSync(join(work, 'docker-writer-'));
    const readerConf = mkdtempSync(join(work, 'docker-reader-'));
    const anonConf = mkdtempSync(join(work, 'docker-anon-'));
    const docker = (conf: string, args: string[], allowFailure = false) => run('docker', args, { env: { DOCKER_CONFIG: conf }, allowFailure, input: args[0] === 'login' ? (conf === writerConf ? USERS.writer : conf === readerConf ? USERS.reader : 'wrong') : undefined });

    const bad = await docker(anonConf, ['login', '-u', 'writer', '--password-stdin', s.host], true);
    assert.notEqual(bad.code, 0, 'a wrong password does not log in');
    const login = await docker(writerConf, ['login', '-u', 'writer', '--password-stdin', s.host]);
    assert.match(login.stdout, /Login Succeeded/);
    await docker(readerConf, ['login', '-u', 'reader', '--password-stdin', s.host]);

    const nonce = uniqueName();
    const local = `berth-e2e/${uniqueName('auth')}:loaded`;
    const priv = `${s.host}/private/${uniqueName('app')}:v1`;
    const pub = `${s.host}/public/${uniqueName('app')}:v1`;
    images.push(local, priv, pub);
    const archive = await makeDockerArchive(join(work, 'image.tar'), { layers: [`one ${nonce}\n`, { path: 'etc/two', content: `two ${nonce}\n` }], repoTags: [local] });
    await run('docker', ['load', '-i', archive.file]);
    for (const ref of [priv, pub]) {
      await run('docker', ['tag', local, ref]);
      const push = await docker(writerConf, ['push', ref]);
      assert.match(push.stdout, /v1: digest: sha256:/, push.stdout);
    }

    // A read-only user's push is refused and leaves no tag.
    const denied = `${priv.replace(/:v1$/, '')}:from-reader`;
    images.push(denied);
    await run('docker', ['tag', local, denied]);
    const refused = await docker(readerConf, ['push', denied], true);
    assert.notEqual(refused.code, 0, `reader push must fail:\n${refused.stdout}`);
    assert.match(refused.stderr + refused.stdout, /denied|unauthorized/i);
    assert.deepEqual(await tagsOf(priv.slice(s.host.length + 1).replace(/:v1$/, '')), ['v1'], 'no tag from the reader');

    // Pull back as the reader, with every local copy gone.
    await run('docker', ['rmi', '-f', local, priv, pub, denied]);
    await docker(readerConf, ['pull', priv]);
    const id = (await run('docker', ['image', 'inspect', '-f', '{{.Id}}', priv])).stdout.trim();
    assert.equal(id, archive.imageId, 'the pulled image is the one pushed');

    // Anonymous: the public repository pulls, the private one does not.
    await run('docker', ['rmi', '-f', priv]);
    await docker(anonConf, ['pull', pub]);
    const anonPrivate = await docker(anonConf, ['pull', priv], true);
    assert.notEqual(anonPrivate.code, 0, 'anonymous pull of a private repository fails');
    assert.doesNotMatch(s.output(), new RegExp(`${USERS.writer}|${USERS.reader}`), 'no password in the logs');
  });

  it('skopeo with --creds: copy in as writer, inspect as reader, refused as reader, anonymous only for public', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const s = server!;
    const env = podmanEnv();
    const repo = `team/${uniqueName('skopeo')}`;
    const layout = await makeOciLayout(join(work, 'skopeo-src'), { layers: [`skopeo ${uniqueName()}\n`], tag: 'v1' });
    await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `writer:${USERS.writer}`, layout.ref, `docker://${s.host}/${repo}:v1`], { env });
    const inspect = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `reader:${USERS.reader}`, `docker://${s.host}/${repo}:v1`], { env });
    assert.ok(inspect.stdout.includes('"schemaVersion"'));
    const refused = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `reader:${USERS.reader}`, layout.ref, `docker://${s.host}/${repo}:reader`], { env, allowFailure: true });
    assert.notEqual(refused.code, 0, 'the reader cannot push');
    assert.deepEqual(await tagsOf(repo), ['v1']);
    const wrong = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', 'reader:wrong', `docker://${s.host}/${repo}:v1`], { env, allowFailure: true });
    assert.notEqual(wrong.code, 0, 'a wrong password is refused');
    const anon = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--no-creds', `docker://${s.host}/${repo}:v1`], { env, allowFailure: true });
    assert.notEqual(anon.code, 0, 'anonymous cannot read team/*');
    const pubRepo = `public/${uniqueName('skopeo')}`;
    await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `writer:${USERS.writer}`, layout.ref, `docker://${s.host}/${pubRepo}:v1`], { env });
    await run('skopeo', ['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${s.host}/${pubRepo}:v1`, `oci:${join(work, 'skopeo-out')}:v1`], { env });
  });

  it('podman: login, push, pull back', async (t) => {
    if (!requireClient(t, 'podman')) return;
    const s = server!;
    const auth = join(work, 'podman-auth.json');
    const env = { ...podmanEnv(), REGISTRY_AUTH_FILE: auth };
    const ref = `${s.host}/team/${uniqueName('podman')}:v1`;
    const archive = await makeDockerArchive(join(work, 'podman.tar'), { layers: [`podman ${uniqueName()}\n`], repoTags: [ref] });
    await run('podman', ['load', '-i', archive.file], { env });
    await run('podman', ['login', '--tls-verify=false', '-u', 'writer', '--password-stdin', s.host], { env, input: USERS.writer });
    await run('podman', ['push', '--tls-verify=false', ref], { env });
    await run('podman', ['rmi', '-f', ref], { env });
    await run('podman', ['pull', '--tls-verify=false', ref], { env });
    await run('podman', ['rmi', '-f', ref], { env, allowFailure: true });
    await run('podman', ['logout', s.host], { env, allowFailure: true });
    const anon = await run('podman', ['pull', '--tls-verify=false', ref], { env, allowFailure: true });
    assert.notEqual(anon.code, 0, 'anonymous pull of team/* fails');
  });
});
