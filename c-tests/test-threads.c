/* Threads: concurrent blocking sends never interleave; close racing a
 * blocked send/recv returns it; the handle table under churn. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- four senders, one socket ----------------------------------------- */

enum { NTHREADS = 4, NRECORDS = 48, RECORD = 64 * 1024 };
#define RECORD_MAGIC 0x52454331u

typedef struct {
  uint32_t magic, thread, seq, len;
} record_header;

static uint8_t filler(uint32_t thread, uint32_t seq, size_t i) {
  return (uint8_t)(pattern_byte(i) ^ (thread * 61u) ^ (seq * 17u));
}

static void fill_record(uint8_t *rec, uint32_t thread, uint32_t seq) {
  record_header hd = {RECORD_MAGIC, thread, seq, RECORD};
  for (size_t i = sizeof hd; i < RECORD; i++) rec[i] = filler(thread, seq, i);
  memcpy(rec, &hd, sizeof hd);
}

typedef struct {
  sock_handle h;
  uint32_t id;
  pthread_barrier_t *start;
} sender_arg;

static void *record_sender(void *p) {
  sender_arg *a = p;
  uint8_t *rec = malloc(RECORD);
  ASSERT(rec != NULL);
  pthread_barrier_wait(a->start);
  for (uint32_t seq = 0; seq < NRECORDS; seq++) {
    fill_record(rec, a->id, seq);
    size_t sent = UNWRITTEN;
    ASSERT_OK(sock_send(a->h, rec, RECORD, SOCK_MSG_NONE, &sent));
    ASSERT_UEQ(sent, RECORD);
  }
  free(rec);
  return NULL;
}

TEST_IMPL(four_threads_send_whole_records) {
  int pfd;
  pthread_t t[NTHREADS];
  sender_arg args[NTHREADS];
  pthread_barrier_t start;
  uint32_t next[NTHREADS] = {0};
  uint8_t *rec = malloc(RECORD);
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 32768, &pfd);
  /* small buffers: every record takes many partial writes, so a library
   * without a per-socket send lock would interleave them */
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 16384));
  ASSERT_EQ(pthread_barrier_init(&start, NULL, NTHREADS), 0);
  for (uint32_t i = 0; i < NTHREADS; i++) {
    args[i].h = h;
    args[i].id = i;
    args[i].start = &start;
    ASSERT_EQ(pthread_create(&t[i], NULL, record_sender, &args[i]), 0);
  }
  for (size_t r = 0; r < (size_t)NTHREADS * NRECORDS; r++) {
    record_header hd;
    peer_read_exact(pfd, rec, RECORD);
    memcpy(&hd, rec, sizeof hd);
    ASSERT_MSG(hd.magic == RECORD_MAGIC && hd.len == RECORD && hd.thread < NTHREADS,
               "record %zu: bad header (magic %08x thread %u len %u): bytes interleaved", r,
               hd.magic, hd.thread, hd.len);
    ASSERT_MSG(hd.seq == next[hd.thread], "record %zu: thread %u seq %u, expected %u", r,
               hd.thread, hd.seq, next[hd.thread]);
    for (size_t i = sizeof hd; i < RECORD; i++)
      ASSERT_MSG(rec[i] == filler(hd.thread, hd.seq, i),
                 "record %zu (thread %u seq %u): byte %zu corrupt: interleaved", r, hd.thread,
                 hd.seq, i);
    next[hd.thread]++;
  }
  for (int i = 0; i < NTHREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < NTHREADS; i++) ASSERT_EQ(next[i], NRECORDS);
  ASSERT_OK(sock_close(h));
  ASSERT_EQ(recv(pfd, rec, 1, 0), 0); /* and nothing more */
  pthread_barrier_destroy(&start);
  close(pfd);
  free(rec);
  return 0;
}

/* ---- close racing a blocked call ------------------------------------- */

typedef struct {
  sock_handle h;
  int recv; /* 0: send, 1: recv */
  size_t len;
  uint8_t *buf;
  sock_status status;
  size_t count;
  int started, done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} blocked_call;

static void *blocked_main(void *p) {
  blocked_call *c = p;
  pthread_mutex_lock(&c->mu);
  c->started = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  size_t n = UNWRITTEN;
  sock_status s = c->recv ? sock_recv(c->h, c->buf, c->len, SOCK_MSG_NONE, &n)
                          : sock_send(c->h, c->buf, c->len, SOCK_MSG_NONE, &n);
  pthread_mutex_lock(&c->mu);
  c->status = s;
  c->count = n;
  c->done = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Starts the call on a thread, lets it block, closes the handle, and
 * requires the call to come back within 10 s. */
static void close_races(blocked_call *c) {
  pthread_t t;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->started = c->done = 0;
  ASSERT_EQ(pthread_create(&t, NULL, blocked_main, c), 0);
  pthread_mutex_lock(&c->mu);
  while (!c->started) pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
  sleep_ms(300); /* long enough to be blocked inside the library */
  pthread_mutex_lock(&c->mu);
  ASSERT_MSG(!c->done, "the call returned (%s) before close; it should have blocked",
             status_name(c->status));
  pthread_mutex_unlock(&c->mu);

  ASSERT_OK(sock_close(c->h));

  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&c->mu);
  while (!c->done) {
    int rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    if (rc != 0 && !c->done) FAIL("the blocked call did not return within 10 s of sock_close");
  }
  pthread_mutex_unlock(&c->mu);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_MSG(c->status != SOCK_OK, "blocked call returned SOCK_OK (count %zu) after close", c->count);
  fprintf(stderr, "  (blocked %s returned %s after close)\n", c->recv ? "recv" : "send",
          status_name(c->status));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_send(c->h, "x", 1, 0, NULL));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(c->h));
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
}

TEST_IMPL(close_races_blocking_send) {
  static blocked_call c;
  int pfd;
  c.h = connect_pair(SOCK_FAMILY_INET, 4096, &pfd); /* peer never reads */
  ASSERT_OK(sock_set_option(c.h, SOCK_OPT_SEND_BUFFER_SIZE, 4096));
  c.recv = 0;
  c.len = 64u * 1024 * 1024;
  c.buf = pattern_alloc(c.len);
  close_races(&c);
  ASSERT_ULT(c.count, c.len);
  /* a prefix of the bytes reported sent arrives, in order, then a reset:
   * the send that close interrupted never finished, so the peer must not
   * see a clean end of stream */
  long long mm;
  int reset;
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_EQ(mm, -1);
  ASSERT_ULE(got, c.count);
  ASSERT_MSG(reset, "close interrupted a send: the peer saw a clean EOF after %zu bytes", got);
  close(pfd);
  free(c.buf);
  return 0;
}

TEST_IMPL(close_races_blocking_recv) {
  static blocked_call c;
  static uint8_t buf[4096];
  int pfd;
  c.h = connect_pair(SOCK_FAMILY_INET, 0, &pfd); /* peer never sends */
  c.recv = 1;
  c.len = sizeof buf;
  c.buf = buf;
  close_races(&c);
  ASSERT_UEQ(c.count, 0);
  close(pfd);
  return 0;
}

/* ---- handle table churn ------------------------------------------------ */

enum { CHURN_THREADS = 3, CHURN_ROUNDS = 400 };

typedef struct {
  sock_handle issued[CHURN_ROUNDS];
} churn_arg;

static void *churn_main(void *p) {
  churn_arg *a = p;
  for (int i = 0; i < CHURN_ROUNDS; i++) {
    sock_handle h = new_socket(i % 2 ? SOCK_FAMILY_INET : SOCK_FAMILY_INET6,
                               i % 3 ? SOCK_TYPE_STREAM : SOCK_TYPE_DGRAM);
    a->issued[i] = h;
    ASSERT_OK(sock_set_option(h, i % 3 ? SOCK_OPT_NO_DELAY : SOCK_OPT_BROADCAST, 1));
    (void)handle_fd(h);
    ASSERT_OK(sock_close(h));
    ASSERT_STATUS(SOCK_NOT_SOCKET, sock_set_option(h, SOCK_OPT_BLOCKING, 1));
    /* poke an older dead handle too: it must stay dead while fds recycle */
    if (i > 0) ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(a->issued[i / 2]));
  }
  return NULL;
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

TEST_IMPL(handle_table_churn) {
  static churn_arg args[CHURN_THREADS];
  static sock_handle all[CHURN_THREADS * CHURN_ROUNDS];
  pthread_t t[CHURN_THREADS];
  for (int i = 0; i < CHURN_THREADS; i++)
    ASSERT_EQ(pthread_create(&t[i], NULL, churn_main, &args[i]), 0);
  for (int i = 0; i < CHURN_THREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  /* a handle value is never issued twice, however the fds were reused */
  for (int i = 0; i < CHURN_THREADS; i++)
    memcpy(all + i * CHURN_ROUNDS, args[i].issued, sizeof args[i].issued);
  qsort(all, CHURN_THREADS * CHURN_ROUNDS, sizeof all[0], cmp_u64);
  for (int i = 1; i < CHURN_THREADS * CHURN_ROUNDS; i++)
    ASSERT_MSG(all[i] != all[i - 1], "handle %" PRIu64 " was issued twice", all[i]);
  return 0;
}

/* Many threads use one connected socket while the main thread closes it:
 * every call returns (a status), nothing crashes. */
typedef struct {
  sock_handle h;
  int id;
} hammer_arg;

static void *hammer_main(void *p) {
  hammer_arg *a = p;
  uint8_t buf[2048];
  int64_t v;
  char addr[SOCK_ADDRESS_MAX_LEN];
  memset(buf, a->id, sizeof buf);
  for (;;) {
    sock_status s;
    switch (a->id % 4) {
      case 0: s = sock_send(a->h, buf, sizeof buf, 0, NULL); break;
      case 1: s = sock_get_option(a->h, SOCK_OPT_SEND_BUFFER_SIZE, &v); break;
      case 2: s = sock_local_address(a->h, addr, sizeof addr, NULL); break;
      default: s = sock_recv(a->h, buf, sizeof buf, 0, NULL); break;
    }
    /* SOCK_NOT_SOCKET once closed; a call caught by the close may say
     * SOCK_OPERATION_ABORTED or another error. Either way: done. */
    if (s != SOCK_OK && s != SOCK_TIMED_OUT) return NULL;
  }
}

TEST_IMPL(close_while_many_threads_use_handle) {
  enum { N = 8 };
  pthread_t t[N];
  hammer_arg args[N];
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 20));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 20));
  reader_t r = {0};
  r.fd = pfd;
  reader_start(&r); /* drains whatever arrives until EOF */
  for (int i = 0; i < N; i++) {
    args[i].h = h;
    args[i].id = i;
    ASSERT_EQ(pthread_create(&t[i], NULL, hammer_main, &args[i]), 0);
  }
  sleep_ms(200);
  ASSERT_OK(sock_close(h));
  for (int i = 0; i < N; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  reader_join(&r);
  ASSERT(r.eof || r.err == ECONNRESET);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_send(h, "x", 1, 0, NULL));
  close(pfd);
  return 0;
}
