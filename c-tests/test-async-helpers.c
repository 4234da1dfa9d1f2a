#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- completion tracker ----------------------------------------------- */

void tracker_init(tracker *t, size_t nops) {
  memset(t, 0, sizeof *t);
  ASSERT_EQ(pthread_mutex_init(&t->mu, NULL), 0);
  ASSERT_EQ(pthread_cond_init(&t->cv, NULL), 0);
  t->nops = nops;
  t->ops = calloc(nops ? nops : 1, sizeof *t->ops);
  t->order = calloc(nops ? nops : 1, sizeof *t->order);
  ASSERT(t->ops != NULL && t->order != NULL);
  for (size_t i = 0; i < nops; i++) {
    t->ops[i].t = t;
    t->ops[i].index = i;
    t->ops[i].submit_status = -12345;
  }
}

void tracker_free(tracker *t) {
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t->ops);
  free(t->order);
  t->ops = NULL;
  t->order = NULL;
}

op_t *tracker_op(tracker *t, size_t i, sock_handle h, size_t len) {
  ASSERT_ULT(i, t->nops);
  op_t *op = &t->ops[i];
  op->h = h;
  op->len = len;
  op->sent_now = UNWRITTEN;
  return op;
}

void track_cb(sock_handle h, sock_status s, size_t n, void *user_data) {
  op_t *op = user_data;
  ASSERT_MSG(op != NULL, "callback: user_data NULL (not passed back untouched)");
  tracker *t = op->t;
  ASSERT_MSG(t != NULL && op >= t->ops && op < t->ops + t->nops,
             "callback: user_data %p is not one of the test's operations", user_data);
  pthread_mutex_lock(&t->mu);
  if (h != op->h) t->wrong_handle++;
  if (op->calls++ == 0) {
    op->status = s;
    op->bytes = n;
    op->thread = pthread_self();
    op->position = t->calls;
    op->at_ms = now_ms();
    t->order[t->calls] = op->index;
    t->calls++;
  } else {
    t->duplicates++;
    fprintf(stderr, "callback of op %zu ran %d times (now %s, %zu bytes)\n", op->index,
            op->calls, status_name(s), n);
  }
  pthread_cond_broadcast(&t->cv);
  track_hook hook = t->hook;
  pthread_mutex_unlock(&t->mu);
  if (hook) hook(op, h, s, n);
}

size_t tracker_calls(tracker *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = t->calls + t->duplicates;
  pthread_mutex_unlock(&t->mu);
  return n;
}

void tracker_wait(tracker *t, size_t n, unsigned timeout_ms) {
  struct timespec dl;
  timeout_ms = wait_bound_ms(timeout_ms);
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += timeout_ms / 1000;
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&t->mu);
  while (t->calls < n) {
    int rc = pthread_cond_timedwait(&t->cv, &t->mu, &dl);
    if (rc == ETIMEDOUT && t->calls < n) {
      size_t got = t->calls;
      pthread_mutex_unlock(&t->mu);
      FAIL("only %zu of %zu callbacks ran within %u ms", got, n, timeout_ms);
    }
  }
  pthread_mutex_unlock(&t->mu);
}

void tracker_settle(tracker *t, size_t expected, unsigned grace_ms) {
  if (grace_ms) sleep_ms(grace_ms);
  pthread_mutex_lock(&t->mu);
  size_t calls = t->calls, dup = t->duplicates, wrong = t->wrong_handle;
  pthread_mutex_unlock(&t->mu);
  ASSERT_MSG(dup == 0, "%zu callbacks ran more than once for their operation", dup);
  ASSERT_MSG(wrong == 0, "%zu callbacks were given another socket's handle", wrong);
  ASSERT_MSG(calls == expected, "%zu callbacks ran, expected exactly %zu", calls, expected);
}

sock_status track_send(tracker *t, size_t i, sock_handle h, const void *buf, size_t len) {
  op_t *op = tracker_op(t, i, h, len);
  size_t sent = UNWRITTEN;
  sock_status s = sock_send_async(h, buf, len, SOCK_MSG_NONE, track_cb, op, &sent);
  op->submit_status = s;
  op->sent_now = sent;
  ASSERT_MSG(sent != UNWRITTEN, "op %zu: *sent_now was not written (%s)", i, status_name(s));
  ASSERT_ULE(sent, len);
  if (s == SOCK_OK) ASSERT_MSG(sent == len, "op %zu: SOCK_OK with sent_now %zu of %zu", i, sent, len);
  return s;
}

sock_status track_recv(tracker *t, size_t i, sock_handle h, void *buf, size_t cap) {
  op_t *op = tracker_op(t, i, h, cap);
  size_t got = UNWRITTEN;
  sock_status s = sock_recv_async(h, buf, cap, SOCK_MSG_NONE, track_cb, op, &got);
  op->submit_status = s;
  op->sent_now = got;
  ASSERT_MSG(got != UNWRITTEN, "op %zu: *received_now was not written (%s)", i, status_name(s));
  ASSERT_ULE(got, cap);
  return s;
}

/* ---- collector -------------------------------------------------------- */

static void *collector_main(void *arg) {
  collector_t *c = arg;
  size_t chunk = c->chunk ? c->chunk : 65536;
  unsigned reads = 0;
  while (c->expect == 0 || c->got < c->expect) {
    size_t want = chunk;
    if (c->expect && c->expect - c->got < want) want = c->expect - c->got;
    if (c->cap - c->got < want) {
      size_t ncap = c->cap ? c->cap * 2 : (size_t)1 << 20;
      while (ncap - c->got < want) ncap *= 2;
      uint8_t *nb = realloc(c->buf, ncap);
      ASSERT(nb != NULL);
      c->buf = nb;
      c->cap = ncap;
    }
    if (!peer_readable(c->fd, (int)wait_bound_ms(20000))) {
      c->err = ETIMEDOUT;
      break;
    }
    ssize_t n = recv(c->fd, c->buf + c->got, want, 0);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1 && errno == ECONNRESET && c->allow_reset) {
      c->reset = 1;
      break;
    }
    if (n == -1) {
      c->err = errno;
      break;
    }
    if (n == 0) {
      c->eof = 1;
      break;
    }
    c->got += (size_t)n;
    if (c->sleep_every && ++reads % c->sleep_every == 0) sleep_ms(c->pause_ms ? c->pause_ms : 1);
  }
  return NULL;
}

void collector_start(collector_t *c) {
  c->buf = NULL;
  c->got = c->cap = 0;
  c->eof = c->err = c->reset = 0;
  ASSERT_EQ(pthread_create(&c->tid, NULL, collector_main, c), 0);
}

void collector_join(collector_t *c) {
  ASSERT_EQ(pthread_join(c->tid, NULL), 0);
  ASSERT_MSG(c->err == 0, "collector: %s after %zu bytes", strerror(c->err), c->got);
}

void collector_free(collector_t *c) {
  free(c->buf);
  c->buf = NULL;
}

/* ---- misc ------------------------------------------------------------- */

sock_handle small_pair(int bufsize, int *peer_fd) {
  sock_handle h = connect_pair(SOCK_FAMILY_INET, bufsize, peer_fd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, bufsize));
  return h;
}

void peer_expect(int fd, const void *expect, size_t len, const char *what) {
  uint8_t *got = malloc(len ? len : 1);
  ASSERT(got != NULL);
  peer_read_exact(fd, got, len);
  for (size_t i = 0; i < len; i++)
    if (got[i] != ((const uint8_t *)expect)[i])
      FAIL("%s: byte %zu of %zu differs (0x%02x, expected 0x%02x)", what, i, len, got[i],
           ((const uint8_t *)expect)[i]);
  free(got);
}

long raise_fd_limit(void) {
  struct rlimit rl;
  ASSERT_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  rl.rlim_cur = rl.rlim_max;
  ASSERT_SYS(setrlimit(RLIMIT_NOFILE, &rl));
  return (long)rl.rlim_cur;
}
