/* Fault injection: libsock clients talk to a POSIX server through the
 * loopback proxy of fault-proxy.h, which stalls, throttles, resets or
 * half-closes a connection on command. Each fault drives one documented
 * outcome deterministically: timeouts with partial counts, partial
 * non-blocking sends, slow but intact async sends, resets reported to
 * every pending operation exactly once, end of stream after a half-close. */
#define _GNU_SOURCE
#include "fault-proxy.h"
#include "test-async-helpers.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* client -> proxy -> server */
typedef struct {
  fault_proxy *p;
  int lfd;
  char addr[SOCK_ADDRESS_MAX_LEN];
  int nconns;
} rig_t;

static void rig_open(rig_t *r) {
  int port;
  memset(r, 0, sizeof *r);
  r->lfd = peer_listen(AF_INET, 0, &port);
  r->p = fp_start(port);
  fp_addr(r->p, r->addr, sizeof r->addr);
}

/* A libsock client through the proxy (connection number r->nconns) with a
 * 64 KiB send buffer; *server = the server's end of it. */
static sock_handle rig_connect(rig_t *r, int *server) {
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 65536));
  ASSERT_OK(sock_connect(h, r->addr));
  r->nconns++;
  fp_wait_conns(r->p, r->nconns, 5000);
  *server = peer_accept(r->lfd);
  return h;
}

static void rig_close(rig_t *r) {
  fp_stop(r->p);
  close(r->lfd);
}

/* The server side reads until end of stream and must get exactly `want`. */
static void expect_stream(int fd, const uint8_t *want, size_t len, const char *what) {
  collector_t c;
  memset(&c, 0, sizeof c);
  c.fd = fd;
  collector_start(&c);
  collector_join(&c);
  ASSERT_MSG(c.eof, "%s: no end of stream", what);
  ASSERT_MSG(c.got == len, "%s: the server got %zu bytes, expected %zu", what, c.got, len);
  for (size_t i = 0; i < len; i++)
    if (c.buf[i] != want[i]) FAIL("%s: byte %zu of %zu differs", what, i, len);
  collector_free(&c);
}

/* A reset reaches the server too: its read fails with ECONNRESET. */
static void expect_server_reset(int fd) {
  char b[4096];
  ASSERT(peer_readable(fd, 5000));
  ssize_t n;
  while ((n = recv(fd, b, sizeof b, 0)) > 0) {
  }
  ASSERT_MSG(n == -1 && errno == ECONNRESET, "server side after a proxy reset: recv %zd (%s)", n,
             n == -1 ? strerror(errno) : "no error");
}

/* ---- stall ------------------------------------------------------------ */

/* A blocking send into a stalled connection ends at its timeout with the
 * bytes that did go; exactly those reach the server once the stall ends. */
TEST_IMPL(fault_stall_blocking_send_timeout) {
  const size_t len = 32 * MiB;
  const int timeout = 300;
  rig_t r;
  int srv;
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(len);
  fp_stall(r.p, 0, 1);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, timeout));

  size_t sent = UNWRITTEN;
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_send(h, buf, len, SOCK_MSG_NONE, &sent));
  uint64_t took = now_ms() - t0;
  ASSERT_MSG(sent > 0 && sent < len, "partial count %zu of %zu", sent, len);
  ASSERT_MSG(took + 2 >= (uint64_t)timeout, "timed out after %llu ms, before its %d ms",
             (unsigned long long)took, timeout);
  ASSERT_UEQ(fp_forwarded(r.p, 0, FP_SERVER), 0); /* the stall held */
  printf("# timed out after %llu ms with %zu of %zu bytes sent\n", (unsigned long long)took, sent,
         len);

  fp_stall(r.p, 0, 0);
  ASSERT_OK(sock_close(h));
  expect_stream(srv, buf, sent, "after a send timeout");
  ASSERT_UEQ(fp_forwarded(r.p, 0, FP_SERVER), sent);
  close(srv);
  rig_close(&r);
  free(buf);
  return 0;
}

/* Async sends into a stalled connection: each completes once, at its
 * deadline, with SOCK_TIMED_OUT and a partial count; the stream holds
 * exactly those bytes, and a later send goes on normally. */
TEST_IMPL(fault_stall_async_deadline) {
  const size_t la = 8 * MiB, lb = 1 * MiB, lc = 1000;
  const int timeout = 300;
  rig_t r;
  int srv;
  tracker t;
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(la + lb + lc);
  tracker_init(&t, 3);
  fp_stall(r.p, 0, 1);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, timeout));

  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, la));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, buf + la, lb));
  tracker_wait(&t, 2, 10000);
  op_t *a = &t.ops[0], *b = &t.ops[1];
  ASSERT_STATUS(SOCK_TIMED_OUT, a->status);
  ASSERT_STATUS(SOCK_TIMED_OUT, b->status);
  ASSERT_MSG(a->bytes > 0 && a->bytes < la, "op A: partial count %zu of %zu", a->bytes, la);
  ASSERT_UGE(a->bytes, a->sent_now);
  ASSERT_ULE(b->bytes, lb);
  ASSERT_UEQ(t.order[0], 0);
  ASSERT_UEQ(t.order[1], 1);
  ASSERT_MSG(a->at_ms + 2 >= t0 + (uint64_t)timeout, "op A timed out after %llu ms, before %d",
             (unsigned long long)(a->at_ms - t0), timeout);
  int64_t pend = -1;
  ASSERT_OK(sock_get_option(h, SOCK_OPT_PENDING_SEND_BYTES, &pend));
  ASSERT_EQ(pend, 0);
  printf("# A: %zu of %zu bytes after %llu ms, B: %zu of %zu\n", a->bytes, la,
         (unsigned long long)(a->at_ms - t0), b->bytes, lb);

  /* the stall ends: a new send goes, behind exactly what A and B sent */
  fp_stall(r.p, 0, 0);
  sock_status s = track_send(&t, 2, h, buf + la + lb, lc);
  ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
  size_t expect_calls = 2 + (s == SOCK_IO_PENDING);
  tracker_wait(&t, expect_calls, 10000);
  if (s == SOCK_IO_PENDING) {
    ASSERT_STATUS(SOCK_OK, t.ops[2].status);
    ASSERT_UEQ(t.ops[2].bytes, lc);
  }
  ASSERT_OK(sock_close(h));
  tracker_settle(&t, expect_calls, 100);

  size_t total = a->bytes + b->bytes + lc;
  uint8_t *want = malloc(total);
  ASSERT(want != NULL);
  memcpy(want, buf, a->bytes);
  memcpy(want + a->bytes, buf + la, b->bytes);
  memcpy(want + a->bytes + b->bytes, buf + la + lb, lc);
  expect_stream(srv, want, total, "after async deadlines");
  free(want);
  close(srv);
  rig_close(&r);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* ---- throttle --------------------------------------------------------- */

/* Non-blocking sends through a 1 MiB/s connection: short counts and
 * SOCK_WOULD_BLOCK (with 0) until all went; the stream is intact. */
TEST_IMPL(fault_throttle_nonblocking_partial) {
  const size_t total = 1 * MiB, chunk = 256 * KiB;
  rig_t r;
  int srv;
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(total);
  fp_throttle(r.p, 0, 1 * MiB);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  reader_t rd = {.fd = srv, .check_pattern = 1};
  reader_start(&rd);

  size_t off = 0, partial = 0, would_block = 0;
  int fd = handle_fd(h);
  while (off < total) {
    size_t want = total - off < chunk ? total - off : chunk;
    size_t n = UNWRITTEN;
    sock_status s = sock_send(h, buf + off, want, SOCK_MSG_NONE, &n);
    if (s == SOCK_OK) {
      ASSERT_MSG(n > 0 && n <= want, "SOCK_OK with %zu of %zu", n, want);
      partial += n < want;
      off += n;
    } else if (s == SOCK_WOULD_BLOCK) {
      ASSERT_MSG(n == 0, "SOCK_WOULD_BLOCK with *sent %zu", n);
      would_block++;
      struct pollfd p = {fd, POLLOUT, 0};
      ASSERT_MSG(poll(&p, 1, 10000) == 1, "socket not writable within 10 s");
    } else {
      FAIL("non-blocking send: %s after %zu bytes", status_name(s), off);
    }
  }
  ASSERT_MSG(partial > 0, "no partial send through a throttled connection");
  ASSERT_MSG(would_block > 0, "no SOCK_WOULD_BLOCK through a throttled connection");
  ASSERT_OK(sock_close(h));
  reader_join(&rd);
  ASSERT(rd.eof);
  ASSERT_UEQ(rd.got, total);
  ASSERT_EQ(rd.mismatch, -1);
  printf("# %zu partial sends, %zu would-block\n", partial, would_block);
  close(srv);
  rig_close(&r);
  free(buf);
  return 0;
}

/* Async sends through a 2 MiB/s connection stay pending, then complete
 * once each, in order, with every byte; the server's checksum matches. */
TEST_IMPL(fault_throttle_async_intact) {
  enum { N = 6 };
  const size_t len = 300 * KiB;
  rig_t r;
  int srv;
  tracker t;
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(N * len);
  tracker_init(&t, N);
  fp_throttle(r.p, 0, 2 * MiB);
  reader_t rd = {.fd = srv, .check_pattern = 1};
  reader_start(&rd);
  for (size_t i = 0; i < N; i++)
    ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, i, h, buf + i * len, len));
  tracker_wait(&t, N, 30000);
  for (size_t i = 0; i < N; i++) {
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, len);
    ASSERT_UEQ(t.order[i], i);
  }
  ASSERT_OK(sock_close(h));
  tracker_settle(&t, N, 50);
  reader_join(&rd);
  ASSERT(rd.eof);
  ASSERT_UEQ(rd.got, N * len);
  ASSERT_EQ(rd.mismatch, -1);
  ASSERT_UEQ(rd.hash, fnv1a(FNV1A_INIT, buf, N * len));
  close(srv);
  rig_close(&r);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* ---- reset ------------------------------------------------------------ */

typedef struct {
  fault_proxy *p;
  unsigned delay_ms;
} reset_later_t;

static void *reset_later(void *arg) {
  reset_later_t *rl = arg;
  sleep_ms(rl->delay_ms);
  fp_reset(rl->p, 0);
  return NULL;
}

/* A blocking send stuck on a stalled connection ends with the reset:
 * SOCK_CONNECTION_RESET (or SOCK_SHUTDOWN, EPIPE), no SIGPIPE. */
TEST_IMPL(fault_reset_during_blocking_send) {
  const size_t len = 32 * MiB;
  rig_t r;
  int srv;
  pthread_t th;
  assert_sigpipe_default();
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(len);
  fp_stall(r.p, 0, 1);
  reset_later_t rl = {r.p, 200};
  ASSERT_EQ(pthread_create(&th, NULL, reset_later, &rl), 0);
  size_t sent = UNWRITTEN;
  sock_status s = sock_send(h, buf, len, SOCK_MSG_NONE, &sent);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_STATUS2(SOCK_CONNECTION_RESET, SOCK_SHUTDOWN, s);
  ASSERT_MSG(sent < len, "*sent %zu of %zu after a reset", sent, len);
  printf("# %s with %zu of %zu bytes sent\n", status_name(s), sent, len);
  /* later sends fail too, and quietly */
  s = sock_send(h, buf, 1000, SOCK_MSG_NONE, &sent);
  ASSERT_STATUS2(SOCK_CONNECTION_RESET, SOCK_SHUTDOWN, s);
  ASSERT_UEQ(sent, 0);
  expect_server_reset(srv);
  ASSERT_OK(sock_close(h));
  close(srv);
  rig_close(&r);
  free(buf);
  return 0;
}

/* Sends pending on a stalled connection, and a receive: the reset ends
 * each of them exactly once, sends with SOCK_CONNECTION_RESET or
 * SOCK_SHUTDOWN, the receive with SOCK_CONNECTION_RESET ("peer reset
 * while pending -> the callbacks get SOCK_CONNECTION_RESET"; the kernel
 * reports the error to one call only, so the library has to keep it). */
TEST_IMPL(fault_reset_while_async_pending) {
  enum { N = 4 };
  const size_t len = 2 * MiB;
  rig_t r;
  int srv;
  tracker t;
  char rb[16];
  assert_sigpipe_default();
  rig_open(&r);
  sock_handle h = rig_connect(&r, &srv);
  uint8_t *buf = pattern_alloc(N * len);
  tracker_init(&t, N + 1);
  fp_stall(r.p, 0, 1);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, N, h, rb, sizeof rb));
  for (size_t i = 0; i < N; i++)
    ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, i, h, buf + i * len, len));
  sleep_ms(100);
  ASSERT_UEQ(tracker_calls(&t), 0);
  fp_reset(r.p, 0);
  tracker_wait(&t, N + 1, 10000);
  tracker_settle(&t, N + 1, 200);
  for (size_t i = 0; i < N; i++) {
    op_t *op = &t.ops[i];
    ASSERT_MSG(op->status == SOCK_CONNECTION_RESET || op->status == SOCK_SHUTDOWN,
               "send %zu: %s after a reset", i, status_name(op->status));
    ASSERT_ULE(op->bytes, len);
    ASSERT_UGE(op->bytes, op->sent_now);
  }
  for (size_t i = 0; i <= N; i++)
    printf("# op %zu: %s, %zu bytes\n", i, status_name(t.ops[i].status), t.ops[i].bytes);
  /* the sends' callbacks came in submission order */
  size_t k = 0;
  for (size_t pos = 0; pos < N + 1; pos++)
    if (t.order[pos] != N) ASSERT_UEQ(t.order[pos], k++);
  int64_t pend = -1;
  ASSERT_OK(sock_get_option(h, SOCK_OPT_PENDING_SEND_BYTES, &pend));
  ASSERT_EQ(pend, 0);
  size_t n = UNWRITTEN;
  sock_status s = sock_send_async(h, buf, 100, 0, track_cb, &t.ops[0], &n);
  ASSERT_STATUS2(SOCK_CONNECTION_RESET, SOCK_SHUTDOWN, s);
  expect_server_reset(srv);
  ASSERT_OK(sock_close(h));
  tracker_settle(&t, N + 1, 100);
  /* the receive pending at the reset learns of it too; it must not
   * mistake it for an orderly end of stream */
  op_t *rop = &t.ops[N];
  ASSERT_MSG(rop->status == SOCK_CONNECTION_RESET,
             "receive pending at the reset: %s with %zu bytes, expected SOCK_CONNECTION_RESET",
             status_name(rop->status), rop->bytes);
  close(srv);
  rig_close(&r);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* ---- half-close ------------------------------------------------------- */

/* The proxy shuts down writing toward the client: sock_recv returns end
 * of stream (SOCK_OK, 0), a pending sock_recv_async completes with 0, and
 * the client can still send (half-open). Toward the server likewise. */
TEST_IMPL(fault_half_close_end_of_stream) {
  rig_t r;
  int srv0, srv1;
  tracker t;
  char rb[16];
  rig_open(&r);
  tracker_init(&t, 2);
  sock_handle h0 = rig_connect(&r, &srv0);
  sock_handle h1 = rig_connect(&r, &srv1);
  ASSERT_OK(sock_set_option(h0, SOCK_OPT_RECV_TIMEOUT_MS, 5000));

  /* blocking: data, then end of stream, then end of stream again */
  ASSERT_SYS(send(srv0, "tail", 4, 0));
  recv_exact(h0, rb, 4);
  ASSERT(memcmp(rb, "tail", 4) == 0);
  fp_half_close(r.p, 0, FP_CLIENT);
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_recv(h0, rb, sizeof rb, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_OK(sock_recv(h0, rb, sizeof rb, 0, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_OK(sock_send(h0, "still", 5, 0, NULL));
  peer_expect(srv0, "still", 5, "a send after the peer's half-close");

  /* async: a receive pending when the end of stream comes */
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h1, rb, sizeof rb));
  sleep_ms(50);
  ASSERT_UEQ(tracker_calls(&t), 0);
  fp_half_close(r.p, 1, FP_CLIENT);
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 0);
  /* and one submitted after it: end of stream at once, or through the
   * callback */
  sock_status s = track_recv(&t, 1, h1, rb, sizeof rb);
  ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
  if (s == SOCK_OK) {
    ASSERT_UEQ(t.ops[1].sent_now, 0);
    tracker_settle(&t, 1, 100);
  } else {
    tracker_wait(&t, 2, 10000);
    ASSERT_STATUS(SOCK_OK, t.ops[1].status);
    ASSERT_UEQ(t.ops[1].bytes, 0);
    tracker_settle(&t, 2, 100);
  }
  ASSERT_OK(sock_send(h1, "more", 4, 0, NULL));
  peer_expect(srv1, "more", 4, "an async-side send after the peer's half-close");

  /* toward the server: it sees end of stream */
  fp_half_close(r.p, 1, FP_SERVER);
  long long mm;
  ASSERT_UEQ(peer_drain(srv1, 16, 0, &mm), 0);

  ASSERT_OK(sock_close(h0));
  ASSERT_OK(sock_close(h1));
  close(srv0);
  close(srv1);
  rig_close(&r);
  tracker_free(&t);
  return 0;
}
