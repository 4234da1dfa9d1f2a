'use strict';
// libsock for Node.js, over a completion queue (see README.md).
//
// One queue engine per process (made with the first socket). Its entries
// are taken by sock_engine_dequeue called through koffi's async call, which
// runs it on a libuv worker thread; koffi then calls us back on the JS
// thread, where the entries settle Promises. No thread of libsock ever
// calls into JavaScript. An outstanding dequeue exists only while an
// operation is pending: that is what keeps the event loop alive, and only
// then.

const koffi = require('koffi');
const fs = require('fs');
const path = require('path');

function libraryPath() {
  if (process.env.LIBSOCK_PATH) return process.env.LIBSOCK_PATH;
  const inTree = path.join(__dirname, '..', '..', 'target', 'release', 'libsock.so');
  return fs.existsSync(inTree) ? inTree : 'libsock.so';
}

const lib = koffi.load(libraryPath());

const C = {
  socket: lib.func('int32_t sock_socket(int32_t family, int32_t type, _Out_ uint64_t *out)'),
  bind: lib.func('int32_t sock_bind(uint64_t h, const char *address)'),
  listen: lib.func('int32_t sock_listen(uint64_t h, int32_t backlog)'),
  close: lib.func('int32_t sock_close(uint64_t h)'),
  attach: lib.func('int32_t sock_attach(uint64_t h, void *e)'),
  localAddress: lib.func('int32_t sock_local_address(uint64_t h, _Out_ uint8_t *buf, size_t cap, _Out_ size_t *len)'),
  peerAddress: lib.func('int32_t sock_peer_address(uint64_t h, _Out_ uint8_t *buf, size_t cap, _Out_ size_t *len)'),
  setOption: lib.func('int32_t sock_set_option(uint64_t h, int32_t option, int64_t value)'),
  getOption: lib.func('int32_t sock_get_option(uint64_t h, int32_t option, _Out_ int64_t *value)'),
  // Async calls: callbacks are NULL on a queue engine; user_data is an integer id.
  connectAsync: lib.func('int32_t sock_connect_async(uint64_t h, void *address, void *cb, uintptr_t ud)'),
  acceptAsync: lib.func('int32_t sock_accept_async(uint64_t h, void *cb, uintptr_t ud, _Out_ uint64_t *now)'),
  sendAsync: lib.func('int32_t sock_send_async(uint64_t h, void *buf, size_t len, int32_t flags, void *cb, uintptr_t ud, _Out_ size_t *now)'),
  recvAsync: lib.func('int32_t sock_recv_async(uint64_t h, void *buf, size_t cap, int32_t flags, void *cb, uintptr_t ud, _Out_ size_t *now)'),
  shutdownAsync: lib.func('int32_t sock_shutdown_async(uint64_t h, void *cb, uintptr_t ud)'),
  cancelSends: lib.func('int32_t sock_cancel_sends(uint64_t h)'),
  engineNewQueue: lib.func('int32_t sock_engine_new_queue(_Out_ void **out)'),
  engineFree: lib.func('int32_t sock_engine_free(void *e)'),
  dequeue: lib.func('int32_t sock_engine_dequeue(void *e, void *out, size_t max, int32_t timeout_ms, void *count)'),
  cleanup: lib.func('int32_t sock_cleanup(void)'),
  // const char * results are copied into JS strings; koffi never frees them
  // (they are the library's static strings).
  strerror: lib.func('const char *sock_strerror(int32_t status)'),
  version: lib.func('const char *sock_version(void)'),
};

// --- statuses and errors ---------------------------------------------------

const Status = Object.freeze({
  OK: 0, SOCKET_ERROR: -1, OPERATION_ABORTED: 995, IO_PENDING: 997, INTERRUPTED: 10004,
  ACCESS_DENIED: 10013, FAULT: 10014, INVALID_ARGUMENT: 10022, TOO_MANY_OPEN_SOCKETS: 10024,
  WOULD_BLOCK: 10035, IN_PROGRESS: 10036, ALREADY_IN_PROGRESS: 10037, NOT_SOCKET: 10038,
  DESTINATION_ADDRESS_REQUIRED: 10039, MESSAGE_SIZE: 10040, PROTOCOL_TYPE: 10041,
  PROTOCOL_OPTION: 10042, PROTOCOL_NOT_SUPPORTED: 10043, SOCKET_NOT_SUPPORTED: 10044,
  OPERATION_NOT_SUPPORTED: 10045, PROTOCOL_FAMILY_NOT_SUPPORTED: 10046,
  ADDRESS_FAMILY_NOT_SUPPORTED: 10047, ADDRESS_ALREADY_IN_USE: 10048, ADDRESS_NOT_AVAILABLE: 10049,
  NETWORK_DOWN: 10050, NETWORK_UNREACHABLE: 10051, NETWORK_RESET: 10052, CONNECTION_ABORTED: 10053,
  CONNECTION_RESET: 10054, NO_BUFFER_SPACE: 10055, IS_CONNECTED: 10056, NOT_CONNECTED: 10057,
  SHUTDOWN: 10058, TIMED_OUT: 10060, CONNECTION_REFUSED: 10061, HOST_DOWN: 10064,
  HOST_UNREACHABLE: 10065, DISCONNECTING: 10101, HOST_NOT_FOUND: 11001, TRY_AGAIN: 11002,
  NO_DATA: 11004,
});
const NAMES = new Map(Object.entries(Status).map(([k, v]) => [v, 'SOCK_' + k]));
const Family = Object.freeze({ inet: 1, inet6: 2, unix: 3 });
const Type = Object.freeze({ stream: 1, dgram: 2 });
const Op = Object.freeze({ SEND: 1, RECV: 2, CONNECT: 3, ACCEPT: 4, SHUTDOWN: 5, SEND_TO: 6, RECV_FROM: 7 });

/** A failed libsock call: `.status` (the sock_status number), `.name` ("SOCK_..."). */
class SockError extends Error {
  constructor(status, extra = {}) {
    const name = NAMES.get(status) || `SOCK_UNKNOWN_${status}`;
    super(`[${name} ${status}] ${C.strerror(status)}` +
          (extra.sent !== undefined ? ` (${extra.sent} bytes sent)` : ''));
    this.status = status;
    this.name = name;
    if (extra.sent !== undefined) this.sent = extra.sent;
  }
}

function check(status, extra) {
  if (status !== Status.OK) throw new SockError(status, extra);
}

// --- the queue engine and its pump ---------------------------------------------

const ENTRY_SIZE = 40;   // struct sock_completion on LP64, checked below
const BATCH = 64;
const DEQUEUE_TIMEOUT_MS = 1000;
{
  const entry = koffi.struct('sock_completion', {
    handle: 'uint64_t', operation: 'int32_t', status: 'int32_t', bytes: 'size_t',
    accepted: 'uint64_t', user_data: 'void *',
  });
  const offsets = ['handle', 'operation', 'status', 'bytes', 'accepted', 'user_data'].map((f) => koffi.offsetof(entry, f));
  if (koffi.sizeof(entry) !== ENTRY_SIZE || offsets.join() !== '0,8,12,16,24,32') {
    throw new Error('libsock: unexpected struct sock_completion layout on this platform');
  }
}

/** Unmanaged memory: C may write it after the call returns; freed explicitly. */
class Native {
  constructor(size) {
    this.size = Math.max(1, size);
    this.ptr = koffi.alloc('uint8_t', this.size);
    this.view = new DataView(koffi.view(this.ptr, this.size));
  }
  bytes(n) { return Buffer.from(new Uint8Array(this.view.buffer, 0, n)); }  // a copy
  free() { if (this.ptr !== null) { koffi.free(this.ptr); this.ptr = null; } }
}

let engine = null;          // the sock_engine * (a bigint), or null
let pumping = false;        // an async dequeue is outstanding
let asyncBlock = null;      // entries + count of the outstanding dequeue
const ops = new Map();      // id -> pending operation
const sockets = new Set();  // open sockets
let nextId = 1;

function theEngine() {
  if (engine === null) {
    const out = [null];
    check(C.engineNewQueue(out));
    engine = out[0];
  }
  return engine;
}

function register(kind, sock, keep) {
  const op = { id: nextId++, kind, sock, keep, resolve: null, reject: null, promise: null };
  op.promise = new Promise((resolve, reject) => { op.resolve = resolve; op.reject = reject; });
  ops.set(op.id, op);
  return op;
}

function unregister(op) {
  ops.delete(op.id);
  release(op);
}

function release(op) {
  for (const k of op.keep || []) if (k instanceof Native) k.free();
  op.keep = null;
}

function dispatch(kind, status, bytes, accepted, id) {
  const op = ops.get(id);
  if (op === undefined) {
    if (accepted) C.close(accepted);  // never leak a connection
    return;
  }
  ops.delete(id);
  if (op.kind === Op.ACCEPT && accepted && op.sock.closed) {
    C.close(accepted);
    accepted = 0n;
    status = Status.OPERATION_ABORTED;
  }
  const keep = op.keep;
  op.keep = null;
  op.resolve({ status, bytes, accepted, keep });
}

function readEntries(block, count) {
  const v = block.view;
  for (let i = 0; i < count; i++) {
    const o = i * ENTRY_SIZE;
    dispatch(v.getInt32(o + 8, true), v.getInt32(o + 12, true), Number(v.getBigUint64(o + 16, true)),
             v.getBigUint64(o + 24, true), Number(v.getBigUint64(o + 32, true)));
  }
}

// Starts a dequeue off the JS thread when operations are pending and none is
// outstanding. Its callback runs on the JS thread.
function pump() {
  if (pumping || ops.size === 0 || engine === null) return;
  pumping = true;
  const e = engine;
  const block = asyncBlock || (asyncBlock = new Native(BATCH * ENTRY_SIZE + 8));
  const countPtr = block.ptr + BigInt(BATCH * ENTRY_SIZE);
  C.dequeue.async(e, block.ptr, BATCH, DEQUEUE_TIMEOUT_MS, countPtr, (err, status) => {
    pumping = false;
    if (err) {  // a koffi failure: settle everything rather than hang
      for (const op of [...ops.values()]) { ops.delete(op.id); release(op); op.reject(err); }
      return;
    }
    if (status === Status.OK) readEntries(block, Number(block.view.getBigUint64(BATCH * ENTRY_SIZE, true)));
    if (e !== engine && block !== asyncBlock) block.free();  // the engine was freed by cleanup()
    pump();
  });
}

async function complete(op) {
  pump();
  return op.promise;
}

// --- sockets -----------------------------------------------------------------------

function addressText(address) {
  if (typeof address === 'string') return address;
  if (address && typeof address === 'object' && 'port' in address) {
    const host = address.host || '127.0.0.1';
    return host.includes(':') && !host.startsWith('[') ? `[${host}]:${address.port}` : `${host}:${address.port}`;
  }
  throw new TypeError(`address must be "host:port" text or {host, port}, not ${address}`);
}

function familyOf(text) {
  if (text.startsWith('unix:')) return 'unix';
  return text.startsWith('[') ? 'inet6' : 'inet';
}

function cString(text) {
  const bytes = Buffer.from(text + '\0', 'utf8');
  const n = new Native(bytes.length);
  bytes.copy(Buffer.from(n.view.buffer));
  return n;
}

const COPY_BELOW = 4096;  // small sends are copied into unmanaged memory

class Socket {
  /** new Socket('inet' | 'inet6' | 'unix', 'stream' | 'dgram'), on the process's queue engine. */
  constructor(family = 'inet', type = 'stream', handle = null) {
    this.closed = true;
    this.family = family;
    this.type = type;
    if (handle === null) {
      const f = Family[family];
      const t = Type[type];
      if (!f || !t) throw new TypeError(`unknown family or type: ${family} ${type}`);
      const out = [0];
      check(C.socket(f, t, out));
      handle = BigInt(out[0]);
      const status = C.attach(handle, theEngine());
      if (status !== Status.OK) { C.close(handle); check(status); }
    }
    /** The sock_handle, a bigint (exact above 2^53). */
    this.handle = handle;
    this.closed = false;
    this._recv = null;  // a receive that is pending
    sockets.add(this);
  }

  bind(address) { check(C.bind(this.handle, addressText(address))); }
  listen(backlog = 128) { check(C.listen(this.handle, backlog)); }
  setOption(option, value) { check(C.setOption(this.handle, option, value)); }
  getOption(option) { const v = [0]; check(C.getOption(this.handle, option, v)); return Number(v[0]); }
  localAddress() { return this._address(C.localAddress); }
  peerAddress() { return this._address(C.peerAddress); }

  _address(fn) {
    const buf = Buffer.alloc(128);
    const len = [0];
    check(fn(this.handle, buf, buf.length, len));
    return buf.subarray(0, Number(len[0]) - 1).toString();
  }

  /** sock_close; idempotent. Pending operations reject with SOCK_OPERATION_ABORTED. */
  close() {
    if (this.closed) return;
    this.closed = true;
    sockets.delete(this);
    C.close(this.handle);
  }

  /** sock_connect_async. */
  async connect(address) {
    const text = cString(addressText(address));  // kept until the entry, whatever the library does with it
    const op = register(Op.CONNECT, this, [text]);
    const status = C.connectAsync(this.handle, text.ptr, null, op.id);
    if (status !== Status.IO_PENDING) { unregister(op); check(status); return; }
    const r = await complete(op);
    release({ keep: r.keep });
    check(r.status);
  }

  /** sock_accept_async: the next connection, a Socket on the same engine. */
  async accept() {
    const op = register(Op.ACCEPT, this, []);
    const now = [0];
    const status = C.acceptAsync(this.handle, null, op.id, now);
    if (status !== Status.IO_PENDING) {
      unregister(op);
      check(status);
      return new Socket(this.family, this.type, BigInt(now[0]));
    }
    const r = await complete(op);
    check(r.status);
    return new Socket(this.family, this.type, r.accepted);
  }

  /**
   * sock_send_async of the whole buffer. The buffer is referenced (and, below
   * 4 KiB, copied) until the entry arrives: do not change, transfer or resize
   * it meanwhile. Resolves to the byte count; a failure carries `.sent`.
   */
  async sendAll(data) {
    if (typeof data === 'string') data = Buffer.from(data);
    if (!ArrayBuffer.isView(data)) throw new TypeError('sendAll needs a Buffer or a TypedArray');
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let ptr;
    let keep;
    if (bytes.length < COPY_BELOW) {
      const n = new Native(bytes.length);
      new Uint8Array(n.view.buffer, 0, bytes.length).set(bytes);
      ptr = n.ptr;
      keep = [n];
    } else {
      ptr = koffi.address(bytes);
      keep = [data, bytes];  // the JS buffer stays referenced until the entry
    }
    const op = register(Op.SEND, this, keep);
    const now = [0];
    const status = C.sendAsync(this.handle, ptr, bytes.length, 0, null, op.id, now);
    if (status !== Status.IO_PENDING) {
      unregister(op);
      check(status, { sent: Number(now[0]) });
      return Number(now[0]);
    }
    const r = await complete(op);
    release({ keep: r.keep });
    check(r.status, { sent: r.bytes });
    return r.bytes;
  }

  /** sock_recv_async: 1 to `n` bytes in a new Buffer; an empty Buffer at end of stream. */
  async recv(n = 65536) {
    if (this._recv) throw new Error('recv() called while another recv() is pending on this socket');
    const buf = new Native(n);
    const op = register(Op.RECV, this, [buf]);
    const now = [0];
    const status = C.recvAsync(this.handle, buf.ptr, n, 0, null, op.id, now);
    if (status !== Status.IO_PENDING) {
      const data = status === Status.OK ? buf.bytes(Number(now[0])) : null;
      unregister(op);
      check(status);
      return data;
    }
    this._recv = op;
    try {
      const r = await complete(op);
      const data = r.status === Status.OK ? buf.bytes(r.bytes) : null;
      release({ keep: r.keep });
      check(r.status);
      return data;
    } finally {
      this._recv = null;
    }
  }

  /** sock_shutdown_async: after every pending send, end sending (the peer sees end of stream). */
  async shutdown() {
    const op = register(Op.SHUTDOWN, this, []);
    const status = C.shutdownAsync(this.handle, null, op.id);
    if (status !== Status.IO_PENDING) { unregister(op); check(status); return; }
    check((await complete(op)).status);
  }

  /** sock_cancel_sends: pending sendAll/shutdown calls reject with SOCK_OPERATION_ABORTED (and `.sent`). */
  cancelSends() { check(C.cancelSends(this.handle)); }
}

/** A connected Socket. */
async function connect(address) {
  const text = addressText(address);
  const s = new Socket(familyOf(text), 'stream');
  try {
    await s.connect(text);
  } catch (e) {
    s.close();
    throw e;
  }
  return s;
}

/** A listening Socket bound to `address` (port 0: any free one). */
function listen(address, backlog = 128) {
  const text = addressText(address);
  const s = new Socket(familyOf(text), 'stream');
  try {
    if (!text.startsWith('unix:')) s.setOption(7 /* SOCK_OPT_REUSE_ADDRESS */, 1);
    s.bind(text);
    s.listen(backlog);
  } catch (e) {
    s.close();
    throw e;
  }
  return s;
}

/**
 * Closes every socket of this package, frees the queue engine (pending
 * operations reject with SOCK_OPERATION_ABORTED) and calls sock_cleanup().
 * Runs by itself on process exit; the package stays usable afterwards.
 */
function cleanup() {
  for (const s of [...sockets]) s.close();
  if (engine !== null) {
    const e = engine;
    engine = null;
    C.engineFree(e);
    // A freed queue engine stays dequeueable until drained (an outstanding
    // async dequeue returns SOCK_OPERATION_ABORTED, or takes some entries).
    const block = new Native(BATCH * ENTRY_SIZE + 8);
    const countPtr = block.ptr + BigInt(BATCH * ENTRY_SIZE);
    for (let i = 0; i < 100000; i++) {
      const status = C.dequeue(e, block.ptr, BATCH, 0, countPtr);
      if (status !== Status.OK) break;
      readEntries(block, Number(block.view.getBigUint64(BATCH * ENTRY_SIZE, true)));
    }
    block.free();
    if (!pumping && asyncBlock) asyncBlock.free();
    asyncBlock = null;  // an outstanding dequeue frees its own block
  }
  for (const op of [...ops.values()]) {  // nothing may wait forever
    ops.delete(op.id);
    release(op);
    op.resolve({ status: Status.OPERATION_ABORTED, bytes: 0, accepted: 0n, keep: null });
  }
  return C.cleanup();
}

process.on('exit', cleanup);

module.exports = {
  Socket, SockError, Status, Op, connect, listen, cleanup,
  version: () => C.version(),
  strerror: (status) => C.strerror(status),
  pendingCount: () => ops.size,
};
