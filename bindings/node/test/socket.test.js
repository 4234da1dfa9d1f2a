'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const net = require('node:net');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const libsock = require('..');

test('echo: server and 100 concurrent clients on libsock, every stream checksummed', async () => {
  const server = libsock.listen('127.0.0.1:0');
  const address = server.localAddress();
  const N = 100;
  const serve = async (conn) => {
    try {
      for (;;) {
        const data = await conn.recv(65536);
        if (data.length === 0) break;
        await conn.sendAll(data);
      }
      await conn.shutdown();
    } finally {
      conn.close();
    }
  };
  const acceptor = (async () => {
    const handlers = [];
    for (let i = 0; i < N; i++) handlers.push(serve(await server.accept()));
    await Promise.all(handlers);
  })();
  const client = async (i) => {
    const data = crypto.randomBytes(1 + crypto.randomInt(256 * 1024));
    const s = await libsock.connect(address);
    try {
      const receiver = (async () => {  // read while writing: no deadlock on full buffers
        const hash = crypto.createHash('sha256');
        let n = 0;
        for (;;) {
          const chunk = await s.recv(65536);
          if (chunk.length === 0) return [hash.digest('hex'), n];
          hash.update(chunk);
          n += chunk.length;
        }
      })();
      assert.strictEqual(await s.sendAll(data), data.length);
      await s.shutdown();
      const [digest, n] = await receiver;
      assert.strictEqual(n, data.length, `client ${i}`);
      assert.strictEqual(digest, crypto.createHash('sha256').update(data).digest('hex'), `client ${i}`);
      return n;
    } finally {
      s.close();
    }
  };
  const sizes = await Promise.all(Array.from({ length: N }, (_, i) => client(i)));
  await acceptor;
  server.close();
  assert.ok(sizes.reduce((a, b) => a + b) > N * 64 * 1024);
  assert.strictEqual(libsock.pendingCount(), 0);
});

test('handles are bigint', async () => {
  const server = libsock.listen('127.0.0.1:0');
  const accepted = server.accept();
  const client = await libsock.connect(server.localAddress());
  const conn = await accepted;
  for (const s of [server, client, conn]) assert.strictEqual(typeof s.handle, 'bigint');
  assert.notStrictEqual(conn.handle, client.handle);
  for (const s of [server, client, conn]) s.close();
});

test('errors are Error objects with .status and .name', async () => {
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));  // nobody listens there now
  await assert.rejects(libsock.connect(`127.0.0.1:${port}`), (e) => {
    assert.ok(e instanceof Error && e instanceof libsock.SockError);
    assert.strictEqual(e.status, 10061);
    assert.strictEqual(e.name, 'SOCK_CONNECTION_REFUSED');
    return true;
  });
  const s = new libsock.Socket();
  s.close();
  await assert.rejects(s.recv(10), { status: libsock.Status.NOT_SOCKET, name: 'SOCK_NOT_SOCKET' });
});

test('recv: data, then an empty Buffer at end of stream; a Node net peer sees sendAll and shutdown', async () => {
  const got = [];
  let onPeer;
  const peerSocket = new Promise((resolve) => { onPeer = resolve; });
  const srv = net.createServer((c) => { srv.close(); onPeer(c); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const s = await libsock.connect(`127.0.0.1:${srv.address().port}`);
  const peer = await peerSocket;
  peer.on('data', (d) => got.push(d));
  const ended = new Promise((r) => peer.on('end', r));
  peer.write('hello');
  assert.strictEqual((await s.recv(100)).toString(), 'hello');
  await s.sendAll(Buffer.from('small'));
  const big = crypto.randomBytes(1 << 20);
  await s.sendAll(big);
  await s.shutdown();
  await ended;
  assert.ok(Buffer.concat(got).equals(Buffer.concat([Buffer.from('small'), big])));
  peer.end();
  assert.strictEqual((await s.recv(100)).length, 0);
  s.close();
});

test('close with operations pending rejects them with SOCK_OPERATION_ABORTED', async () => {
  const server = libsock.listen('127.0.0.1:0');
  const accept = server.accept();
  server.close();
  await assert.rejects(accept, { name: 'SOCK_OPERATION_ABORTED', status: 995 });
  assert.strictEqual(libsock.pendingCount(), 0);
});

test('cancelSends rejects a pending sendAll with the bytes that went (.sent)', async () => {
  const server = libsock.listen('127.0.0.1:0');
  const accepted = server.accept();
  const s = await libsock.connect(server.localAddress());
  const conn = await accepted;
  s.setOption(5 /* SEND_BUFFER_SIZE */, 4096);
  const sending = s.sendAll(Buffer.alloc(16 << 20, 1));
  await new Promise((r) => setTimeout(r, 50));
  s.cancelSends();
  await assert.rejects(sending, (e) => {
    assert.strictEqual(e.name, 'SOCK_OPERATION_ABORTED');
    assert.ok(Number.isInteger(e.sent) && e.sent >= 0 && e.sent < 16 << 20, `sent ${e.sent}`);
    return true;
  });
  for (const x of [s, conn, server]) x.close();
});

const CHILD = `
  const libsock = require(process.argv[1]);
  const mode = process.argv[2];
  (async () => {
    const server = libsock.listen('127.0.0.1:0');
    const accepted = server.accept();
    const s = await libsock.connect(server.localAddress());
    const conn = await accepted;
    if (mode === 'pending') {
      // Only a pending receive keeps the loop alive; the data comes from a
      // thread of the library's own making: none. So the peer sends after a
      // timer that is unref'd (it does not keep the loop alive by itself).
      setTimeout(() => conn.sendAll(Buffer.from('late')), 300).unref();
      const d = await s.recv(10);
      console.log('got ' + d.toString());
    } else {
      console.log('idle');
    }
    // The sockets stay open: open sockets alone keep nothing alive.
  })();
`;

test('the event loop stays alive while an operation is pending, and only then', () => {
  const pkg = path.join(__dirname, '..');
  const started = Date.now();
  const a = spawnSync(process.execPath, ['-e', CHILD, pkg, 'pending'], { encoding: 'utf8', timeout: 10000 });
  assert.strictEqual(a.status, 0, a.stderr);
  assert.strictEqual(a.stdout.trim(), 'got late');
  assert.ok(Date.now() - started >= 300);
  const b = spawnSync(process.execPath, ['-e', CHILD, pkg, 'idle'], { encoding: 'utf8', timeout: 10000 });
  assert.strictEqual(b.status, 0, b.stderr);
  assert.strictEqual(b.stdout.trim(), 'idle');
});

test('Status matches include/sock.h', { skip: !fs.existsSync(path.join(__dirname, '..', '..', '..', 'include', 'sock.h')) }, () => {
  const header = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'include', 'sock.h'), 'utf8');
  const defines = new Map([...header.matchAll(/^#define SOCK_(\w+) (-?\d+)\s*$/gm)].map((m) => [m[1], Number(m[2])]));
  const statusNames = [...defines.keys()].filter((k) => !/^(OPT_|FAMILY_|TYPE_|SHUT_|MSG_|VERSION_|OP_|ENGINE_MAX|ADDRESS_MAX|LINGER_MS_MAX|INVALID_HANDLE)/.test(k));
  assert.deepStrictEqual(Object.keys(libsock.Status).sort(), statusNames.sort());
  for (const [k, v] of Object.entries(libsock.Status)) assert.strictEqual(defines.get(k), v, k);
  for (const [k, v] of Object.entries(libsock.Op)) assert.strictEqual(defines.get('OP_' + k), v, k);
  assert.strictEqual(libsock.version(), `${defines.get('VERSION_MAJOR')}.${defines.get('VERSION_MINOR')}.${defines.get('VERSION_PATCH')}`);
});
