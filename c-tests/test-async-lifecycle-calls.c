/* The async connection life cycle: sock_connect_async, sock_accept_async,
 * sock_shutdown_async, sock_send_to_async and sock_recv_from_async, each
 * scenario run on the three kinds of engine (the default engine, a threaded
 * engine of two threads, and a manual engine polled by the test, whose
 * callbacks must run only inside sock_engine_poll on the polling thread).
 * The peers are plain POSIX sockets. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- the three engines -------------------------------------------------- */

typedef struct {
  const char *name;
  int manual;         /* a manual engine: sock_engine_new(0) */
  uint32_t threads;   /* sock_engine_new(threads) when not the default one */
  int is_default;
  sock_engine *e;     /* NULL for the default engine */
  pthread_t main;
  volatile int in_poll;   /* set by the main thread around sock_engine_poll */
  atomic_int off_thread;  /* manual: callbacks on another thread */
  atomic_int outside_poll; /* manual: callbacks outside sock_engine_poll */
  atomic_int on_main;     /* threaded / default: callbacks on the test thread */
} eng_t;

static eng_t *g_eng;

/* Called first by every callback of this file. */
static void eng_check(void) {
  eng_t *g = g_eng;
  if (g == NULL) return;
  if (g->manual) {
    if (!pthread_equal(pthread_self(), g->main)) atomic_fetch_add(&g->off_thread, 1);
    else if (!g->in_poll) atomic_fetch_add(&g->outside_poll, 1);
  } else if (pthread_equal(pthread_self(), g->main)) {
    atomic_fetch_add(&g->on_main, 1);
  }
}

/* One poll of a manual engine (the callbacks it runs are "inside"). */
static void eng_poll(eng_t *g, int timeout_ms) {
  size_t done = UNWRITTEN;
  g->in_poll = 1;
  sock_status s = sock_engine_poll(g->e, timeout_ms, &done);
  g->in_poll = 0;
  ASSERT_OK(s);
  ASSERT(done != UNWRITTEN);
}

/* Lets the engine run for ms: polls a manual engine, sleeps otherwise. */
static void eng_pump(eng_t *g, unsigned ms) {
  if (!g->manual) {
    sleep_ms(ms);
    return;
  }
  uint64_t t0 = now_ms();
  do eng_poll(g, 10); while (now_ms() - t0 < ms);
}

/* Waits until pred(arg) holds, polling a manual engine meanwhile. */
static void eng_wait_until(eng_t *g, int (*pred)(void *), void *arg, unsigned ms,
                           const char *what) {
  unsigned bound = wait_bound_ms(ms);
  uint64_t t0 = now_ms();
  while (!pred(arg)) {
    ASSERT_MSG(now_ms() - t0 < bound, "%s engine: %s did not happen within %u ms", g->name, what,
               bound);
    if (g->manual)
      eng_poll(g, 10);
    else
      sleep_ms(1);
  }
}

typedef struct {
  tracker *t;
  size_t n;
} calls_at_least;

static int pred_calls(void *p) {
  calls_at_least *c = p;
  return tracker_calls(c->t) >= c->n;
}

/* At least n callbacks of t ran (the manual engine is polled meanwhile). */
static void eng_wait(eng_t *g, tracker *t, size_t n, unsigned ms) {
  calls_at_least c = {t, n};
  eng_wait_until(g, pred_calls, &c, ms, "the callbacks");
}

/* After a grace period of engine activity: exactly `expected` callbacks,
 * none twice, none with a wrong handle. */
static void eng_settle(eng_t *g, tracker *t, size_t expected, unsigned grace_ms) {
  eng_pump(g, grace_ms);
  tracker_settle(t, expected, 0);
}

static sock_handle eng_socket(eng_t *g, int32_t family, int32_t type) {
  sock_handle h = new_socket(family, type);
  if (g->e) ASSERT_OK(sock_attach(h, g->e));
  return h;
}

/* Runs fn on the default engine, on sock_engine_new(2) and on a manual
 * engine, checking where the callbacks ran. */
static void on_each_engine(void (*fn)(eng_t *)) {
  static eng_t kinds[3];
  memset(kinds, 0, sizeof kinds);
  kinds[0].name = "default";
  kinds[0].is_default = 1;
  kinds[1].name = "threaded";
  kinds[1].threads = 2;
  kinds[2].name = "manual";
  kinds[2].manual = 1;
  for (int k = 0; k < 3; k++) {
    eng_t *g = &kinds[k];
    g->main = pthread_self();
    if (!g->is_default) {
      ASSERT_OK(sock_engine_new(g->manual ? 0 : g->threads, &g->e));
      ASSERT(g->e != NULL);
    }
    g_eng = g;
    fn(g);
    if (g->e) {
      g->in_poll = 1; /* a manual engine's free runs what is left on this thread */
      ASSERT_OK(sock_engine_free(g->e));
      g->in_poll = 0;
    }
    g_eng = NULL;
    ASSERT_MSG(atomic_load(&g->off_thread) == 0, "%s engine: %d callbacks on another thread",
               g->name, atomic_load(&g->off_thread));
    ASSERT_MSG(atomic_load(&g->outside_poll) == 0,
               "%s engine: %d callbacks ran outside sock_engine_poll", g->name,
               atomic_load(&g->outside_poll));
    ASSERT_MSG(atomic_load(&g->on_main) == 0,
               "%s engine: %d callbacks ran on the submitting thread", g->name,
               atomic_load(&g->on_main));
    printf("# %s engine: ok\n", g->name);
  }
}

/* ---- callbacks ---------------------------------------------------------- */

/* The tracker's op_t is the user_data of every operation; these record
 * into it. The accepted handle of op i goes to g_accepted[i] (written
 * before the tracker publishes the callback). */
#define MAX_ACCEPTS 512
static sock_handle g_accepted[MAX_ACCEPTS];

static void bytes_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  eng_check();
  track_cb(h, s, n, ud);
}

static void status_cb(sock_handle h, sock_status s, void *ud) {
  eng_check();
  track_cb(h, s, 0, ud);
}

static void accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  op_t *op = ud;
  eng_check();
  ASSERT(op != NULL && op->index < MAX_ACCEPTS);
  if (op->calls == 0) g_accepted[op->index] = a;
  track_cb(l, s, 0, ud);
}

/* Callbacks of calls that must fail: running at all fails the test. */
static void never_status_cb(sock_handle h, sock_status s, void *ud) {
  (void)ud;
  FAIL("status callback ran for a refused call (h 0x%" PRIx64 ", %s)", h, status_name(s));
}
static void never_accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  (void)a;
  (void)ud;
  FAIL("accept callback ran for a refused call (h 0x%" PRIx64 ", %s)", l, status_name(s));
}
static void never_bytes_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)ud;
  FAIL("send/recv callback ran for a refused call (h 0x%" PRIx64 ", %s, %zu)", h,
       status_name(s), n);
}

static sock_status op_connect(tracker *t, size_t i, sock_handle h, const char *addr) {
  op_t *op = tracker_op(t, i, h, 0);
  op->submit_status = sock_connect_async(h, addr, status_cb, op);
  return op->submit_status;
}

static sock_status op_send(tracker *t, size_t i, sock_handle h, const void *buf, size_t len) {
  op_t *op = tracker_op(t, i, h, len);
  size_t sent = UNWRITTEN;
  op->submit_status = sock_send_async(h, buf, len, SOCK_MSG_NONE, bytes_cb, op, &sent);
  op->sent_now = sent;
  ASSERT_MSG(sent != UNWRITTEN, "op %zu: *sent_now not written", i);
  return op->submit_status;
}

static sock_status op_accept(tracker *t, size_t i, sock_handle l, sock_handle *now) {
  op_t *op = tracker_op(t, i, l, 0);
  ASSERT_ULT(i, MAX_ACCEPTS);
  g_accepted[i] = UNWRITTEN_HANDLE;
  *now = UNWRITTEN_HANDLE;
  op->submit_status = sock_accept_async(l, accept_cb, op, now);
  ASSERT_MSG(*now != UNWRITTEN_HANDLE, "op %zu: *accepted_now not written", i);
  if (op->submit_status == SOCK_OK)
    ASSERT_MSG(*now != SOCK_INVALID_HANDLE, "accept SOCK_OK without a handle");
  else
    ASSERT_MSG(*now == SOCK_INVALID_HANDLE, "accept %s with a handle",
               status_name(op->submit_status));
  return op->submit_status;
}

/* ---- POSIX peers ---------------------------------------------------------- */

static void sin_loopback(struct sockaddr_in *a, int port) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* A TCP listener on 127.0.0.1 whose accept queue is full and never
 * accepted: Linux drops the SYNs of further connects, which then hang.
 * fillers[] are the connections that fill it (keep them open). */
typedef struct {
  int lfd;
  int port;
  char addr[SOCK_ADDRESS_MAX_LEN];
  int fillers[4];
} full_listener_t;

static void full_listener(full_listener_t *f) {
  struct sockaddr_in a;
  socklen_t sl = sizeof a;
  sin_loopback(&a, 0);
  f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(f->lfd);
  ASSERT_SYS(bind(f->lfd, (struct sockaddr *)&a, sizeof a));
  ASSERT_SYS(listen(f->lfd, 0));
  ASSERT_SYS(getsockname(f->lfd, (struct sockaddr *)&a, &sl));
  f->port = ntohs(a.sin_port);
  addr_text(f->addr, sizeof f->addr, AF_INET, f->port);
  for (int i = 0; i < 4; i++) {
    f->fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_SYS(f->fillers[i]);
    int r = connect(f->fillers[i], (struct sockaddr *)&a, sizeof a);
    ASSERT_MSG(r == 0 || errno == EINPROGRESS, "filler connect: %s", strerror(errno));
    sleep_ms(5);
  }
  sleep_ms(20);
}

static void full_listener_close(full_listener_t *f) {
  for (int i = 0; i < 4; i++)
    if (f->fillers[i] >= 0) close(f->fillers[i]);
  close(f->lfd);
}

/* A blocking POSIX client of 127.0.0.1:port, connected (in the accept
 * queue) when this returns. */
static int client_connect(int port) {
  return peer_connect(AF_INET, port);
}

/* ---- connect: refused ----------------------------------------------------- */

/* No listener on the port: SOCK_CONNECTION_REFUSED. The callback reports it
 * when the call returned SOCK_IO_PENDING (a failure seen inside the call
 * is returned, with no callback); the sends queued behind the connect
 * complete with its error, after it, in order. */
static void sc_refused(eng_t *g) {
  enum { NSEND = 3 };
  char addr[SOCK_ADDRESS_MAX_LEN];
  int bfd = peer_bound_not_listening(addr, sizeof addr);
  tracker t;
  tracker_init(&t, 1 + NSEND);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_status s = op_connect(&t, 0, h, addr);
  ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_CONNECTION_REFUSED, s);
  size_t expect = 0;
  if (s == SOCK_IO_PENDING) {
    expect = 1;
    for (size_t i = 1; i <= NSEND; i++) {
      sock_status ss = op_send(&t, i, h, "abc", 3);
      if (ss == SOCK_IO_PENDING) {
        ASSERT_UEQ(t.ops[i].sent_now, 0);
        expect++;
      } else { /* the connect already failed: refused at once */
        ASSERT_MSG(g->manual == 0, "manual engine: a send behind a pending connect got %s",
                   status_name(ss));
        ASSERT_MSG(ss == SOCK_CONNECTION_REFUSED || ss == SOCK_NOT_CONNECTED,
                   "send after a refused connect: %s", status_name(ss));
      }
    }
    eng_wait(g, &t, expect, 5000);
    eng_settle(g, &t, expect, 50);
    ASSERT_STATUS(SOCK_CONNECTION_REFUSED, t.ops[0].status);
    ASSERT_UEQ(t.order[0], 0);
    for (size_t k = 1; k < expect; k++) {
      op_t *op = &t.ops[t.order[k]];
      ASSERT_MSG(t.order[k] > t.order[k - 1], "callbacks out of order");
      ASSERT_STATUS(SOCK_CONNECTION_REFUSED, op->status);
      ASSERT_UEQ(op->bytes, 0);
    }
  } else {
    eng_settle(g, &t, 0, 50);
  }
  printf("# %s engine: refused %s, %zu sends behind it\n", g->name,
         s == SOCK_IO_PENDING ? "through the callback" : "inside the call",
         expect ? expect - 1 : 0);
  ASSERT_OK(sock_close(h));
  close(bfd);
  tracker_free(&t);
}

TEST_IMPL(async_connect_refused) {
  on_each_engine(sc_refused);
  return 0;
}

/* ---- connect: timed out --------------------------------------------------- */

/* SOCK_OPT_SEND_TIMEOUT_MS bounds the connect to a listener that drops the
 * SYN; the sends queued behind it complete with SOCK_TIMED_OUT too. */
static void sc_timed_out(eng_t *g) {
  enum { NSEND = 2 };
  const unsigned timeout = 300;
  full_listener_t f;
  full_listener(&f);
  tracker t;
  tracker_init(&t, 1 + NSEND);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, timeout));
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_IO_PENDING, op_connect(&t, 0, h, f.addr));
  for (size_t i = 1; i <= NSEND; i++) ASSERT_STATUS(SOCK_IO_PENDING, op_send(&t, i, h, "xy", 2));
  eng_wait(g, &t, 1 + NSEND, 5000);
  eng_settle(g, &t, 1 + NSEND, 50);
  ASSERT_STATUS(SOCK_TIMED_OUT, t.ops[0].status);
  ASSERT_MSG(t.ops[0].at_ms - t0 >= timeout * 3 / 4, "timed out after %llu ms, the timeout is %u",
             (unsigned long long)(t.ops[0].at_ms - t0), timeout);
  for (size_t k = 0; k <= NSEND; k++) ASSERT_UEQ(t.order[k], k);
  for (size_t i = 1; i <= NSEND; i++) {
    ASSERT_STATUS(SOCK_TIMED_OUT, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, 0);
  }
  ASSERT_OK(sock_close(h));
  full_listener_close(&f);
  tracker_free(&t);
}

TEST_IMPL(async_connect_timed_out) {
  on_each_engine(sc_timed_out);
  return 0;
}

/* ---- connect: a host name ------------------------------------------------- */

/* "localhost:PORT" is looked up off the caller's thread and connects; a
 * second socket closed while its name is being looked up gets
 * SOCK_OPERATION_ABORTED (or SOCK_OK if it was quicker), exactly once. */
static void sc_localhost(eng_t *g) {
  int port;
  char name[64], peer[SOCK_ADDRESS_MAX_LEN], want[SOCK_ADDRESS_MAX_LEN];
  int lfd = peer_listen(AF_INET, 0, &port);
  snprintf(name, sizeof name, "localhost:%d", port);
  addr_text(want, sizeof want, AF_INET, port);
  tracker t;
  tracker_init(&t, 2);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_IO_PENDING, op_connect(&t, 0, h, name));
  int pfd = peer_accept(lfd);
  eng_wait(g, &t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  peer_addr(h, peer);
  ASSERT_STR_EQ(peer, want);
  ASSERT_OK(sock_send(h, "hi", 2, 0, NULL));
  peer_expect(pfd, "hi", 2, "after connecting to localhost");

  sock_handle h2 = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_IO_PENDING, op_connect(&t, 1, h2, name));
  ASSERT_OK(sock_close(h2));
  eng_wait(g, &t, 2, 10000);
  eng_settle(g, &t, 2, 100);
  if (g->manual) /* nothing ran between the submission and the close */
    ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[1].status);
  else
    ASSERT_STATUS2(SOCK_OPERATION_ABORTED, SOCK_OK, t.ops[1].status);
  ASSERT_OK(sock_close(h));
  close(pfd);
  close(lfd);
  tracker_free(&t);
}

TEST_IMPL(async_connect_localhost) {
  on_each_engine(sc_localhost);
  return 0;
}

/* ---- connect: sends queued behind it ------------------------------------- */

/* Sends submitted right after connect_async returned SOCK_IO_PENDING leave
 * in order once it connected: the peer gets every byte, checksummed; the
 * callbacks run connect first, then the sends in order. */
static void sc_sends_behind(eng_t *g) {
  enum { NSEND = 16 };
  const size_t len = 256 * KiB;
  int port;
  int lfd = peer_listen(AF_INET, 0, &port);
  char addr[SOCK_ADDRESS_MAX_LEN];
  addr_text(addr, sizeof addr, AF_INET, port);
  uint8_t *buf = pattern_alloc(NSEND * len);
  tracker t;
  tracker_init(&t, 1 + NSEND);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_status s = op_connect(&t, 0, h, addr);
  ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_OK, s);
  size_t expect = s == SOCK_IO_PENDING, queued = 0;
  for (size_t i = 1; i <= NSEND; i++) {
    sock_status ss = op_send(&t, i, h, buf + (i - 1) * len, len);
    ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_OK, ss);
    if (ss == SOCK_IO_PENDING) expect++;
    if (ss == SOCK_IO_PENDING && t.ops[i].sent_now == 0) queued++;
  }
  if (g->manual) ASSERT_UEQ(queued, NSEND); /* nothing moves before a poll */
  int pfd = peer_accept(lfd);
  collector_t c = {0};
  c.fd = pfd;
  c.expect = NSEND * len;
  collector_start(&c);
  eng_wait(g, &t, expect, 20000);
  eng_settle(g, &t, expect, 50);
  collector_join(&c);
  ASSERT_UEQ(c.got, NSEND * len);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  ASSERT_UEQ(fnv1a(FNV1A_INIT, c.buf, c.got), fnv1a(FNV1A_INIT, buf, NSEND * len));
  if (s == SOCK_IO_PENDING) {
    ASSERT_STATUS(SOCK_OK, t.ops[0].status);
    ASSERT_UEQ(t.order[0], 0);
  }
  for (size_t k = 1; k < expect; k++) ASSERT_MSG(t.order[k] > t.order[k - 1], "out of order");
  for (size_t i = 1; i <= NSEND; i++)
    if (t.ops[i].submit_status == SOCK_IO_PENDING) {
      ASSERT_STATUS(SOCK_OK, t.ops[i].status);
      ASSERT_UEQ(t.ops[i].bytes, len);
    }
  printf("# %s engine: connect %s, %zu of %d sends queued behind it\n", g->name,
         status_name(s), queued, NSEND);
  ASSERT_OK(sock_close(h));
  long long mm;
  int reset;
  ASSERT_UEQ(peer_drain_until_end(pfd, 0, &mm, &reset), 0);
  ASSERT_MSG(!reset, "everything was sent, yet the close reset the connection");
  close(pfd);
  close(lfd);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
}

TEST_IMPL(async_connect_sends_queue_behind) {
  on_each_engine(sc_sends_behind);
  return 0;
}

/* sock_cancel_sends ends the sends queued behind a pending connect and
 * leaves the connect alone: it completes once the listener has room (the
 * SYN is sent again after about a second). */
static void sc_cancel_leaves_connect(eng_t *g) {
  full_listener_t f;
  full_listener(&f);
  tracker t;
  tracker_init(&t, 3);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_IO_PENDING, op_connect(&t, 0, h, f.addr));
  ASSERT_STATUS(SOCK_IO_PENDING, op_send(&t, 1, h, "lost", 4));
  ASSERT_OK(sock_cancel_sends(h));
  eng_wait(g, &t, 1, 5000);
  eng_pump(g, 100);
  ASSERT_UEQ(tracker_calls(&t), 1); /* the connect is still pending */
  ASSERT_UEQ(t.order[0], 1);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 0);
  /* make room: the fillers go away, those in the queue are accepted */
  for (int i = 0; i < 4; i++) {
    close(f.fillers[i]);
    f.fillers[i] = -1;
  }
  while (peer_readable(f.lfd, 0)) {
    int fd = accept(f.lfd, NULL, NULL);
    ASSERT_SYS(fd);
    close(fd);
  }
  eng_wait(g, &t, 2, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  char mine[SOCK_ADDRESS_MAX_LEN];
  local_addr(h, mine);
  int pfd = -1;
  while (pfd < 0) { /* a filler that got in late is not ours */
    int fd = peer_accept(f.lfd);
    struct sockaddr_in a;
    socklen_t sl = sizeof a;
    ASSERT_SYS(getpeername(fd, (struct sockaddr *)&a, &sl));
    if (ntohs(a.sin_port) == addr_port(mine))
      pfd = fd;
    else
      close(fd);
  }
  ASSERT_OK(sock_send(h, "k", 1, 0, NULL));
  peer_expect(pfd, "k", 1, "send after the connect");
  eng_settle(g, &t, 2, 50);
  ASSERT_OK(sock_close(h));
  close(pfd);
  full_listener_close(&f);
  tracker_free(&t);
}

TEST_IMPL(async_connect_cancel_sends_leaves_connect) {
  on_each_engine(sc_cancel_leaves_connect);
  return 0;
}

/* ---- connect: close while connecting ------------------------------------ */

static void sc_close_connecting(eng_t *g) {
  full_listener_t f;
  full_listener(&f);
  tracker t;
  tracker_init(&t, 2);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_IO_PENDING, op_connect(&t, 0, h, f.addr));
  ASSERT_STATUS(SOCK_IO_PENDING, op_send(&t, 1, h, "gone", 4));
  eng_pump(g, 50);
  ASSERT_UEQ(tracker_calls(&t), 0);
  ASSERT_OK(sock_close(h));
  eng_wait(g, &t, 2, 5000);
  eng_settle(g, &t, 2, 200);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[0].status);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 0);
  ASSERT_UEQ(t.order[0], 0);
  ASSERT_UEQ(t.order[1], 1);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_connect_async(h, f.addr, never_status_cb, NULL));
  full_listener_close(&f);
  tracker_free(&t);
}

TEST_IMPL(async_connect_close_while_connecting) {
  on_each_engine(sc_close_connecting);
  return 0;
}

/* ---- connect: Unix sockets finish inside the call ------------------------- */

/* A Unix connect to a listening path finishes inside the call: SOCK_OK,
 * no callback. With the listener's backlog full: SOCK_WOULD_BLOCK, no
 * callback. */
static void sc_unix_inline(eng_t *g) {
  char path[108], addr[160];
  unix_path(path, sizeof path, "conn");
  snprintf(addr, sizeof addr, "unix:%s", path);
  int lfd = peer_listen_unix(path, 0);
  ASSERT_SYS(listen(lfd, 0));
  tracker t;
  tracker_init(&t, 1);
  sock_handle h = eng_socket(g, SOCK_FAMILY_UNIX, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_connect_async(h, addr, never_status_cb, NULL));
  ASSERT_OK(sock_send(h, "u", 1, 0, NULL));
  int pfd = peer_accept(lfd);
  peer_expect(pfd, "u", 1, "unix connect");
  /* fill the backlog (0: one connection waits) with connects never accepted */
  sock_handle more[4];
  sock_status last = SOCK_OK;
  int n = 0;
  for (; n < 4 && last == SOCK_OK; n++) {
    more[n] = eng_socket(g, SOCK_FAMILY_UNIX, SOCK_TYPE_STREAM);
    last = sock_connect_async(more[n], addr, never_status_cb, NULL);
    ASSERT_STATUS2(SOCK_OK, SOCK_WOULD_BLOCK, last);
  }
  ASSERT_STATUS(SOCK_WOULD_BLOCK, last);
  eng_pump(g, 50);
  for (int i = 0; i < n; i++) ASSERT_OK(sock_close(more[i]));
  ASSERT_OK(sock_close(h));
  close(pfd);
  close(lfd);
  unlink(path);
  tracker_free(&t);
}

TEST_IMPL(async_connect_unix_inline) {
  on_each_engine(sc_unix_inline);
  return 0;
}

/* ---- accept: order, handles, the listener's engine ------------------------ */

static sock_handle eng_listener(eng_t *g, char *addr) {
  sock_handle l = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_bind(l, "127.0.0.1:0"));
  ASSERT_OK(sock_listen(l, 256));
  local_addr(l, addr);
  return l;
}

/* Several outstanding accepts complete in submission order, each with a
 * distinct handle that works, bound to the listener's engine (its async
 * receive completes there), close-on-exec, in blocking mode. A connection
 * that waits when no accept is pending is returned inside the call. */
static void sc_accept_order(eng_t *g) {
  enum { K = 8 };
  char laddr[SOCK_ADDRESS_MAX_LEN];
  char rb[K][4];
  int cfd[K + 1];
  sock_handle now;
  tracker t, tr;
  tracker_init(&t, K + 1);
  tracker_init(&tr, K);
  sock_handle l = eng_listener(g, laddr);
  for (size_t i = 0; i < K; i++) ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, i, l, &now));
  ASSERT_OK(sock_cancel_sends(l)); /* leaves accepts alone */
  eng_pump(g, 50);
  ASSERT_UEQ(tracker_calls(&t), 0);
  for (int i = 0; i < K; i++) cfd[i] = client_connect(addr_port(laddr));
  eng_wait(g, &t, K, 10000);
  eng_settle(g, &t, K, 50);
  sock_handle a[K];
  for (size_t k = 0; k < K; k++) {
    ASSERT_UEQ(t.order[k], k);
    ASSERT_STATUS(SOCK_OK, t.ops[k].status);
    a[k] = g_accepted[k];
    ASSERT(a[k] != SOCK_INVALID_HANDLE && a[k] != UNWRITTEN_HANDLE && a[k] != l);
    for (size_t j = 0; j < k; j++) ASSERT_MSG(a[j] != a[k], "accepts %zu and %zu got one handle", j, k);
    int64_t v = -1;
    ASSERT_OK(sock_get_option(a[k], SOCK_OPT_BLOCKING, &v));
    ASSERT_EQ(v, 1);
    int fl = fcntl(handle_fd(a[k]), F_GETFD);
    ASSERT_SYS(fl);
    ASSERT_MSG(fl & FD_CLOEXEC, "accepted socket %zu is not close-on-exec", k);
    /* nothing sent yet: the receive waits on the listener's engine */
    op_t *op = tracker_op(&tr, k, a[k], sizeof rb[k]);
    size_t n = UNWRITTEN;
    ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(a[k], rb[k], sizeof rb[k], 0, bytes_cb, op, &n));
  }
  for (int i = 0; i < K; i++) {
    char c = (char)('A' + i);
    ASSERT_SYS(send(cfd[i], &c, 1, 0));
  }
  eng_wait(g, &tr, K, 10000);
  eng_settle(g, &tr, K, 20);
  for (int k = 0; k < K; k++) { /* the accept queue is first in, first out */
    ASSERT_STATUS(SOCK_OK, tr.ops[k].status);
    ASSERT_UEQ(tr.ops[k].bytes, 1);
    ASSERT_MSG(rb[k][0] == 'A' + k, "accept %d got the connection of client %c", k, rb[k][0]);
    char back = (char)('a' + k);
    ASSERT_OK(sock_send(a[k], &back, 1, 0, NULL));
    peer_expect(cfd[k], &back, 1, "reply through the accepted handle");
  }
  /* a connection waiting, no accept pending: SOCK_OK inside the call */
  cfd[K] = client_connect(addr_port(laddr));
  ASSERT(peer_readable(handle_fd(l), 5000));
  ASSERT_OK(op_accept(&t, K, l, &now));
  ASSERT_OK(sock_send(now, "i", 1, 0, NULL));
  peer_expect(cfd[K], "i", 1, "the connection accepted inside the call");
  eng_settle(g, &t, K, 50);
  ASSERT_OK(sock_close(now));
  for (int k = 0; k < K; k++) ASSERT_OK(sock_close(a[k]));
  for (int k = 0; k <= K; k++) close(cfd[k]);
  ASSERT_OK(sock_close(l));
  tracker_free(&t);
  tracker_free(&tr);
}

TEST_IMPL(async_accept_order) {
  on_each_engine(sc_accept_order);
  return 0;
}

/* ---- accept: a chain that loops on SOCK_OK --------------------------------- */

enum { CHAIN_CONNS = 200 };

typedef struct {
  sock_handle l;
  sock_handle hs[CHAIN_CONNS];
  atomic_int n;
  atomic_int depth, max_depth, callbacks;
  atomic_int ended; /* an error ended the chain */
  sock_status end;
} accept_chain_t;

static void chain_accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  accept_chain_t *c = ud;
  eng_check();
  int d = atomic_fetch_add(&c->depth, 1) + 1;
  int m = atomic_load(&c->max_depth);
  while (d > m && !atomic_compare_exchange_weak(&c->max_depth, &m, d)) {
  }
  atomic_fetch_add(&c->callbacks, 1);
  /* the header's loop: go on here while accepts finish inside the call */
  while (s == SOCK_OK) {
    int n = atomic_load(&c->n);
    ASSERT(n < CHAIN_CONNS);
    c->hs[n] = a;
    atomic_store(&c->n, n + 1);
    if (n + 1 == CHAIN_CONNS) break;
    s = sock_accept_async(l, chain_accept_cb, c, &a);
  }
  if (s != SOCK_OK && s != SOCK_IO_PENDING) {
    c->end = s;
    atomic_store(&c->ended, 1);
  }
  atomic_fetch_sub(&c->depth, 1);
}

static int pred_chain(void *p) {
  accept_chain_t *c = p;
  return atomic_load(&c->n) == CHAIN_CONNS || atomic_load(&c->ended);
}

static void sc_accept_chain(eng_t *g) {
  static accept_chain_t c;
  static int cfd[CHAIN_CONNS];
  char laddr[SOCK_ADDRESS_MAX_LEN];
  memset(&c, 0, sizeof c);
  c.l = eng_listener(g, laddr);
  sock_handle now = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_IO_PENDING, sock_accept_async(c.l, chain_accept_cb, &c, &now));
  ASSERT(now == SOCK_INVALID_HANDLE);
  for (int i = 0; i < CHAIN_CONNS; i++) cfd[i] = client_connect(addr_port(laddr));
  eng_wait_until(g, pred_chain, &c, 20000, "the accept chain");
  ASSERT_MSG(!atomic_load(&c.ended), "the chain ended with %s after %d connections",
             status_name(c.end), atomic_load(&c.n));
  ASSERT_EQ(atomic_load(&c.max_depth), 1);
  for (int i = 0; i < CHAIN_CONNS; i++) {
    ASSERT(c.hs[i] != SOCK_INVALID_HANDLE);
    for (int j = 0; j < i; j++) ASSERT_MSG(c.hs[i] != c.hs[j], "one handle accepted twice");
  }
  printf("# %s engine: %d connections, %d through the callback, recursion depth %d\n", g->name,
         CHAIN_CONNS, atomic_load(&c.callbacks), atomic_load(&c.max_depth));
  ASSERT_OK(sock_send(c.hs[CHAIN_CONNS - 1], "e", 1, 0, NULL));
  int got_e = 0;
  for (int i = 0; i < CHAIN_CONNS; i++)
    if (peer_readable(cfd[i], i == CHAIN_CONNS - 1 ? 2000 : 0)) got_e++;
  ASSERT_EQ(got_e, 1);
  for (int i = 0; i < CHAIN_CONNS; i++) {
    ASSERT_OK(sock_close(c.hs[i]));
    close(cfd[i]);
  }
  ASSERT_OK(sock_close(c.l));
}

TEST_IMPL(async_accept_chain_no_recursion) {
  raise_fd_limit();
  on_each_engine(sc_accept_chain);
  return 0;
}

/* ---- accept: timeout --------------------------------------------------------- */

/* SOCK_OPT_RECV_TIMEOUT_MS bounds pending accepts (SOCK_TIMED_OUT, no
 * handle, in order); the listener goes on working. */
static void sc_accept_timeout(eng_t *g) {
  const unsigned timeout = 300;
  char laddr[SOCK_ADDRESS_MAX_LEN];
  sock_handle now;
  tracker t;
  tracker_init(&t, 3);
  sock_handle l = eng_listener(g, laddr);
  ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, timeout));
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, 0, l, &now));
  ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, 1, l, &now));
  eng_wait(g, &t, 2, 5000);
  eng_settle(g, &t, 2, 50);
  for (size_t k = 0; k < 2; k++) {
    ASSERT_UEQ(t.order[k], k);
    ASSERT_STATUS(SOCK_TIMED_OUT, t.ops[k].status);
    ASSERT(g_accepted[k] == SOCK_INVALID_HANDLE);
    ASSERT_MSG(t.ops[k].at_ms - t0 >= timeout * 3 / 4, "timed out after %llu ms",
               (unsigned long long)(t.ops[k].at_ms - t0));
  }
  ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, 2, l, &now));
  int cfd = client_connect(addr_port(laddr));
  eng_wait(g, &t, 3, 5000);
  ASSERT_STATUS(SOCK_OK, t.ops[2].status);
  ASSERT_OK(sock_send(g_accepted[2], "t", 1, 0, NULL));
  peer_expect(cfd, "t", 1, "accept after the timeouts");
  eng_settle(g, &t, 3, 20);
  ASSERT_OK(sock_close(g_accepted[2]));
  ASSERT_OK(sock_close(l));
  close(cfd);
  tracker_free(&t);
}

TEST_IMPL(async_accept_timeout) {
  on_each_engine(sc_accept_timeout);
  return 0;
}

/* ---- accept: out of descriptors ------------------------------------------------ */

enum { MAX_STAT_FDS = 64, MAX_FILL = 4096 };

/* Opens /proc/self/task/TID/stat of every thread named sock-engine-*. */
static int open_engine_stats(int *fds) {
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  ASSERT(d != NULL);
  struct dirent *de;
  while ((de = readdir(d)) != NULL && n < MAX_STAT_FDS) {
    if (de->d_name[0] == '.') continue;
    char path[320], comm[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(comm, sizeof comm, f) == NULL) comm[0] = 0;
    fclose(f);
    if (strncmp(comm, "sock-engine-", 12) != 0) continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) fds[n++] = fd;
  }
  closedir(d);
  return n;
}

/* utime + stime of those threads, in ms. */
static long long engine_cpu_ms(const int *fds, int n) {
  long long ticks = 0;
  for (int i = 0; i < n; i++) {
    char buf[1024];
    ssize_t r = pread(fds[i], buf, sizeof buf - 1, 0);
    ASSERT_SYS(r);
    buf[r] = 0;
    char *p = strrchr(buf, ')');
    ASSERT(p != NULL);
    unsigned long long ut = 0, st = 0;
    /* after the name: state (3), then fields 4..13, utime (14), stime (15) */
    ASSERT_EQ(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
    ticks += (long long)(ut + st);
  }
  return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

static long long thread_cpu_ms(void) {
  struct timespec ts;
  ASSERT_SYS(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts));
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int highest_fd(void) {
  int hi = 0;
  DIR *d = opendir("/proc/self/fd");
  ASSERT(d != NULL);
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.' && atoi(de->d_name) > hi) hi = atoi(de->d_name);
  closedir(d);
  return hi;
}

static void client_connect_fd(int fd, int port) {
  struct sockaddr_in a;
  sin_loopback(&a, port);
  ASSERT_SYS(connect(fd, (struct sockaddr *)&a, sizeof a));
}

/* Out of descriptors, a pending accept completes with
 * SOCK_TOO_MANY_OPEN_SOCKETS and the engine does not spin on the listener
 * while the condition lasts (its CPU time over a second is measured);
 * once descriptors are free, the waiting connections are accepted. */
static void sc_emfile(eng_t *g) {
  enum { NCL = 3 };
  char laddr[SOCK_ADDRESS_MAX_LEN];
  static int fill[MAX_FILL];
  int statfd[MAX_STAT_FDS], nstat = 0, cl[NCL], nfill = 0;
  sock_handle now;
  tracker t;
  tracker_init(&t, 6);
  sock_handle l = eng_listener(g, laddr);
  int port = addr_port(laddr);
  ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, 0, l, &now)); /* the engine is running now */
  if (!g->manual) {
    /* a new thread names itself once it runs: look again for a while */
    uint64_t t0 = now_ms();
    while ((nstat = open_engine_stats(statfd)) == 0 && now_ms() - t0 < wait_bound_ms(2000))
      sleep_ms(5);
    ASSERT_MSG(nstat > 0, "no thread named sock-engine-* found");
  }
  for (int i = 0; i < NCL; i++) {
    cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_SYS(cl[i]);
  }
  struct rlimit old, low;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &old));
  low = old;
  low.rlim_cur = (rlim_t)highest_fd() + 1 + 8;
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &low));
  for (;;) {
    int fd = dup(cl[0]);
    if (fd == -1) break;
    ASSERT_ULT(nfill, MAX_FILL);
    fill[nfill++] = fd;
  }
  ASSERT_EQ(errno, EMFILE);

  /* a connection arrives: the pending accept cannot take it */
  client_connect_fd(cl[0], port);
  eng_wait(g, &t, 1, 5000);
  ASSERT_STATUS(SOCK_TOO_MANY_OPEN_SOCKETS, t.ops[0].status);
  ASSERT(g_accepted[0] == SOCK_INVALID_HANDLE);

  /* the condition lasts (a connection waits, no descriptor is free), with
   * another accept submitted: the engine must stay idle */
  sock_status s1 = op_accept(&t, 1, l, &now);
  ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_TOO_MANY_OPEN_SOCKETS, s1);
  const unsigned span = 1000;
  long long cpu;
  uint64_t t0 = now_ms();
  if (g->manual) {
    long long c0 = thread_cpu_ms();
    eng_pump(g, span);
    cpu = thread_cpu_ms() - c0;
  } else {
    long long c0 = engine_cpu_ms(statfd, nstat);
    sleep_ms(span);
    cpu = engine_cpu_ms(statfd, nstat) - c0;
  }
  uint64_t took = now_ms() - t0;
  printf("# engine CPU under EMFILE (%s engine): %lld ms over %llu ms (the accept behind: %s)\n",
         g->name, cpu, (unsigned long long)took, status_name(s1));
  ASSERT_MSG(cpu * 10 < (long long)took, "%s engine: %lld ms of CPU over %llu ms out of descriptors: it spins",
             g->name, cpu, (unsigned long long)took);
  size_t expect = 1;
  if (s1 == SOCK_IO_PENDING) {
    /* a new connection makes the engine look again: still no descriptor */
    client_connect_fd(cl[1], port);
    eng_wait(g, &t, 2, 5000);
    ASSERT_STATUS(SOCK_TOO_MANY_OPEN_SOCKETS, t.ops[1].status);
    expect = 2;
  } else {
    client_connect_fd(cl[1], port);
  }

  /* descriptors again: the waiting connections are accepted */
  for (int i = 0; i < nfill; i++) close(fill[i]);
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &old));
  sock_handle a[NCL];
  ASSERT_OK(op_accept(&t, 2, l, &a[0]));
  ASSERT_OK(op_accept(&t, 3, l, &a[1]));
  ASSERT_STATUS(SOCK_IO_PENDING, op_accept(&t, 4, l, &now));
  client_connect_fd(cl[2], port);
  eng_wait(g, &t, expect + 1, 5000);
  ASSERT_STATUS(SOCK_OK, t.ops[4].status);
  a[2] = g_accepted[4];
  for (int i = 0; i < NCL; i++) {
    char c = (char)('0' + i), got = 0;
    ASSERT_SYS(send(cl[i], &c, 1, 0));
    ASSERT_OK(sock_set_option(a[i], SOCK_OPT_RECV_TIMEOUT_MS, 5000));
    recv_exact(a[i], &got, 1);
    ASSERT_EQ(got, c);
    ASSERT_OK(sock_close(a[i]));
    close(cl[i]);
  }
  eng_settle(g, &t, expect + 1, 20);
  for (int i = 0; i < nstat; i++) close(statfd[i]);
  ASSERT_OK(sock_close(l));
  tracker_free(&t);
}

TEST_IMPL(async_accept_emfile_no_spin) {
  on_each_engine(sc_emfile);
  return 0;
}

/* ---- graceful end: 32 MiB drained, then FIN ------------------------------- */

static atomic_int g_close_in_cb;

static void shut_close_cb(sock_handle h, sock_status s, void *ud) {
  eng_check();
  atomic_store(&g_close_in_cb, (int)sock_close(h) + 1);
  track_cb(h, s, 0, ud);
}

/* Many async sends, then sock_shutdown_async, then sock_close in its
 * callback: the peer reads all 32 MiB, intact, then a clean end of stream;
 * the shutdown's callback runs after every send's; a send submitted after
 * the shutdown fails at once with SOCK_SHUTDOWN. */
static void sc_drain_then_fin(eng_t *g) {
  enum { NSEND = 32 };
  const size_t len = 1 * MiB;
  int port;
  int lfd = peer_listen(AF_INET, 0, &port);
  char addr[SOCK_ADDRESS_MAX_LEN];
  addr_text(addr, sizeof addr, AF_INET, port);
  uint8_t *buf = pattern_alloc(NSEND * len);
  tracker t;
  tracker_init(&t, NSEND + 2);
  atomic_store(&g_close_in_cb, 0);
  sock_handle h = eng_socket(g, SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_status sc = op_connect(&t, 0, h, addr);
  ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_OK, sc);
  size_t expect = sc == SOCK_IO_PENDING;
  for (size_t i = 1; i <= NSEND; i++) {
    sock_status s = op_send(&t, i, h, buf + (i - 1) * len, len);
    ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_OK, s);
    expect += s == SOCK_IO_PENDING;
  }
  op_t *sop = tracker_op(&t, NSEND + 1, h, 0);
  sop->submit_status = sock_shutdown_async(h, shut_close_cb, sop);
  ASSERT_STATUS(SOCK_IO_PENDING, sop->submit_status);
  expect++;
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send_async(h, "late", 4, 0, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  int pfd = peer_accept(lfd);
  collector_t c = {0};
  c.fd = pfd;
  collector_start(&c); /* until end of stream */
  eng_wait(g, &t, expect, 30000);
  eng_settle(g, &t, expect, 50);
  collector_join(&c);
  ASSERT_MSG(c.eof && !c.reset, "the peer did not see a clean end of stream");
  ASSERT_UEQ(c.got, NSEND * len);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  ASSERT_UEQ(fnv1a(FNV1A_INIT, c.buf, c.got), fnv1a(FNV1A_INIT, buf, NSEND * len));
  for (size_t i = 1; i <= NSEND; i++)
    if (t.ops[i].submit_status == SOCK_IO_PENDING) {
      ASSERT_STATUS(SOCK_OK, t.ops[i].status);
      ASSERT_UEQ(t.ops[i].bytes, len);
    }
  for (size_t k = 1; k < expect; k++) ASSERT_MSG(t.order[k] > t.order[k - 1], "out of order");
  ASSERT_UEQ(t.order[expect - 1], NSEND + 1); /* the shutdown last */
  ASSERT_STATUS(SOCK_OK, sop->status);
  ASSERT_STATUS(SOCK_OK, atomic_load(&g_close_in_cb) - 1);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(h));
  printf("# %s engine: %zu MiB, checksum %016" PRIx64 ", then end of stream\n", g->name,
         c.got / MiB, fnv1a(FNV1A_INIT, c.buf, c.got));
  close(pfd);
  close(lfd);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
}

TEST_IMPL(async_shutdown_32mib_drained_then_fin) {
  on_each_engine(sc_drain_then_fin);
  return 0;
}

/* ---- close: RST when unsent data is discarded, FIN otherwise ------------- */

static void sc_rst_or_fin(eng_t *g) {
  enum { NSEND = 4 };
  const size_t len = 1 * MiB;
  int pfd, pfd2;
  tracker t;
  tracker_init(&t, NSEND + 1);
  uint8_t *buf = pattern_alloc(NSEND * len);
  /* pending sends discarded by the close: a prefix, then a reset */
  sock_handle h = small_pair(4096, &pfd);
  if (g->e) ASSERT_OK(sock_attach(h, g->e));
  for (size_t i = 0; i < NSEND; i++)
    ASSERT_STATUS(SOCK_IO_PENDING, op_send(&t, i, h, buf + i * len, len));
  ASSERT_OK(sock_close(h));
  eng_wait(g, &t, NSEND, 5000);
  size_t sum = 0;
  for (size_t i = 0; i < NSEND; i++) {
    ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[i].status);
    sum += t.ops[i].bytes;
  }
  long long mm;
  int reset;
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_MSG(reset, "unsent data discarded, yet the peer saw a clean end after %zu bytes", got);
  ASSERT_ULE(got, sum);
  ASSERT_EQ(mm, -1);
  /* everything went: a clean end with every byte */
  sock_handle h2 = small_pair(4096, &pfd2);
  if (g->e) ASSERT_OK(sock_attach(h2, g->e));
  collector_t c = {0};
  c.fd = pfd2;
  c.allow_reset = 1;
  collector_start(&c);
  sock_status s = op_send(&t, NSEND, h2, buf, 256 * KiB);
  ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_OK, s);
  if (s == SOCK_IO_PENDING) {
    eng_wait(g, &t, NSEND + 1, 10000);
    ASSERT_STATUS(SOCK_OK, t.ops[NSEND].status);
  }
  ASSERT_OK(sock_close(h2));
  collector_join(&c);
  ASSERT_MSG(c.eof && !c.reset, "everything was sent, yet the close reset the connection");
  ASSERT_UEQ(c.got, 256 * KiB);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  eng_settle(g, &t, NSEND + (s == SOCK_IO_PENDING), 50);
  close(pfd);
  close(pfd2);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
}

TEST_IMPL(async_close_unsent_resets_else_fin) {
  on_each_engine(sc_rst_or_fin);
  return 0;
}

/* ---- datagrams ----------------------------------------------------------- */

enum { NDG = 3 };

static struct {
  char expect[SOCK_ADDRESS_MAX_LEN]; /* the sender's local address */
  char addr[NDG + 1][SOCK_ADDRESS_MAX_LEN];
  atomic_int addr_bad;
} g_dg;

/* A receive's callback: its address buffer holds the sender by now. */
static void dgram_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  op_t *op = ud;
  eng_check();
  if (op->index < NDG && strcmp(g_dg.addr[op->index], g_dg.expect) != 0) {
    fprintf(stderr, "receive %zu: sender \"%.*s\", expected \"%s\"\n", op->index,
            (int)sizeof g_dg.addr[0], g_dg.addr[op->index], g_dg.expect);
    atomic_fetch_add(&g_dg.addr_bad, 1);
  }
  track_cb(h, s, n, ud);
}

/* send_to_async / recv_from_async on unconnected sockets: pending receives
 * complete in order, each with one whole datagram and the sender's local
 * address; a datagram waiting is received inside the call; one longer
 * than the buffer is cut and reported with SOCK_MESSAGE_SIZE. */
static void dgrams(eng_t *g, int32_t family, const char *any) {
  static const size_t sizes[NDG] = {100, 1000, 1400};
  char baddr[SOCK_ADDRESS_MAX_LEN];
  static uint8_t rb[NDG + 1][2048];
  tracker tr, ts;
  tracker_init(&tr, NDG + 1);
  tracker_init(&ts, NDG + 1);
  memset(&g_dg, 0, sizeof g_dg);
  sock_handle a = eng_socket(g, family, SOCK_TYPE_DGRAM);
  sock_handle b = eng_socket(g, family, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(a, any));
  ASSERT_OK(sock_bind(b, any));
  local_addr(a, g_dg.expect);
  local_addr(b, baddr);
  uint8_t *src = pattern_alloc(4096);
  for (size_t i = 0; i < NDG; i++) {
    memset(g_dg.addr[i], 0x55, sizeof g_dg.addr[i]);
    op_t *op = tracker_op(&tr, i, b, sizeof rb[i]);
    size_t n = UNWRITTEN;
    ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_from_async(b, rb[i], sizeof rb[i], 0, g_dg.addr[i],
                                                        sizeof g_dg.addr[i], dgram_cb, op, &n));
    ASSERT_UEQ(n, 0);
  }
  size_t sends_pending = 0;
  for (size_t i = 0; i < NDG; i++) {
    op_t *op = tracker_op(&ts, i, a, sizes[i]);
    size_t n = UNWRITTEN;
    sock_status s = sock_send_to_async(a, src + i, sizes[i], 0, baddr, bytes_cb, op, &n);
    ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
    if (s == SOCK_OK) ASSERT_UEQ(n, sizes[i]);
    else ASSERT_UEQ(n, 0); /* whole or not at all */
    op->submit_status = s;
    sends_pending += s == SOCK_IO_PENDING;
  }
  eng_wait(g, &tr, NDG, 5000);
  eng_wait(g, &ts, sends_pending, 5000);
  eng_settle(g, &tr, NDG, 20);
  eng_settle(g, &ts, sends_pending, 0);
  ASSERT_EQ(atomic_load(&g_dg.addr_bad), 0);
  for (size_t i = 0; i < NDG; i++) {
    ASSERT_UEQ(tr.order[i], i);
    ASSERT_STATUS(SOCK_OK, tr.ops[i].status);
    ASSERT_UEQ(tr.ops[i].bytes, sizes[i]);
    ASSERT_MSG(memcmp(rb[i], src + i, sizes[i]) == 0, "datagram %zu differs", i);
    if (ts.ops[i].submit_status == SOCK_IO_PENDING) {
      ASSERT_STATUS(SOCK_OK, ts.ops[i].status);
      ASSERT_UEQ(ts.ops[i].bytes, sizes[i]);
    }
  }
  /* a datagram already waiting: received inside the call, address written */
  ASSERT_OK(sock_send_to(a, src, 77, 0, baddr, NULL));
  ASSERT(peer_readable(handle_fd(b), 5000));
  char from[SOCK_ADDRESS_MAX_LEN];
  memset(from, 0x55, sizeof from);
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_recv_from_async(b, rb[NDG], sizeof rb[NDG], 0, from, sizeof from, never_bytes_cb,
                                 NULL, &n));
  ASSERT_UEQ(n, 77);
  ASSERT_STR_EQ(from, g_dg.expect);
  ASSERT(memcmp(rb[NDG], src, 77) == 0);
  /* longer than the buffer: cut, SOCK_MESSAGE_SIZE */
  memset(g_dg.addr[0], 0x55, sizeof g_dg.addr[0]);
  op_t *op = tracker_op(&tr, NDG, b, 10);
  op->index = 0; /* dgram_cb checks g_dg.addr[0] */
  op = &tr.ops[NDG];
  op->index = NDG;
  ASSERT_STATUS(SOCK_IO_PENDING,
                sock_recv_from_async(b, rb[0], 10, 0, NULL, 0, dgram_cb, op, &n));
  ASSERT_OK(sock_send_to(a, src, 500, 0, baddr, NULL));
  eng_wait(g, &tr, NDG + 1, 5000);
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, tr.ops[NDG].status);
  ASSERT_UEQ(tr.ops[NDG].bytes, 10);
  ASSERT(memcmp(rb[0], src, 10) == 0);
  eng_settle(g, &tr, NDG + 1, 20);
  ASSERT_OK(sock_close(a));
  ASSERT_OK(sock_close(b));
  free(src);
  tracker_free(&tr);
  tracker_free(&ts);
}

static void sc_dgrams_v4(eng_t *g) {
  dgrams(g, SOCK_FAMILY_INET, "127.0.0.1:0");
}

static void sc_dgrams_v6(eng_t *g) {
  dgrams(g, SOCK_FAMILY_INET6, "[::1]:0");
}

TEST_IMPL(async_datagrams_ipv4) {
  on_each_engine(sc_dgrams_v4);
  return 0;
}

TEST_IMPL(async_datagrams_ipv6) {
  sock_handle probe = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM);
  sock_status s = sock_bind(probe, "[::1]:0");
  ASSERT_OK(sock_close(probe));
  if (s != SOCK_OK) {
    printf("# skipped: no IPv6 loopback here (%s)\n", status_name(s));
    return 0;
  }
  on_each_engine(sc_dgrams_v6);
  return 0;
}

/* ---- bad arguments: no callback ever ------------------------------------ */

/* What the bad-input matrix (test-matrix.c) does not cover: wrong family,
 * wrong state, a second connect, sends after a graceful shutdown, a freed
 * engine. Every call fails at once and no callback ever runs. */
TEST_IMPL(async_connection_bad_arguments_no_callback) {
  full_listener_t f;
  full_listener(&f);
  char buf[64], addr[SOCK_ADDRESS_MAX_LEN], laddr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  sock_handle out;
  int pfd;
  tracker t;
  tracker_init(&t, 2);

  /* a v6 address for a v4 socket */
  sock_handle c = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED,
                sock_connect_async(c, "[::1]:9", never_status_cb, NULL));
  /* a second connect while one is under way */
  op_t *op = tracker_op(&t, 0, c, 0);
  ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(c, f.addr, status_cb, op));
  ASSERT_STATUS(SOCK_ALREADY_IN_PROGRESS, sock_connect_async(c, f.addr, never_status_cb, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept_async(c, never_accept_cb, NULL, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  ASSERT_OK(sock_close(c));
  tracker_wait(&t, 1, 5000);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[0].status);

  /* accept on a datagram socket, on a connected stream; shutdown of a listener */
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  local_addr(u, addr);
  out = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept_async(u, never_accept_cb, NULL, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  out = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept_async(h, never_accept_cb, NULL, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", laddr);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_shutdown_async(l, never_status_cb, NULL));
  /* datagram to an address of another family */
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED,
                sock_send_to_async(u, "x", 1, 0, "[::1]:9", never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  /* a datagram too large for UDP goes not at all */
  static uint8_t big[70000];
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE,
                sock_send_to_async(u, big, sizeof big, 0, addr, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  /* receive-from on a stream that is not connected */
  sock_handle unc = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_recv_from_async(unc, buf, sizeof buf, 0, addr,
                                                         sizeof addr, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);

  /* after a graceful shutdown: every send fails at once */
  ASSERT_OK(sock_shutdown_async(h, never_status_cb, NULL)); /* nothing pending: inside the call */
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send_async(h, "x", 1, 0, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  sock_buf b = {"x", 1};
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_sendv_async(h, &b, 1, 0, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN,
                sock_send_to_async(h, "x", 1, 0, laddr, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  long long mm;
  int reset;
  ASSERT_UEQ(peer_drain_until_end(pfd, 0, &mm, &reset), 0);
  ASSERT(!reset);

  /* sockets of a freed engine */
  sock_engine *e = NULL;
  ASSERT_OK(sock_engine_new(1, &e));
  sock_handle c2 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_attach(c2, e));
  ASSERT_OK(sock_attach(l, e));
  ASSERT_OK(sock_attach(u, e));
  ASSERT_OK(sock_engine_free(e));
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_connect_async(c2, f.addr, never_status_cb, NULL));
  out = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_accept_async(l, never_accept_cb, NULL, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED,
                sock_send_to_async(u, "x", 1, 0, addr, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_recv_from_async(u, buf, sizeof buf, 0, addr,
                                                             sizeof addr, never_bytes_cb, NULL, &n));
  ASSERT_UEQ(n, 0);

  sleep_ms(200); /* a stray callback would fail the test meanwhile */
  tracker_settle(&t, 1, 0);
  ASSERT_OK(sock_close(c2));
  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_close(unc));
  ASSERT_OK(sock_close(h));
  close(pfd);
  full_listener_close(&f);
  tracker_free(&t);
  return 0;
}
