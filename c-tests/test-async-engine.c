/* Engines: a manual engine folded into the test's own poll() loop, threaded
 * engines, freeing an engine with operations pending, bad arguments, and
 * a thousand connections with pending sends on one engine. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- 12. manual engine ------------------------------------------------ */

static struct {
  pthread_t main;
  sock_engine *e;
  volatile int in_call; /* set by the main thread around poll / free */
  atomic_int off_thread, outside_call;
  atomic_int nested_poll_checked;
  sock_status nested_poll;
} g_me;

static void manual_hook(op_t *op, sock_handle h, sock_status s, size_t n) {
  (void)op;
  (void)h;
  (void)s;
  (void)n;
  if (!pthread_equal(pthread_self(), g_me.main)) atomic_fetch_add(&g_me.off_thread, 1);
  if (!g_me.in_call) atomic_fetch_add(&g_me.outside_call, 1);
  if (g_me.e && !atomic_exchange(&g_me.nested_poll_checked, 1))
    g_me.nested_poll = sock_engine_poll(g_me.e, 0, NULL);
}

static void manual_init(tracker *t) {
  memset(&g_me, 0, sizeof g_me);
  g_me.main = pthread_self();
  g_me.nested_poll = -1;
  t->hook = manual_hook;
}

/* Waits for the engine fd like an event loop would, then polls the engine.
 * Returns the callbacks it ran. */
static size_t loop_once(sock_engine *e, int efd, int wait_ms) {
  struct pollfd p = {efd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, wait_ms); while (r == -1 && errno == EINTR);
  ASSERT_SYS(r);
  if (r == 0) return 0;
  size_t done = UNWRITTEN;
  g_me.in_call = 1;
  ASSERT_OK(sock_engine_poll(e, 0, &done));
  g_me.in_call = 0;
  ASSERT(done != UNWRITTEN);
  return done;
}

static size_t loop_until(tracker *t, sock_engine *e, int efd, size_t want, size_t completed) {
  uint64_t t0 = now_ms();
  while (tracker_calls(t) < want) {
    ASSERT_MSG(now_ms() - t0 < 20000,
               "%zu of %zu callbacks after 20 s: engine fd not readable while work is due?",
               tracker_calls(t), want);
    completed += loop_once(e, efd, 100);
  }
  return completed;
}

TEST_IMPL(manual_engine_poll_loop) {
  const size_t len = 1 * MiB;
  int pfd;
  int32_t efd = -1;
  tracker t;
  char rb[16];
  sock_engine *e = NULL;
  tracker_init(&t, 4);
  manual_init(&t);
  ASSERT_OK(sock_engine_new(0, &e));
  ASSERT(e != NULL);
  g_me.e = e;
  ASSERT_OK(sock_engine_fd(e, &efd));
  ASSERT(efd >= 0);
  sock_handle h = small_pair(16384, &pfd);
  ASSERT_OK(sock_attach(h, e));
  uint8_t *buf = pattern_alloc(2 * len);

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, buf + len, len));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 2, h, rb, sizeof rb));
  collector_t c = {0};
  c.fd = pfd;
  c.expect = 2 * len;
  collector_start(&c);
  sleep_ms(200);
  ASSERT_MSG(tracker_calls(&t) == 0, "a manual engine ran %zu callbacks outside sock_engine_poll",
             tracker_calls(&t));

  size_t completed = loop_until(&t, e, efd, 2, 0);
  collector_join(&c);
  ASSERT_UEQ(c.got, 2 * len);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  ASSERT_SYS(send(pfd, "pong", 4, 0));
  completed = loop_until(&t, e, efd, 3, completed);
  /* a send that completes inline needs no poll */
  ASSERT_OK(track_send(&t, 3, h, "z", 1));
  peer_expect(pfd, "z", 1, "inline send on a manual engine");
  size_t more = UNWRITTEN;
  g_me.in_call = 1;
  ASSERT_OK(sock_engine_poll(e, 0, &more));
  g_me.in_call = 0;
  completed += more;

  tracker_settle(&t, 3, 0);
  ASSERT_UEQ(completed, 3); /* what poll reported equals what ran */
  for (size_t i = 0; i < 2; i++) {
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, len);
    ASSERT_UEQ(t.order[i], i);
  }
  ASSERT_STATUS(SOCK_OK, t.ops[2].status);
  ASSERT_UGE(t.ops[2].bytes, 1);
  ASSERT_ULE(t.ops[2].bytes, 4);
  ASSERT(memcmp(rb, "pong", t.ops[2].bytes) == 0);
  ASSERT_MSG(atomic_load(&g_me.off_thread) == 0, "callbacks ran on another thread");
  ASSERT_MSG(atomic_load(&g_me.outside_call) == 0, "callbacks ran outside sock_engine_poll");
  ASSERT_STATUS(SOCK_ALREADY_IN_PROGRESS, g_me.nested_poll); /* poll from a callback */

  /* free: the socket stays open, its async calls fail until re-attached */
  g_me.e = NULL;
  ASSERT_OK(sock_engine_free(e));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_free(e));
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_send_async(h, "y", 1, 0, track_cb, &t.ops[3], &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED,
                sock_recv_async(h, rb, sizeof rb, 0, track_cb, &t.ops[3], &n));
  ASSERT_OK(sock_attach(h, NULL));
  ASSERT_OK(track_send(&t, 3, h, "w", 1));
  peer_expect(pfd, "w", 1, "send after re-attaching to the default engine");
  tracker_settle(&t, 3, 100);
  ASSERT_OK(sock_close(h));
  close(pfd);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* sock_engine_poll with timeout -1 waits until there is work. */
TEST_IMPL(manual_engine_poll_waits_for_work) {
  int pfd;
  tracker t;
  char rb[8];
  sock_engine *e = NULL;
  tracker_init(&t, 1);
  manual_init(&t);
  ASSERT_OK(sock_engine_new(0, &e));
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_attach(h, e));
  size_t done = UNWRITTEN;
  g_me.in_call = 1;
  ASSERT_OK(sock_engine_poll(e, 0, &done)); /* nothing to do */
  ASSERT_UEQ(done, 0);
  ASSERT_OK(sock_engine_poll(e, 50, NULL));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, rb, sizeof rb));
  ASSERT_OK(sock_engine_poll(e, 0, &done));
  ASSERT_UEQ(done, 0);
  ASSERT_SYS(send(pfd, "k", 1, 0));
  uint64_t t0 = now_ms();
  while (tracker_calls(&t) == 0) {
    ASSERT_MSG(now_ms() - t0 < 10000, "sock_engine_poll(-1) never ran the callback");
    ASSERT_OK(sock_engine_poll(e, -1, &done));
  }
  g_me.in_call = 0;
  tracker_settle(&t, 1, 0);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 1);
  ASSERT_EQ(rb[0], 'k');
  ASSERT_EQ(atomic_load(&g_me.off_thread), 0);
  ASSERT_EQ(atomic_load(&g_me.outside_call), 0);
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_engine_free(e));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* ---- freeing an engine with operations pending ------------------------ */

static void engine_free_aborts(uint32_t threads) {
  enum { N = 3 };
  const size_t len = 1 * MiB;
  int pfd, pfd2;
  tracker t;
  char rb[8];
  sock_engine *e = NULL;
  tracker_init(&t, N + 1);
  manual_init(&t);
  ASSERT_OK(sock_engine_new(threads, &e));
  sock_handle h = small_pair(4096, &pfd);
  sock_handle h2 = connect_pair(SOCK_FAMILY_INET, 0, &pfd2);
  ASSERT_OK(sock_attach(h, e));
  ASSERT_OK(sock_attach(h2, e));
  uint8_t *buf = pattern_alloc(N * len);
  for (size_t i = 0; i < N; i++)
    ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, i, h, buf + i * len, len));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, N, h2, rb, sizeof rb));
  if (threads) sleep_ms(50);
  ASSERT_EQ(tracker_calls(&t), 0);

  g_me.in_call = 1;
  ASSERT_OK(sock_engine_free(e));
  g_me.in_call = 0;
  /* every callback ran before the free returned */
  size_t calls = tracker_calls(&t);
  ASSERT_MSG(calls == N + 1, "%zu of %d callbacks had run when sock_engine_free returned", calls,
             N + 1);
  tracker_settle(&t, N + 1, 100);
  size_t sum = 0;
  int short_seen = 0;
  for (size_t i = 0; i <= N; i++) {
    op_t *op = &t.ops[i];
    ASSERT_MSG(op->status == SOCK_OPERATION_ABORTED, "op %zu: %s", i, status_name(op->status));
    if (i == N) {
      ASSERT_UEQ(op->bytes, 0);
      break;
    }
    ASSERT_ULT(op->bytes, len);
    ASSERT(!short_seen || op->bytes == 0);
    short_seen |= op->bytes < len;
    sum += op->bytes;
  }
  /* send callbacks in order (the recv's may fall anywhere) */
  for (size_t k = 0, prev = 0, seen = 0; k <= N; k++)
    if (t.order[k] != N) {
      ASSERT_MSG(seen == 0 || t.order[k] > prev, "send callbacks out of order");
      prev = t.order[k];
      seen = 1;
    }
  if (threads)
    ASSERT_MSG(atomic_load(&g_me.off_thread) == N + 1, "callbacks ran on the freeing thread");
  else
    ASSERT_MSG(atomic_load(&g_me.off_thread) == 0 && atomic_load(&g_me.outside_call) == 0,
               "manual engine: callbacks must run inside sock_engine_free, on its thread");

  /* the sockets stay open; async calls fail until another engine */
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_send_async(h, "z", 1, 0, track_cb, &t.ops[0], &n));
  ASSERT_UEQ(n, 0);
  sock_buf b = {"z", 1};
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_sendv_async(h, &b, 1, 0, track_cb, &t.ops[0], &n));
  ASSERT_STATUS(SOCK_OPERATION_ABORTED,
                sock_recv_async(h2, rb, sizeof rb, 0, track_cb, &t.ops[N], &n));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_free(e));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_attach(h, e));
  peer_expect(pfd, buf, sum, "bytes of the aborted sends");
  ASSERT_OK(sock_attach(h, NULL));
  ASSERT_OK(sock_attach(h2, NULL));
  ASSERT_OK(track_send(&t, 0, h, "z", 1)); /* inline: no second callback */
  peer_expect(pfd, "z", 1, "send after re-attaching");
  ASSERT_SYS(send(pfd2, "q", 1, 0));
  recv_exact(h2, rb, 1); /* the aborted receive consumed nothing */
  ASSERT_EQ(rb[0], 'q');
  tracker_settle(&t, N + 1, 50);
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_close(h2));
  close(pfd);
  close(pfd2);
  free(buf);
  tracker_free(&t);
}

TEST_IMPL(engine_free_aborts_pending_manual) {
  engine_free_aborts(0);
  return 0;
}

TEST_IMPL(engine_free_aborts_pending_threaded) {
  engine_free_aborts(1);
  return 0;
}

/* ---- threaded engine -------------------------------------------------- */

TEST_IMPL(engine_threaded_callbacks_off_submitter) {
  enum { NS = 4, NOPS = 2 };
  const size_t len = 1 * MiB;
  int pfd[NS];
  int32_t fd;
  sock_handle h[NS];
  tracker t[NS];
  collector_t c[NS];
  sock_engine *e = NULL;
  ASSERT_OK(sock_engine_new(2, &e));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_poll(e, 0, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_fd(e, &fd));
  uint8_t *buf = pattern_alloc(NOPS * len + NS * 64);
  for (int i = 0; i < NS; i++) {
    tracker_init(&t[i], NOPS);
    h[i] = small_pair(16384, &pfd[i]);
    ASSERT_OK(sock_attach(h[i], e));
    for (size_t k = 0; k < NOPS; k++)
      ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t[i], k, h[i], buf + i * 64 + k * len, len));
  }
  for (int i = 0; i < NS; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].fd = pfd[i];
    c[i].expect = NOPS * len;
    collector_start(&c[i]);
  }
  for (int i = 0; i < NS; i++) {
    tracker_wait(&t[i], NOPS, 20000);
    collector_join(&c[i]);
    ASSERT_UEQ(c[i].got, NOPS * len);
    ASSERT_EQ(pattern_mismatch(c[i].buf, c[i].got, (uint64_t)i * 64), -1);
    tracker_settle(&t[i], NOPS, 0);
    for (size_t k = 0; k < NOPS; k++) {
      ASSERT_STATUS(SOCK_OK, t[i].ops[k].status);
      ASSERT_UEQ(t[i].ops[k].bytes, len);
      ASSERT_UEQ(t[i].order[k], k);
      ASSERT_MSG(!pthread_equal(t[i].ops[k].thread, pthread_self()),
                 "a threaded engine ran a callback on the submitting thread");
    }
  }
  ASSERT_OK(sock_engine_free(e));
  for (int i = 0; i < NS; i++) {
    tracker_settle(&t[i], NOPS, 0);
    ASSERT_OK(sock_close(h[i]));
    close(pfd[i]);
    collector_free(&c[i]);
    tracker_free(&t[i]);
  }
  free(buf);
  return 0;
}

/* ---- bad arguments ---------------------------------------------------- */

TEST_IMPL(engine_bad_arguments) {
  sock_engine *e = (sock_engine *)0x1, *m = NULL, *dead = NULL;
  int32_t fd = 12345;
  size_t done = UNWRITTEN;
  int pfd;
  tracker t;
  tracker_init(&t, 1);

  ASSERT_STATUS(SOCK_FAULT, sock_engine_new(0, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_engine_new(1, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_new(SOCK_ENGINE_MAX_THREADS + 1, &e));
  ASSERT(e == NULL);
  e = (sock_engine *)0x1;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_new(UINT32_MAX, &e));
  ASSERT(e == NULL);
  ASSERT_STATUS(SOCK_FAULT, sock_engine_free(NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_engine_poll(NULL, 0, &done));
  ASSERT_STATUS(SOCK_FAULT, sock_engine_fd(NULL, &fd));

  ASSERT_OK(sock_engine_new(0, &m));
  ASSERT_STATUS(SOCK_FAULT, sock_engine_fd(m, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_poll(m, -2, &done));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_poll(m, INT32_MIN, &done));

  /* a freed engine is not a live one */
  ASSERT_OK(sock_engine_new(0, &dead));
  ASSERT_OK(sock_engine_free(dead));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_free(dead));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_poll(dead, 0, &done));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_fd(dead, &fd));

  /* attach: handles, dead engines, pending operations */
  sock_handle h = small_pair(4096, &pfd);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_attach(SOCK_INVALID_HANDLE, m));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_attach(NEVER_ISSUED_HANDLE, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_attach(h, dead));
  uint8_t *buf = pattern_alloc(1 * MiB);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, 1 * MiB));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_attach(h, m));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_attach(h, NULL));
  ASSERT_OK(sock_cancel_sends(h));
  tracker_wait(&t, 1, 10000);
  tracker_settle(&t, 1, 100);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[0].status);
  ASSERT_OK(sock_attach(h, m)); /* nothing pending any more */
  ASSERT_OK(sock_attach(h, m)); /* again: harmless */
  ASSERT_OK(sock_close(h));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_attach(h, m));
  ASSERT_OK(sock_engine_free(m));
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* ---- 13. a thousand connections --------------------------------------- */

enum { NCONN = 1000, STRIDE = 64 };
#define PER_CONN (256 * KiB)

typedef struct {
  int fd[NCONN];
  size_t got[NCONN];
  long long mismatch[NCONN];
  int eof[NCONN];
  int err;
} drain_all_t;

/* POSIX epoll reader: drains every peer until EOF, checking each stream's
 * pattern (connection i starts at offset i * STRIDE). */
static void *drain_all(void *p) {
  drain_all_t *d = p;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_SYS(ep);
  for (int i = 0; i < NCONN; i++) {
    d->mismatch[i] = -1;
    ASSERT_SYS(fcntl(d->fd[i], F_SETFL, fcntl(d->fd[i], F_GETFL) | O_NONBLOCK));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, d->fd[i], &ev));
  }
  static uint8_t buf[65536];
  struct epoll_event evs[64];
  int open = NCONN;
  while (open > 0) {
    int n = epoll_wait(ep, evs, 64, (int)wait_bound_ms(30000));
    if (n == -1 && errno == EINTR) continue;
    ASSERT_SYS(n);
    if (n == 0) {
      d->err = ETIMEDOUT;
      break;
    }
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      for (;;) {
        ssize_t r = recv(d->fd[i], buf, sizeof buf, 0);
        if (r == -1 && errno == EINTR) continue;
        if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r == -1) FAIL("connection %d: recv: %s", i, strerror(errno));
        if (r == 0) {
          d->eof[i] = 1;
          open--;
          ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, d->fd[i], NULL));
          break;
        }
        if (d->mismatch[i] < 0) {
          long long m = pattern_mismatch(buf, (size_t)r, (uint64_t)i * STRIDE + d->got[i]);
          if (m >= 0) d->mismatch[i] = (long long)d->got[i] + m;
        }
        d->got[i] += (size_t)r;
      }
    }
  }
  close(ep);
  return NULL;
}

TEST_IMPL(thousand_connections_pending_sends) {
  long lim = raise_fd_limit();
  if (lim >= 0 && lim < 2 * NCONN + 64) FAIL("RLIMIT_NOFILE hard limit %ld is too low", lim);
  static sock_handle h[NCONN];
  static drain_all_t d;
  tracker t;
  pthread_t th;
  char addr[SOCK_ADDRESS_MAX_LEN];
  int port;
  int lfd = peer_listen(AF_INET, 4096, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  uint8_t *buf = pattern_alloc(PER_CONN + (size_t)NCONN * STRIDE);
  tracker_init(&t, NCONN);
  for (int i = 0; i < NCONN; i++) {
    h[i] = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_OK(sock_set_option(h[i], SOCK_OPT_SEND_BUFFER_SIZE, 4096));
    ASSERT_OK(sock_connect(h[i], addr));
    d.fd[i] = peer_accept(lfd);
  }
  close(lfd);
  for (int i = 0; i < NCONN; i++) {
    sock_status s = track_send(&t, (size_t)i, h[i], buf + (size_t)i * STRIDE, PER_CONN);
    ASSERT_MSG(s == SOCK_IO_PENDING, "connection %d: %s", i, status_name(s));
  }
  ASSERT_EQ(pthread_create(&th, NULL, drain_all, &d), 0);
  tracker_wait(&t, NCONN, 50000);
  tracker_settle(&t, NCONN, 50);
  for (int i = 0; i < NCONN; i++) {
    op_t *op = &t.ops[i];
    ASSERT_MSG(op->status == SOCK_OK && op->bytes == PER_CONN,
               "connection %d: %s with %zu of %zu bytes", i, status_name(op->status), op->bytes,
               (size_t)PER_CONN);
    ASSERT_OK(sock_close(h[i]));
  }
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_MSG(d.err == 0, "reader: %s", strerror(d.err));
  for (int i = 0; i < NCONN; i++) {
    ASSERT_MSG(d.eof[i] && d.got[i] == PER_CONN, "connection %d: peer got %zu bytes (eof %d)", i,
               d.got[i], d.eof[i]);
    ASSERT_MSG(d.mismatch[i] == -1, "connection %d: stream differs at offset %lld", i,
               d.mismatch[i]);
    close(d.fd[i]);
  }
  free(buf);
  tracker_free(&t);
  return 0;
}
