/* Queue engines (completions dequeued by the program, never called back)
 * and sock_cleanup (the default engine stopped, its operations ended, its
 * thread gone, the library usable again). */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* Threads of this process. */
static int thread_count(void) {
  return proc_self_entries("task");
}

static int fd_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, 0);
  ASSERT_SYS(r);
  return r == 1;
}

/* Dequeues until `want` entries arrived (bounded), appending to `out`. */
static size_t dequeue_n(sock_engine *q, sock_completion *out, size_t want) {
  size_t got = 0;
  uint64_t t0 = now_ms();
  while (got < want) {
    ASSERT_MSG(now_ms() - t0 < wait_bound_ms(10000), "%zu of %zu entries after 10 s", got, want);
    size_t n = UNWRITTEN;
    ASSERT_OK(sock_engine_dequeue(q, out + got, want - got, 100, &n));
    ASSERT(n != UNWRITTEN && n <= want - got);
    got += n;
  }
  return got;
}

/* A callback that must never run: on a queue engine none is ever called. */
static atomic_int g_called;
static void counting_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)h;
  (void)s;
  (void)n;
  (void)ud;
  atomic_fetch_add(&g_called, 1);
}

/* ---- queue engine ------------------------------------------------------- */

/* Pending sends report as entries, exactly once each, in submission order,
 * with their bytes; the engine fd is readable exactly while entries wait;
 * a callback passed anyway is never called. */
TEST_IMPL(queue_engine_entries_once_in_order) {
  enum { N = 16 };
  const size_t len = 256 * KiB;
  sock_engine *q = NULL;
  int32_t qfd = -1;
  int pfd;
  ASSERT_OK(sock_engine_new_queue(&q));
  ASSERT_OK(sock_engine_fd(q, &qfd));
  ASSERT(qfd >= 0);
  ASSERT(!fd_readable(qfd));
  sock_handle h = small_pair(16384, &pfd);
  ASSERT_OK(sock_attach(h, q));
  uint8_t *buf = pattern_alloc(N * len);
  size_t pending = 0, inline_bytes = 0;
  for (size_t i = 0; i < N; i++) {
    size_t now = UNWRITTEN;
    /* even ops with NULL, odd ones with a callback that must never run */
    sock_status s = sock_send_async(h, buf + i * len, len, 0, i % 2 ? counting_cb : NULL,
                                    (void *)(uintptr_t)(i + 1), &now);
    ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
    ASSERT_MSG(s == SOCK_IO_PENDING || pending == 0, "op %zu finished inline behind a pending one", i);
    if (s == SOCK_IO_PENDING) pending++;
    else inline_bytes += now;
  }
  ASSERT(pending > 0);
  reader_t r = {.fd = pfd, .expect = N * len, .check_pattern = 1};
  reader_start(&r);
  sock_completion e[N];
  dequeue_n(q, e, pending);
  reader_join(&r);
  ASSERT_UEQ(r.got, N * len);
  ASSERT_EQ(r.mismatch, -1);
  size_t first = N - pending;
  for (size_t k = 0; k < pending; k++) {
    ASSERT_MSG((uintptr_t)e[k].user_data == first + k + 1, "entry %zu: user_data %p, expected op %zu",
               k, e[k].user_data, first + k + 1);
    ASSERT_EQ(e[k].handle, h);
    ASSERT_EQ(e[k].operation, SOCK_OP_SEND);
    ASSERT_STATUS(SOCK_OK, e[k].status);
    ASSERT_UEQ(e[k].bytes, len);
    ASSERT_EQ(e[k].accepted, SOCK_INVALID_HANDLE);
  }
  ASSERT_UEQ(inline_bytes, first * len);
  /* nothing more, and the fd says so */
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_engine_dequeue(q, e, N, 50, &n));
  ASSERT_UEQ(n, 0);
  ASSERT(!fd_readable(qfd));
  ASSERT_EQ(atomic_load(&g_called), 0);
  /* a poll of a queue engine is refused; a manual engine's dequeue too */
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_engine_poll(q, 0, &n));
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_engine_free(q));
  close(pfd);
  free(buf);
  return 0;
}

/* The fd is readable while entries wait, and only then; entries are taken
 * at most `max` at a time. */
TEST_IMPL(queue_engine_fd_readable_while_entries_wait) {
  sock_engine *q = NULL;
  int32_t qfd = -1;
  ASSERT_OK(sock_engine_new_queue(&q));
  ASSERT_OK(sock_engine_fd(q, &qfd));
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  char ua[SOCK_ADDRESS_MAX_LEN];
  local_addr(u, ua);
  ASSERT_OK(sock_attach(u, q));
  char bufs[3][8];
  for (int i = 0; i < 3; i++)
    ASSERT_STATUS(SOCK_IO_PENDING,
                  sock_recv_async(u, bufs[i], sizeof bufs[i], 0, NULL, (void *)(uintptr_t)(i + 1), NULL));
  ASSERT(!fd_readable(qfd));
  int port;
  int sender = peer_udp(AF_INET, &port);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)addr_port(ua)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (int i = 0; i < 3; i++) {
    char m = (char)('a' + i);
    ASSERT_SYS(sendto(sender, &m, 1, 0, (struct sockaddr *)&to, sizeof to));
  }
  struct pollfd p = {qfd, POLLIN, 0};
  ASSERT_MSG(poll(&p, 1, (int)wait_bound_ms(5000)) == 1, "queue fd not readable with entries due");
  sock_completion e[3];
  size_t got = 0;
  uint64_t t0 = now_ms();
  while (got < 3) {
    ASSERT(now_ms() - t0 < wait_bound_ms(5000));
    size_t n = 0;
    ASSERT_OK(sock_engine_dequeue(q, e + got, 1, 100, &n)); /* one at a time */
    ASSERT_ULE(n, 1);
    got += n;
  }
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ((uintptr_t)e[i].user_data, (uintptr_t)(i + 1));
    ASSERT_EQ(e[i].operation, SOCK_OP_RECV);
    ASSERT_UEQ(e[i].bytes, 1);
    ASSERT_EQ(bufs[i][0], 'a' + i);
  }
  ASSERT(!fd_readable(qfd));
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_engine_free(q));
  close(sender);
  return 0;
}

/* Several threads dequeue at once: every entry goes to exactly one. */
struct dq_thread {
  sock_engine *q;
  atomic_int *seen; /* per op */
  atomic_size_t *total;
  size_t want;
};

static void *dq_main(void *arg) {
  struct dq_thread *d = arg;
  sock_completion e[4];
  uint64_t t0 = now_ms();
  while (atomic_load(d->total) < d->want && now_ms() - t0 < wait_bound_ms(15000)) {
    size_t n = 0;
    ASSERT_OK(sock_engine_dequeue(d->q, e, 4, 20, &n));
    for (size_t k = 0; k < n; k++) {
      uintptr_t id = (uintptr_t)e[k].user_data;
      ASSERT(id >= 1 && id <= d->want);
      atomic_fetch_add(&d->seen[id - 1], 1);
    }
    atomic_fetch_add(d->total, n);
  }
  return NULL;
}

TEST_IMPL(queue_engine_concurrent_dequeuers) {
  enum { CONNS = 8, PER = 50, THREADS = 4 };
  const size_t want = CONNS * PER;
  sock_engine *q = NULL;
  ASSERT_OK(sock_engine_new_queue(&q));
  atomic_int seen[CONNS * PER];
  for (size_t i = 0; i < want; i++) atomic_init(&seen[i], 0);
  atomic_size_t total = 0;
  sock_handle u[CONNS];
  char addr[CONNS][SOCK_ADDRESS_MAX_LEN];
  static char bufs[CONNS * PER][4];
  for (int c = 0; c < CONNS; c++) {
    u[c] = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
    ASSERT_OK(sock_bind(u[c], "127.0.0.1:0"));
    local_addr(u[c], addr[c]);
    ASSERT_OK(sock_attach(u[c], q));
    for (int k = 0; k < PER; k++) {
      size_t id = (size_t)c * PER + (size_t)k + 1;
      ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(u[c], bufs[id - 1], 4, 0, NULL,
                                                     (void *)(uintptr_t)id, NULL));
    }
  }
  pthread_t t[THREADS];
  struct dq_thread d = {q, seen, &total, want};
  for (int i = 0; i < THREADS; i++) ASSERT_EQ(pthread_create(&t[i], NULL, dq_main, &d), 0);
  int port;
  int sender = peer_udp(AF_INET, &port);
  for (int k = 0; k < PER; k++)
    for (int c = 0; c < CONNS; c++) {
      struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)addr_port(addr[c])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      ASSERT_SYS(sendto(sender, "d", 1, 0, (struct sockaddr *)&to, sizeof to));
    }
  for (int i = 0; i < THREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  ASSERT_UEQ(atomic_load(&total), want);
  for (size_t i = 0; i < want; i++)
    ASSERT_MSG(atomic_load(&seen[i]) == 1, "op %zu dequeued %d times", i + 1, atomic_load(&seen[i]));
  for (int c = 0; c < CONNS; c++) ASSERT_OK(sock_close(u[c]));
  ASSERT_OK(sock_engine_free(q));
  close(sender);
  return 0;
}

/* Close, cancel, a deadline and engine free each produce entries, with
 * the status a callback would get; a freed engine stays dequeueable until
 * its entries are taken, then says it is gone. */
TEST_IMPL(queue_engine_lifecycle_events_produce_entries) {
  const size_t len = 4 * MiB;
  sock_engine *q = NULL;
  ASSERT_OK(sock_engine_new_queue(&q));
  uint8_t *buf = pattern_alloc(len);
  sock_completion e[4];
  size_t n;

  /* cancel: the stuck send ends ABORTED with its partial count */
  int p1;
  sock_handle h1 = small_pair(4096, &p1);
  ASSERT_OK(sock_attach(h1, q));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_send_async(h1, buf, len, 0, NULL, (void *)1, NULL));
  ASSERT_OK(sock_cancel_sends(h1));
  dequeue_n(q, e, 1);
  ASSERT_EQ((uintptr_t)e[0].user_data, 1);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, e[0].status);
  ASSERT_ULT(e[0].bytes, len);

  /* deadline: SOCK_TIMED_OUT */
  ASSERT_OK(sock_set_option(h1, SOCK_OPT_SEND_TIMEOUT_MS, 100));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_send_async(h1, buf, len, 0, NULL, (void *)2, NULL));
  dequeue_n(q, e, 1);
  ASSERT_EQ((uintptr_t)e[0].user_data, 2);
  ASSERT_STATUS(SOCK_TIMED_OUT, e[0].status);

  /* close: ABORTED */
  ASSERT_OK(sock_set_option(h1, SOCK_OPT_SEND_TIMEOUT_MS, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_send_async(h1, buf, len, 0, NULL, (void *)3, NULL));
  ASSERT_OK(sock_close(h1));
  dequeue_n(q, e, 1);
  ASSERT_EQ((uintptr_t)e[0].user_data, 3);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, e[0].status);

  /* engine free: ABORTED entries stay dequeueable, then the engine is gone */
  int p2;
  sock_handle h2 = small_pair(4096, &p2);
  ASSERT_OK(sock_attach(h2, q));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_send_async(h2, buf, len, 0, NULL, (void *)4, NULL));
  char rb[4];
  ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(h2, rb, sizeof rb, 0, NULL, (void *)5, NULL));
  ASSERT_OK(sock_engine_free(q));
  n = 0;
  ASSERT_OK(sock_engine_dequeue(q, e, 4, 0, &n));
  ASSERT_UEQ(n, 2);
  for (size_t k = 0; k < 2; k++) ASSERT_STATUS(SOCK_OPERATION_ABORTED, e[k].status);
  ASSERT((uintptr_t)e[0].user_data + (uintptr_t)e[1].user_data == 9);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_engine_dequeue(q, e, 4, 0, &n));
  ASSERT_UEQ(n, 0);
  /* the socket stays open; its async calls refuse until re-attached */
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, sock_send_async(h2, "x", 1, 0, NULL, NULL, NULL));
  ASSERT_OK(sock_attach(h2, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_send_async(h2, "x", 1, 0, NULL, NULL, NULL));
  ASSERT_OK(sock_close(h2));
  close(p1);
  close(p2);
  free(buf);
  return 0;
}

/* Connect and accept through a queue engine: the accept's entry carries
 * the new handle, which works and is bound to the listener's engine. */
TEST_IMPL(queue_engine_connect_and_accept) {
  sock_engine *q = NULL;
  ASSERT_OK(sock_engine_new_queue(&q));
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  ASSERT_OK(sock_attach(l, q));
  sock_handle a = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_IO_PENDING, sock_accept_async(l, NULL, (void *)1, &a));
  ASSERT_EQ(a, SOCK_INVALID_HANDLE);
  sock_handle c = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_attach(c, q));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_connect_async(c, addr, NULL, (void *)2));
  sock_completion e[2];
  dequeue_n(q, e, 2);
  sock_handle accepted = SOCK_INVALID_HANDLE;
  int saw_connect = 0;
  for (int k = 0; k < 2; k++) {
    ASSERT_STATUS(SOCK_OK, e[k].status);
    if (e[k].operation == SOCK_OP_ACCEPT) {
      ASSERT_EQ(e[k].handle, l);
      ASSERT_EQ((uintptr_t)e[k].user_data, 1);
      accepted = e[k].accepted;
    } else {
      ASSERT_EQ(e[k].operation, SOCK_OP_CONNECT);
      ASSERT_EQ(e[k].handle, c);
      saw_connect = 1;
    }
  }
  ASSERT(saw_connect && accepted != SOCK_INVALID_HANDLE);
  /* the accepted socket reports through the queue too */
  char rb[8];
  ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(accepted, rb, sizeof rb, 0, NULL, (void *)3, NULL));
  ASSERT_OK(sock_send(c, "ping", 4, 0, NULL));
  dequeue_n(q, e, 1);
  ASSERT_EQ(e[0].handle, accepted);
  ASSERT_EQ(e[0].operation, SOCK_OP_RECV);
  ASSERT_UEQ(e[0].bytes, 4);
  ASSERT(memcmp(rb, "ping", 4) == 0);
  ASSERT_OK(sock_close(accepted));
  ASSERT_OK(sock_close(c));
  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_engine_free(q));
  return 0;
}

/* ---- sock_cleanup --------------------------------------------------------- */

static atomic_int g_cleanup_calls;
static atomic_int g_cleanup_status;
static void cleanup_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)h;
  (void)n;
  (void)ud;
  atomic_store(&g_cleanup_status, s);
  atomic_fetch_add(&g_cleanup_calls, 1);
}

/* Every operation pending on the default engine ends ABORTED, its callback
 * run before sock_cleanup returns; no library thread is left; nothing runs
 * afterwards; the library works again, the old socket included. */
TEST_IMPL(cleanup_stops_default_engine) {
  int base_threads = thread_count();
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  char rb[8];
  ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(u, rb, sizeof rb, 0, cleanup_cb, NULL, NULL));
  ASSERT(thread_count() > base_threads);
  ASSERT_OK(sock_cleanup());
  ASSERT_EQ(atomic_load(&g_cleanup_calls), 1);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, atomic_load(&g_cleanup_status));
  ASSERT_EQ(thread_count(), base_threads);
  sleep_ms(50);
  ASSERT_EQ(atomic_load(&g_cleanup_calls), 1);
  /* usable again: the same socket binds to a new default engine */
  ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(u, rb, sizeof rb, 0, cleanup_cb, NULL, NULL));
  char ua[SOCK_ADDRESS_MAX_LEN];
  local_addr(u, ua);
  int port;
  int sender = peer_udp(AF_INET, &port);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)addr_port(ua)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_SYS(sendto(sender, "z", 1, 0, (struct sockaddr *)&to, sizeof to));
  uint64_t t0 = now_ms();
  while (atomic_load(&g_cleanup_calls) < 2) {
    ASSERT(now_ms() - t0 < wait_bound_ms(5000));
    sleep_ms(1);
  }
  ASSERT_STATUS(SOCK_OK, atomic_load(&g_cleanup_status));
  ASSERT_EQ(rb[0], 'z');
  /* twice in a row, and with nothing running, is fine */
  ASSERT_OK(sock_cleanup());
  ASSERT_OK(sock_cleanup());
  ASSERT_EQ(thread_count(), base_threads);
  ASSERT_OK(sock_close(u));
  close(sender);
  return 0;
}

static atomic_int g_nested_cleanup = -1;
static void cleanup_from_callback(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)h;
  (void)s;
  (void)n;
  (void)ud;
  atomic_store(&g_nested_cleanup, sock_cleanup());
}

/* From inside a callback it is refused (the engine cannot join itself). */
TEST_IMPL(cleanup_refused_inside_callback) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_send_async(h, "x", 1, 0, cleanup_from_callback, NULL, NULL));
  uint64_t t0 = now_ms();
  while (atomic_load(&g_nested_cleanup) == -1) {
    ASSERT(now_ms() - t0 < wait_bound_ms(5000));
    sleep_ms(1);
  }
  ASSERT_STATUS(SOCK_ALREADY_IN_PROGRESS, atomic_load(&g_nested_cleanup));
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_cleanup());
  close(pfd);
  return 0;
}

/* Engines the program made are left alone: their operations go on. */
TEST_IMPL(cleanup_leaves_program_engines) {
  sock_engine *e = NULL;
  ASSERT_OK(sock_engine_new(1, &e));
  int pfd;
  tracker t;
  tracker_init(&t, 1);
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_attach(h, e));
  char rb[8];
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, rb, sizeof rb));
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  ASSERT_STATUS(SOCK_IO_PENDING, sock_recv_async(u, rb, sizeof rb, 0, cleanup_cb, NULL, NULL));
  int before = atomic_load(&g_cleanup_calls);
  ASSERT_OK(sock_cleanup());
  ASSERT_EQ(atomic_load(&g_cleanup_calls), before + 1);
  ASSERT_EQ(tracker_calls(&t), 0);
  ASSERT_SYS(send(pfd, "q", 1, 0));
  tracker_wait(&t, 1, 5000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 1);
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_engine_free(e));
  tracker_free(&t);
  close(pfd);
  return 0;
}
