/**
 * Finding 5 of the security review: the time and connection limits are
 * explicit and the same whether auth is on or off (the server sockets are
 * built differently in the two modes). A slow request head is cut after
 * limits.headerTimeout, a stalled body after limits.idleTimeout, an upload
 * that keeps sending is never cut however long it takes, and one address
 * cannot hold more than limits.connectionsPerClient connections.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { bytes, randomBlob, withQuery } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw connection (TLS for an https:// address) that collects what the server sends and when it closes. */
function open(server: TestServer | string): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const url = new URL(typeof server === 'string' ? server : server.url);
  const { hostname, port } = url;
  return new Promise((resolve, reject) => {
    const socket =
      url.protocol === 'https:' ? tlsConnect({ host: hostname, port: Number(port), rejectUnauthorized: false }) : connect({ host: hostname, port: Number(port) });
    let data = '';
    const start = Date.now();
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('error', () => {});
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now() - start)));
    socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => resolve({ socket, received: () => data, closed }));
    socket.once('error', reject);
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`)))]);
}

for (const mode of ['auth off', 'auth on'] as const) {
  describe(`connection limits (${mode})`, () => {
    let server: TestServer;
    let authorization: string | undefined;
    const headers = (): Record<string, string> => (authorization ? { authorization } : {});

    before(async () => {
      const dir = authDir();
      let config = 'limits:\n  headerTimeout: 1s\n  idleTimeout: 1500ms\n  connectionsPerClient: 6\n';
      if (mode === 'auth on') {
        writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
        config += `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\n`;
        authorization = basic('alice', 'alice-pw');
      }
      writeFileSync(join(dir, 'berth.yaml'), config);
      server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    });
    after(async () => {
      assert.deepEqual(server.loggedErrors(), []);
      await server.stop();
    });

    it('answers 408 and closes a connection whose request head is still incomplete after the header timeout', async () => {
      const c = await open(server);
      c.socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
      // Slowloris: a header byte now and then, never the end of the head.
      const drip = setInterval(() => c.socket.writable && c.socket.write('X'), 200);
      try {
        const ms = await within(c.closed, 4000, 'slow head cut');
        assert.ok(ms >= 900, `cut after ${ms} ms, before the 1 s limit`);
        assert.match(c.received(), /^HTTP\/1\.1 408 /);
      } finally {
        clearInterval(drip);
      }
    });

    it('closes a request whose body stalls for the idle timeout; the upload keeps its acknowledged bytes', async () => {
      const start = await fetch(`${server.url}/v2/idle/app/blobs/uploads/`, { method: 'POST', headers: headers() });
      assert.equal(start.status, 202);
      const location = start.headers.get('location')!;
      const c = await open(server);
      c.socket.write(
        `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n` +
          (authorization ? `Authorization: ${authorization}\r\n` : '') +
          '\r\n' +
          'x'.repeat(100),
      );
      const ms = await within(c.closed, 5000, 'stalled body cut');
      assert.ok(ms >= 1400, `cut after ${ms} ms, before the 1.5 s limit`);
      const status = await fetch(`${server.url}${location}`, { headers: headers() });
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), '0-0', 'nothing of the cut body was acknowledged');
    });

    it('never cuts an upload that keeps sending, for many times the idle timeout', async () => {
      const b = randomBlob(17 * 4096);
      const start = await fetch(`${server.url}/v2/slow/app/blobs/uploads/`, { method: 'POST', headers: headers() });
      const location = start.headers.get('location')!;
      const c = await open(server);
      c.socket.write(
        `PUT ${withQuery(location, `digest=${b.digest}`)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${b.data.length}\r\n` +
          (authorization ? `Authorization: ${authorization}\r\n` : '') +
          '\r\n',
      );
      // 17 pieces, one every 300 ms: about 5 s in all, against an idle limit of 1.5 s.
      for (let i = 0; i < 17; i++) {
        await sleep(300);
        assert.ok(!c.socket.destroyed, `cut after ${i} pieces`);
        c.socket.write(b.data.subarray(i * 4096, (i + 1) * 4096));
      }
      await within(
        (async () => {
          while (!/\r\n\r\n/.test(c.received())) await sleep(20);
        })(),
        5000,
        'answer',
      );
      assert.match(c.received(), /^HTTP\/1\.1 201 /);
      c.socket.destroy();
      assert.equal((await fetch(`${server.url}/v2/slow/app/blobs/${b.digest}`, { method: 'HEAD', headers: headers() })).status, 200);
    });

    it('does not cut a response the client reads slowly (the idle limit is for request bodies)', async () => {
      const b = randomBlob(4 * 1024 * 1024);
      const pushed = await fetch(`${server.url}/v2/download/app/blobs/uploads/?digest=${b.digest}`, {
        method: 'POST',
        body: bytes(b.data),
        headers: { ...headers(), 'content-type': 'application/octet-stream' },
      });
      assert.equal(pushed.status, 201);
      const c = await open(server);
      c.socket.write(`GET /v2/download/app/blobs/${b.digest} HTTP/1.1\r\nHost: x\r\n` + (authorization ? `Authorization: ${authorization}\r\n` : '') + '\r\n');
      await sleep(100);
      c.socket.pause(); // the client stops reading: the server's writes stall
      await sleep(2500);
      assert.ok(!c.socket.destroyed, 'the stalled download was cut');
      c.socket.resume();
      await within(
        (async () => {
          while (Buffer.byteLength(c.received(), 'latin1') < b.data.length) await sleep(20);
        })(),
        10000,
        'the whole blob',
      );
      c.socket.destroy();
    });

    it('refuses connections over the per-client cap with 429, and accepts again when one closes', async () => {
      // Keep-alive connections that made a request and stay open (the head
      // timeout does not apply between requests). fetch's own pooled
      // connections of the earlier tests count too, so open until refused.
      const held: Awaited<ReturnType<typeof open>>[] = [];
      let refused: Awaited<ReturnType<typeof open>> | undefined;
      for (let i = 0; i < 7 && !refused; i++) {
        const c = await open(server);
        c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        await within(
          (async () => {
            while (!/\r\n\r\n/.test(c.received())) await sleep(10);
          })(),
          3000,
          'answer',
        );
        if (/^HTTP\/1\.1 429 /.test(c.received())) refused = c;
        else {
          assert.match(c.received(), /^HTTP\/1\.1 200 /);
          held.push(c);
        }
      }
      assert.ok(refused, 'a 7th connection from one address was accepted with a cap of 6');
      assert.ok(held.length <= 6);
      assert.match(refused.received(), /TOOMANYREQUESTS/);
      assert.match(refused.received(), /Retry-After: 1/i);
      await within(refused.closed, 4000, 'refused connection closed');
      held.pop()!.socket.destroy();
      await sleep(200);
      const again = await open(server);
      again.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await within(again.closed, 3000, 'answer');
      assert.match(again.received(), /^HTTP\/1\.1 200 /);
      for (const c of held) c.socket.destroy();
    });
  });
}

describe('connection limits over TLS and on the plain listener beside it', () => {
  let server: TestServer;
  let https: string;
  let plain: string;
  const authorization = basic('alice', 'alice-pw');

  before(async () => {
    const dir = authDir();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt')], { stdio: 'ignore' });
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
    writeFileSync(
      join(dir, 'berth.yaml'),
      `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\ntls:\n  cert: ${join(dir, 'tls.crt')}\n  key: ${join(dir, 'tls.key')}\n  plainAddr: 127.0.0.1:0\n` +
        'limits:\n  headerTimeout: 1s\n  idleTimeout: 1500ms\n  connectionsPerClient: 3\n',
    );
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    https = server.url.replace(/^http:/, 'https:');
    plain = `http://${/"plainAddr":"([^"]+)"/.exec(server.output())![1]}`;
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  for (const which of ['https', 'plain'] as const) {
    it(`cuts a slow request head (${which})`, async () => {
      const c = await open(which === 'https' ? https : plain);
      c.socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => c.socket.writable && c.socket.write('X'), 200);
      try {
        const ms = await within(c.closed, 4000, 'slow head cut');
        assert.ok(ms >= 900, `cut after ${ms} ms`);
        assert.match(c.received(), /^HTTP\/1\.1 408 /);
      } finally {
        clearInterval(drip);
      }
    });
  }

  it('does not cut a body that keeps coming over TLS, and cuts one that stalls', async () => {
    const c = await open(https);
    c.socket.write(`POST /v2/tls/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: ${authorization}\r\nContent-Length: 0\r\n\r\n`);
    await within((async () => { while (!/\r\n\r\n/.test(c.received())) await sleep(10); })(), 3000, 'answer');
    const location = /location: (\S+)/i.exec(c.received())![1]!;
    c.socket.destroy();
    const b = randomBlob(10 * 1024);
    const t = await open(https);
    t.socket.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nAuthorization: ${authorization}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${b.data.length + 100}\r\n\r\n`);
    for (let i = 0; i < 10; i++) {
      await sleep(300);
      assert.ok(!t.socket.destroyed, `cut after ${i} pieces`);
      t.socket.write(b.data.subarray(i * 1024, (i + 1) * 1024));
    }
    // …then the last 100 bytes never come.
    const ms = await within(t.closed, 5000, 'stalled body cut');
    assert.ok(ms >= 3900, `cut after ${ms} ms, while bytes still came`);
  });

  it('closes TLS connections over the per-client cap before the handshake', async () => {
    const held: Awaited<ReturnType<typeof open>>[] = [];
    let refused = false;
    for (let i = 0; i < 4 && !refused; i++) {
      try {
        held.push(await within(open(https), 3000, 'handshake'));
      } catch {
        refused = true;
      }
    }
    assert.ok(refused, 'a 4th TLS connection was accepted with a cap of 3');
    for (const c of held) c.socket.destroy();
  });
});
