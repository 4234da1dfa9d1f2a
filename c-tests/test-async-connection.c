/* The async connection life cycle: connect (refused, timed out, a host
 * name, sends queued behind it, close while connecting), accept (order,
 * a chain that loops on SOCK_OK, timeout, out of descriptors without
 * spinning), a graceful end behind a 32 MiB queue, reset or end on close,
 * and datagrams to and from any address. The connect and accept cases run
 * on the default engine, a threaded engine and a manual engine (whose
 * callbacks must run inside sock_engine_poll only). */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the three kinds of engine ------------------------------------------ */

typedef struct {
  const char *name;
  sock_engine *e; /* NULL: the default engine */
  int manual;
} engine_t;

static volatile int g_in_poll;
static atomic_int g_outside_poll;

/* One poll of a manual engine, marked as such for the callbacks. */
static void poll_manual(sock_engine *e, int ms) {
  g_in_poll = 1;
  sock_status s = sock_engine_poll(e, ms, NULL);
  g_in_poll = 0;
  ASSERT_OK(s);
}

static void engines(engine_t out[3]) {
  out[0] = (engine_t){"default", NULL, 0};
  out[1] = (engine_t){"threaded", NULL, 0};
  out[2] = (engine_t){"manual", NULL, 1};
  ASSERT_OK(sock_engine_new(2, &out[1].e));
  ASSERT_OK(sock_engine_new(0, &out[2].e));
}

static void engines_free(engine_t es[3]) {
  ASSERT_OK(sock_engine_free(es[1].e));
  ASSERT_OK(sock_engine_free(es[2].e));
  ASSERT_EQ(atomic_load(&g_outside_poll), 0);
}

static sock_handle socket_on(const engine_t *en, int32_t family, int32_t type) {
  sock_handle h = new_socket(family, type);
  if (en->e) ASSERT_OK(sock_attach(h, en->e));
  return h;
}

/* Lets the engine run until `done` says so (bounded). */
static void pump_until(const engine_t *en, atomic_int *counter, int want, unsigned ms) {
  uint64_t t0 = now_ms();
  while (atomic_load(counter) < want) {
    ASSERT_MSG(now_ms() - t0 < wait_bound_ms(ms), "%s engine: %d of %d callbacks after %u ms",
               en->name, atomic_load(counter), want, ms);
    if (en->manual) {
      g_in_poll = 1;
      sock_status s = sock_engine_poll(en->e, 20, NULL);
      g_in_poll = 0;
      ASSERT_OK(s);
    } else {
      sleep_ms(1);
    }
  }
}

/* ---- status callbacks ------------------------------------------------------ */

typedef struct {
  atomic_int calls;
  sock_status status;
  const engine_t *en;
} status_op;

static void status_cb(sock_handle h, sock_status s, void *ud) {
  (void)h;
  status_op *op = ud;
  if (op->en && op->en->manual && !g_in_poll) atomic_fetch_add(&g_outside_poll, 1);
  op->status = s;
  atomic_fetch_add(&op->calls, 1);
}

/* A listener whose backlog is full: Linux drops further SYNs, so a connect
 * to it stays pending (until its deadline). */
static sock_handle full_listener(char *addr, int *fillers, int nfill) {
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  ASSERT_OK(sock_listen(l, 0));
  for (int i = 0; i < nfill; i++) {
    fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)addr_port(addr)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(fillers[i], (struct sockaddr *)&a, sizeof a);
  }
  sleep_ms(50);
  return l;
}

/* ---- connect ----------------------------------------------------------------- */

TEST_IMPL(connect_async_refused_and_localhost) {
  engine_t es[3];
  engines(es);
  char addr[SOCK_ADDRESS_MAX_LEN], lh[64];
  int port = 0;
  int lfd = peer_listen(AF_INET, 0, &port);
  snprintf(lh, sizeof lh, "localhost:%d", port);
  int dead_port = 0;
  int dfd = peer_listen(AF_INET, 0, &dead_port);
  close(dfd); /* nothing listens there now */
  snprintf(addr, sizeof addr, "127.0.0.1:%d", dead_port);
  for (int k = 0; k < 3; k++) {
    status_op op = {.en = &es[k]};
    sock_handle h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    sock_status s = sock_connect_async(h, addr, status_cb, &op);
    ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_CONNECTION_REFUSED, s);
    if (s == SOCK_IO_PENDING) {
      pump_until(&es[k], &op.calls, 1, 5000);
      ASSERT_STATUS(SOCK_CONNECTION_REFUSED, op.status);
    }
    ASSERT_OK(sock_close(h));
    /* a host name, looked up off the caller's thread */
    status_op op2 = {.en = &es[k]};
    h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(h, lh, status_cb, &op2));
    pump_until(&es[k], &op2.calls, 1, 5000);
    ASSERT_STATUS(SOCK_OK, op2.status);
    int pfd = peer_accept(lfd);
    ASSERT_OK(sock_send(h, "hi", 2, 0, NULL));
    char b[2];
    peer_read_exact(pfd, b, 2);
    ASSERT(memcmp(b, "hi", 2) == 0);
    ASSERT_EQ(atomic_load(&op.calls) + atomic_load(&op2.calls), (s == SOCK_IO_PENDING) + 1);
    ASSERT_OK(sock_close(h));
    close(pfd);
  }
  engines_free(es);
  close(lfd);
  return 0;
}

/* The send timeout bounds the whole connect; close while connecting ends it
 * with SOCK_OPERATION_ABORTED; each exactly once. */
TEST_IMPL(connect_async_timeout_and_close) {
  engine_t es[3];
  engines(es);
  char addr[SOCK_ADDRESS_MAX_LEN];
  int fillers[8];
  sock_handle l = full_listener(addr, fillers, 8);
  for (int k = 0; k < 3; k++) {
    status_op op = {.en = &es[k]};
    sock_handle h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 300));
    uint64_t t0 = now_ms();
    ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(h, addr, status_cb, &op));
    pump_until(&es[k], &op.calls, 1, 5000);
    ASSERT_STATUS(SOCK_TIMED_OUT, op.status);
    ASSERT_UGE(now_ms() - t0, 250);
    ASSERT_OK(sock_close(h));

    status_op op2 = {.en = &es[k]};
    h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(h, addr, status_cb, &op2));
    ASSERT_OK(sock_close(h));
    pump_until(&es[k], &op2.calls, 1, 5000);
    ASSERT_STATUS(SOCK_OPERATION_ABORTED, op2.status);
    sleep_ms(20);
    if (es[k].manual) poll_manual(es[k].e, 0);
    ASSERT_EQ(atomic_load(&op.calls), 1);
    ASSERT_EQ(atomic_load(&op2.calls), 1);
  }
  for (int i = 0; i < 8; i++) close(fillers[i]);
  ASSERT_OK(sock_close(l));
  engines_free(es);
  return 0;
}

/* Sends submitted while the connect is pending leave in order once it
 * succeeds (checksummed at the peer), or end with its error. */
TEST_IMPL(connect_async_sends_queue_behind) {
  engine_t es[3];
  engines(es);
  enum { N = 32 };
  const size_t len = 64 * KiB;
  uint8_t *buf = pattern_alloc(N * len);
  for (int k = 0; k < 3; k++) {
    int port = 0;
    int lfd = peer_listen(AF_INET, 0, &port);
    char addr[SOCK_ADDRESS_MAX_LEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    status_op op = {.en = &es[k]};
    tracker t;
    tracker_init(&t, N);
    sock_handle h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(h, addr, status_cb, &op));
    /* On the manual engine nothing moves until it is polled: every send
     * queues behind the connect. Elsewhere the connect may be done by the
     * time a send is made, and the send may finish inside its call. */
    size_t pending = 0;
    for (size_t i = 0; i < N; i++) {
      sock_status s = track_send(&t, i, h, buf + i * len, len);
      if (es[k].manual) ASSERT_STATUS(SOCK_IO_PENDING, s);
      else ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
      if (s == SOCK_IO_PENDING) pending++;
      else t.ops[i].status = SOCK_OK, t.ops[i].calls = 1;
    }
    int pfd = -1;
    if (!es[k].manual) pfd = peer_accept(lfd);
    reader_t r = {.fd = pfd, .expect = N * len, .check_pattern = 1};
    if (!es[k].manual) reader_start(&r);
    atomic_int calls;
    atomic_init(&calls, 0);
    uint64_t t0 = now_ms();
    while (tracker_calls(&t) < pending) {
      ASSERT(now_ms() - t0 < wait_bound_ms(10000));
      if (es[k].manual) {
        poll_manual(es[k].e, 10);
        if (pfd < 0 && atomic_load(&op.calls)) {
          pfd = peer_accept(lfd);
          r.fd = pfd;
          reader_start(&r);
        }
      } else {
        sleep_ms(1);
      }
    }
    reader_join(&r);
    ASSERT_STATUS(SOCK_OK, op.status);
    ASSERT_UEQ(r.got, N * len);
    ASSERT_EQ(r.mismatch, -1);
    for (size_t i = 0; i < N; i++) ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    /* callbacks in submission order (and the peer's stream, checked
     * against the pattern, shows the bytes left in that order too) */
    for (size_t k2 = 1; k2 < pending; k2++) ASSERT(t.order[k2] > t.order[k2 - 1]);
    ASSERT_OK(sock_close(h));
    close(pfd);
    /* refused: the queued sends end with the connect's error */
    tracker_free(&t);
    tracker_init(&t, 4);
    status_op op2 = {.en = &es[k]};
    close(lfd);
    h = socket_on(&es[k], SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    sock_status s = sock_connect_async(h, addr, status_cb, &op2);
    ASSERT_STATUS2(SOCK_IO_PENDING, SOCK_CONNECTION_REFUSED, s);
    if (s == SOCK_IO_PENDING) {
      for (size_t i = 0; i < 4; i++) {
        sock_status ss = track_send(&t, i, h, buf, len);
        /* pending behind the connect, or (once it failed) refused at once */
        ASSERT_MSG(ss == SOCK_IO_PENDING || ss == SOCK_NOT_CONNECTED, "send %zu: %s", i,
                   status_name(ss));
        if (ss != SOCK_IO_PENDING) t.ops[i].calls = -1; /* failed at once */
      }
      pump_until(&es[k], &op2.calls, 1, 5000);
      ASSERT_STATUS(SOCK_CONNECTION_REFUSED, op2.status);
      sleep_ms(20);
      if (es[k].manual) poll_manual(es[k].e, 0);
      for (size_t i = 0; i < 4; i++)
        if (t.ops[i].calls != -1) ASSERT_STATUS(SOCK_CONNECTION_REFUSED, t.ops[i].status);
    }
    ASSERT_OK(sock_close(h));
    tracker_free(&t);
  }
  free(buf);
  engines_free(es);
  return 0;
}

/* ---- accept ------------------------------------------------------------------ */

typedef struct {
  atomic_int calls;
  int order[64];
  sock_handle accepted[64];
  sock_status status[64];
  const engine_t *en;
  int depth, max_depth;
  sock_handle listener;
  int chain_left;
} accept_log;

static void accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud);

static void log_accept(accept_log *g, int id, sock_status s, sock_handle a) {
  int k = atomic_load(&g->calls);
  ASSERT_ULT(k, 64);
  g->order[k] = id;
  g->status[k] = s;
  g->accepted[k] = a;
  atomic_fetch_add(&g->calls, 1);
}

struct accept_slot {
  accept_log *g;
  int id;
};

static void accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  (void)l;
  struct accept_slot *slot = ud;
  if (slot->g->en && slot->g->en->manual && !g_in_poll) atomic_fetch_add(&g_outside_poll, 1);
  log_accept(slot->g, slot->id, s, a);
}

/* Several outstanding accepts complete in submission order, each with a
 * working handle; an accept that waits too long times out. */
TEST_IMPL(accept_async_order_and_timeout) {
  engine_t es[3];
  engines(es);
  enum { N = 6 };
  for (int k = 0; k < 3; k++) {
    char addr[SOCK_ADDRESS_MAX_LEN];
    sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
    if (es[k].e) ASSERT_OK(sock_attach(l, es[k].e));
    accept_log g = {.en = &es[k]};
    struct accept_slot slots[N];
    for (int i = 0; i < N; i++) {
      slots[i] = (struct accept_slot){&g, i};
      sock_handle now = UNWRITTEN_HANDLE;
      ASSERT_STATUS(SOCK_IO_PENDING, sock_accept_async(l, accept_cb, &slots[i], &now));
      ASSERT_EQ(now, SOCK_INVALID_HANDLE);
    }
    int clients[N];
    for (int i = 0; i < N; i++) clients[i] = peer_connect(AF_INET, addr_port(addr));
    pump_until(&es[k], &g.calls, N, 5000);
    for (int i = 0; i < N; i++) {
      ASSERT_MSG(g.order[i] == i, "%s: accept %d completed in place %d", es[k].name, g.order[i], i);
      ASSERT_STATUS(SOCK_OK, g.status[i]);
      ASSERT(g.accepted[i] != SOCK_INVALID_HANDLE);
      for (int j = 0; j < i; j++) ASSERT(g.accepted[j] != g.accepted[i]);
    }
    /* every accepted handle works: each client's byte arrives on one */
    for (int i = 0; i < N; i++) ASSERT_SYS(send(clients[i], "z", 1, 0));
    for (int i = 0; i < N; i++) {
      char b;
      recv_exact(g.accepted[i], &b, 1);
      ASSERT_EQ(b, 'z');
      ASSERT_OK(sock_close(g.accepted[i]));
      close(clients[i]);
    }
    /* the receive timeout bounds a pending accept */
    ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, 200));
    accept_log g2 = {.en = &es[k]};
    struct accept_slot one = {&g2, 0};
    sock_handle now;
    ASSERT_STATUS(SOCK_IO_PENDING, sock_accept_async(l, accept_cb, &one, &now));
    pump_until(&es[k], &g2.calls, 1, 5000);
    ASSERT_STATUS(SOCK_TIMED_OUT, g2.status[0]);
    ASSERT_EQ(g2.accepted[0], SOCK_INVALID_HANDLE);
    ASSERT_OK(sock_close(l));
  }
  engines_free(es);
  return 0;
}

/* An accept chain that loops on SOCK_OK takes 200 waiting connections with
 * no recursion (the callback's depth never exceeds 1). */
static accept_log g_chain;
static int g_chain_depth, g_chain_max;

static void chain_accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  (void)ud;
  if (++g_chain_depth > g_chain_max) g_chain_max = g_chain_depth;
  while (s == SOCK_OK) {
    ASSERT_OK(sock_close(a));
    if (++g_chain.chain_left >= 200) break;
    s = sock_accept_async(l, chain_accept_cb, NULL, &a);
  }
  ASSERT(s == SOCK_OK || s == SOCK_IO_PENDING);
  g_chain_depth--;
  atomic_fetch_add(&g_chain.calls, 1);
}

TEST_IMPL(accept_async_chain_does_not_recurse) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  ASSERT_OK(sock_listen(l, 256));
  int clients[200];
  for (int i = 0; i < 200; i++) clients[i] = peer_connect(AF_INET, addr_port(addr));
  sleep_ms(50);
  sock_handle a;
  sock_status s = sock_accept_async(l, chain_accept_cb, NULL, &a);
  ASSERT_STATUS(SOCK_OK, s);
  chain_accept_cb(l, s, a, NULL); /* the chain, started inline */
  uint64_t t0 = now_ms();
  while (g_chain.chain_left < 200) {
    ASSERT(now_ms() - t0 < wait_bound_ms(5000));
    sleep_ms(1);
  }
  ASSERT_EQ(g_chain_max, 1);
  for (int i = 0; i < 200; i++) close(clients[i]);
  ASSERT_OK(sock_close(l));
  return 0;
}

/* Out of descriptors: the pending accept completes with
 * SOCK_TOO_MANY_OPEN_SOCKETS, and the engine does not spin on the
 * listener while the condition lasts (its thread's CPU time is measured). */
/* Opens the stat files of the engine threads (named sock-engine-*) while
 * descriptors are there, so their CPU time can be read when none is. */
static int engine_stat_fds(int *fds, int max) {
  DIR *d = opendir("/proc/self/task");
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    if (e->d_name[0] == '.') continue;
    char path[300], comm[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    if (strncmp(comm, "sock-engine", 11) != 0) continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) fds[n++] = fd;
  }
  closedir(d);
  return n;
}

/* User + system CPU time of those threads, in ms (no descriptor opened). */
static long engine_cpu_ms(const int *fds, int n) {
  long ticks = 0;
  for (int i = 0; i < n; i++) {
    char stat[1024];
    ssize_t r = pread(fds[i], stat, sizeof stat - 1, 0);
    if (r <= 0) continue;
    stat[r] = 0;
    char *p = strrchr(stat, ')');
    long ut = 0, st = 0;
    /* after the name: state ppid pgrp session tty tpgid flags minflt
     * cminflt majflt cmajflt utime stime */
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) == 2)
      ticks += ut + st;
  }
  return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

TEST_IMPL(accept_async_out_of_descriptors) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  /* the engine thread first, while descriptors are there */
  accept_log g = {0};
  struct accept_slot slot = {&g, 0};
  sock_handle now;
  ASSERT_STATUS(SOCK_IO_PENDING, sock_accept_async(l, accept_cb, &slot, &now));
  int stat_fds[4];
  int nstat = 0;
  uint64_t t_name = now_ms();
  /* a new thread names itself when it starts */
  while ((nstat = engine_stat_fds(stat_fds, 4)) == 0) {
    ASSERT(now_ms() - t_name < wait_bound_ms(2000));
    sleep_ms(1);
  }
  /* use up the descriptors */
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  int base = proc_self_entries("fd");
  struct rlimit low = {(rlim_t)base + 4, rl.rlim_max};
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &low));
  int clients[1];
  int fill[16], nfill = 0;
  for (;;) {
    int fd = dup(0);
    if (fd < 0) break;
    ASSERT_ULT(nfill, 16);
    fill[nfill++] = fd;
  }
  clients[0] = -1;
  /* a connection arrives that cannot be accepted (the client's socket
   * takes the one descriptor freed for it) */
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)addr_port(addr)),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT(nfill > 0);
  close(fill[--nfill]);
  clients[0] = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_SYS(clients[0]);
  ASSERT_SYS(connect(clients[0], (struct sockaddr *)&a, sizeof a));
  pump_until(&(engine_t){"default", NULL, 0}, &g.calls, 1, 5000);
  ASSERT_STATUS(SOCK_TOO_MANY_OPEN_SOCKETS, g.status[0]);
  ASSERT_EQ(g.accepted[0], SOCK_INVALID_HANDLE);
  /* the condition lasts: the connection still waits; the engine must not
   * spin on the listener */
  long cpu0 = engine_cpu_ms(stat_fds, nstat);
  uint64_t t0 = now_ms();
  sleep_ms(1000);
  long cpu = engine_cpu_ms(stat_fds, nstat) - cpu0;
  long wall = (long)(now_ms() - t0);
  printf("# engine CPU under EMFILE: %ld ms over %ld ms\n", cpu, wall);
  ASSERT_MSG(cpu * 10 < wall, "the engine used %ld ms of CPU in %ld ms out of descriptors", cpu, wall);
  /* descriptors back: a new accept takes the waiting connection */
  for (int i = 0; i < nfill; i++) close(fill[i]);
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &rl));
  accept_log g2 = {0};
  struct accept_slot slot2 = {&g2, 0};
  sock_status s = sock_accept_async(l, accept_cb, &slot2, &now);
  ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
  if (s == SOCK_IO_PENDING) {
    pump_until(&(engine_t){"default", NULL, 0}, &g2.calls, 1, 5000);
    now = g2.accepted[0];
  }
  ASSERT(now != SOCK_INVALID_HANDLE);
  ASSERT_OK(sock_close(now));
  for (int i = 0; i < nstat; i++) close(stat_fds[i]);
  close(clients[0]);
  ASSERT_OK(sock_close(l));
  return 0;
}

/* ---- graceful end, reset -------------------------------------------------------- */

static atomic_int g_shut_calls;
static sock_status g_shut_status, g_close_status;
static void shut_then_close(sock_handle h, sock_status s, void *ud) {
  (void)ud;
  g_shut_status = s;
  g_close_status = sock_close(h);
  atomic_fetch_add(&g_shut_calls, 1);
}

/* A 32 MiB queue, then sock_shutdown_async, then sock_close in its
 * callback: the peer reads every byte (checked) and then a clean end. */
TEST_IMPL(shutdown_async_after_32mib_then_fin) {
  const size_t chunk = 1 * MiB, total = 32 * MiB;
  int pfd;
  sock_handle h = small_pair(65536, &pfd);
  uint8_t *buf = pattern_alloc(total);
  tracker t;
  tracker_init(&t, total / chunk);
  for (size_t i = 0; i < total / chunk; i++)
    ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, track_send(&t, i, h, buf + i * chunk, chunk));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_shutdown_async(h, shut_then_close, NULL));
  size_t n;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send_async(h, "x", 1, 0, track_cb, &t.ops[0], &n));
  long long mm;
  int reset;
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_MSG(!reset, "the peer saw a reset after %zu bytes", got);
  ASSERT_UEQ(got, total);
  ASSERT_EQ(mm, -1);
  uint64_t t0 = now_ms();
  while (atomic_load(&g_shut_calls) == 0) {
    ASSERT(now_ms() - t0 < wait_bound_ms(5000));
    sleep_ms(1);
  }
  ASSERT_STATUS(SOCK_OK, g_shut_status);
  ASSERT_OK(g_close_status);
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* Close after everything went ends the stream cleanly (FIN); close with a
 * send still pending resets it (RST) after a prefix of the bytes. */
TEST_IMPL(close_fin_when_sent_rst_when_discarded) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_send(h, "all", 3, 0, NULL));
  ASSERT_OK(sock_close(h));
  long long mm;
  int reset;
  char b[3];
  peer_read_exact(pfd, b, 3);
  ASSERT_UEQ(peer_drain_until_end(pfd, 0, &mm, &reset), 0);
  ASSERT_MSG(!reset, "a close after everything went reset the connection");
  close(pfd);

  h = small_pair(4096, &pfd);
  const size_t len = 8 * MiB;
  uint8_t *buf = pattern_alloc(len);
  tracker t;
  tracker_init(&t, 1);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len));
  ASSERT_OK(sock_close(h));
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_MSG(reset, "close discarded unsent bytes, yet the peer saw a clean end after %zu", got);
  ASSERT_EQ(mm, -1);
  tracker_wait(&t, 1, 5000);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[0].status);
  ASSERT_ULE(got, t.ops[0].bytes);
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* ---- datagrams ------------------------------------------------------------------ */

static void datagrams(int32_t family, const char *any) {
  sock_handle rx = new_socket(family, SOCK_TYPE_DGRAM);
  sock_handle tx = new_socket(family, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(rx, any));
  ASSERT_OK(sock_bind(tx, any));
  char rx_addr[SOCK_ADDRESS_MAX_LEN], tx_addr[SOCK_ADDRESS_MAX_LEN];
  local_addr(rx, rx_addr);
  local_addr(tx, tx_addr);
  tracker t;
  tracker_init(&t, 8);
  char from[4][SOCK_ADDRESS_MAX_LEN];
  char in[4][32];
  memset(from, 0, sizeof from);
  for (size_t i = 0; i < 4; i++) {
    op_t *op = tracker_op(&t, i, rx, sizeof in[i]);
    ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_from_async(rx, in[i], sizeof in[i], 0, from[i],
                                                        sizeof from[i], track_cb, op, NULL));
    ASSERT_EQ(from[i][0], 0); /* written only by the time of the callback */
  }
  for (size_t i = 0; i < 4; i++) {
    char msg[16];
    int n = snprintf(msg, sizeof msg, "datagram %zu", i);
    op_t *op = tracker_op(&t, 4 + i, tx, (size_t)n);
    sock_status s = sock_send_to_async(tx, msg, (size_t)n, 0, rx_addr, track_cb, op, NULL);
    ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
    if (s == SOCK_OK) op->calls = 1, op->status = SOCK_OK, op->bytes = (size_t)n, t.calls++;
  }
  tracker_wait(&t, 8, 5000);
  for (size_t i = 0; i < 4; i++) {
    char want[16];
    int n = snprintf(want, sizeof want, "datagram %zu", i);
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, (size_t)n);
    ASSERT(memcmp(in[i], want, (size_t)n) == 0);
    ASSERT_MSG(strcmp(from[i], tx_addr) == 0, "sender %s, expected %s", from[i], tx_addr);
  }
  ASSERT_OK(sock_close(rx));
  ASSERT_OK(sock_close(tx));
  tracker_free(&t);
}

TEST_IMPL(datagrams_async_v4_v6) {
  datagrams(SOCK_FAMILY_INET, "127.0.0.1:0");
  datagrams(SOCK_FAMILY_INET6, "[::1]:0");
  return 0;
}
