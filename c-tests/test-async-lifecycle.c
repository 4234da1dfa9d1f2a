/* Pending async sends meeting the end of things: close, cancel, shutdown,
 * deadlines, a peer that resets; callbacks that close their own socket or
 * start the next send (a million-step chain with bounded stack). */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* Submits n sends of len bytes each, one pattern running through all of
 * them, to a socket whose peer does not read: all of them stay pending. */
static uint8_t *submit_stuck(tracker *t, sock_handle h, size_t n, size_t len) {
  uint8_t *buf = pattern_alloc(n * len);
  for (size_t i = 0; i < n; i++) {
    sock_status s = track_send(t, i, h, buf + i * len, len);
    ASSERT_MSG(s == SOCK_IO_PENDING, "op %zu: %s (the peer does not read)", i, status_name(s));
    if (i > 0) ASSERT_UEQ(t->ops[i].sent_now, 0);
  }
  return buf;
}

/* Every op of t completed once with `want` (or want2), reporting at most
 * its length; an op that did not finish is followed only by ops that sent
 * nothing (order). Returns the sum of the reported bytes. */
static size_t check_ended(tracker *t, size_t n, sock_status want, sock_status want2) {
  size_t sum = 0;
  int short_seen = 0;
  for (size_t i = 0; i < n; i++) {
    op_t *op = &t->ops[i];
    ASSERT_MSG(op->calls == 1, "op %zu: callback ran %d times", i, op->calls);
    ASSERT_MSG(op->status == want || op->status == want2, "op %zu: expected %s, got %s", i,
               status_name(want), status_name(op->status));
    ASSERT_MSG(op->bytes <= op->len, "op %zu: reported %zu bytes of %zu", i, op->bytes, op->len);
    ASSERT_MSG(!short_seen || op->bytes == 0,
               "op %zu reported %zu bytes although an earlier op did not finish", i, op->bytes);
    if (op->bytes < op->len) short_seen = 1;
    ASSERT_MSG(t->order[i] == i, "callback %zu belonged to op %zu: out of order", i, t->order[i]);
    sum += op->bytes;
  }
  return sum;
}

/* Reads until EOF: exactly `expect` bytes of the pattern from offset 0. */
static void peer_drain_expect(int pfd, size_t expect, const char *what) {
  long long mm;
  size_t got = peer_drain(pfd, SIZE_MAX, 0, &mm);
  ASSERT_MSG(got == expect, "%s: peer got %zu bytes, the callbacks reported %zu", what, got,
             expect);
  ASSERT_MSG(mm == -1, "%s: stream differs at offset %lld", what, mm);
}

/* 5. sock_close with pending sends: each callback once, ABORTED, with the
 * bytes it did send - and that is exactly what the peer receives. The
 * buffers are freed as soon as sock_close returns (the contract allows it). */
TEST_IMPL(async_close_aborts_pending) {
  enum { N = 6 };
  const size_t len = 1 * MiB;
  int pfd;
  tracker t;
  sock_handle h = small_pair(4096, &pfd);
  tracker_init(&t, N);
  uint8_t *buf = submit_stuck(&t, h, N, len);
  ASSERT_EQ(tracker_calls(&t), 0);

  ASSERT_OK(sock_close(h));
  memset(buf, 0xEE, N * len); /* no callback will touch them any more */
  free(buf);
  tracker_wait(&t, N, 10000);
  tracker_settle(&t, N, 100);
  size_t sum = check_ended(&t, N, SOCK_OPERATION_ABORTED, SOCK_OPERATION_ABORTED);
  ASSERT_ULT(sum, N * len);
  /* Unsent bytes were discarded: the peer gets a prefix of what went to
   * the kernel, then a reset - never a clean end of a truncated stream. */
  long long mm;
  int reset;
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_MSG(reset, "after close with unsent data: the peer saw a clean EOF after %zu bytes", got);
  ASSERT_MSG(got <= sum, "after close: peer got %zu bytes, the callbacks reported %zu", got, sum);
  ASSERT_EQ(mm, -1);

  /* the handle is gone */
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_send_async(h, "x", 1, 0, track_cb, &t.ops[0], &n));
  ASSERT_UEQ(n, 0);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_cancel_sends(h));
  tracker_settle(&t, N, 50);
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* 6. sock_cancel_sends: pending sends end ABORTED with their partial counts,
 * a pending receive is untouched, and the socket goes on working. */
TEST_IMPL(async_cancel_sends_socket_stays_usable) {
  enum { N = 4 };
  const size_t len = 1 * MiB;
  int pfd;
  tracker t, tr;
  char rb[16];
  sock_handle h = small_pair(4096, &pfd);
  tracker_init(&t, N + 1);
  tracker_init(&tr, 1);
  ASSERT_OK(sock_cancel_sends(h)); /* nothing pending: fine */
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&tr, 0, h, rb, sizeof rb));
  uint8_t *buf = submit_stuck(&t, h, N, len);

  ASSERT_OK(sock_cancel_sends(h));
  tracker_wait(&t, N, 10000);
  tracker_settle(&t, N, 100);
  size_t sum = check_ended(&t, N, SOCK_OPERATION_ABORTED, SOCK_OPERATION_ABORTED);
  int64_t p = -1;
  ASSERT_OK(sock_get_option(h, SOCK_OPT_PENDING_SEND_BYTES, &p));
  ASSERT_EQ(p, 0);
  ASSERT_EQ(tracker_calls(&tr), 0); /* the receive is still pending */

  /* the peer gets exactly the reported bytes, then the next send's */
  peer_expect(pfd, buf, sum, "bytes of the cancelled sends");
  static const char after[] = "after the cancel";
  sock_status s = track_send(&t, N, h, after, sizeof after);
  ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
  peer_expect(pfd, after, sizeof after, "send after cancel");
  if (s == SOCK_IO_PENDING) {
    tracker_wait(&t, N + 1, 10000);
    ASSERT_STATUS(SOCK_OK, t.ops[N].status);
    ASSERT_UEQ(t.ops[N].bytes, sizeof after);
  }

  ASSERT_SYS(send(pfd, "pong", 4, 0));
  tracker_wait(&tr, 1, 10000);
  ASSERT_STATUS(SOCK_OK, tr.ops[0].status);
  ASSERT_UGE(tr.ops[0].bytes, 1);
  ASSERT_ULE(tr.ops[0].bytes, 4);
  ASSERT(memcmp(rb, "pong", tr.ops[0].bytes) == 0);
  ASSERT_OK(sock_cancel_sends(h));
  tracker_settle(&tr, 1, 50);
  tracker_settle(&t, N + (s == SOCK_IO_PENDING), 0);
  ASSERT_OK(sock_close(h));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_cancel_sends(h));
  close(pfd);
  free(buf);
  tracker_free(&t);
  tracker_free(&tr);
  return 0;
}

/* sock_shutdown(SEND) with pending sends: ABORTED each once; the peer sees
 * the reported bytes, then end of stream; receiving still works. */
TEST_IMPL(async_shutdown_send_aborts_pending) {
  enum { N = 3 };
  const size_t len = 1 * MiB;
  int pfd;
  tracker t, tr;
  char rb[8];
  sock_handle h = small_pair(4096, &pfd);
  tracker_init(&t, N);
  tracker_init(&tr, 1);
  uint8_t *buf = submit_stuck(&t, h, N, len);
  ASSERT_OK(sock_shutdown(h, SOCK_SHUT_SEND));
  tracker_wait(&t, N, 10000);
  tracker_settle(&t, N, 100);
  size_t sum = check_ended(&t, N, SOCK_OPERATION_ABORTED, SOCK_OPERATION_ABORTED);
  peer_drain_expect(pfd, sum, "after shutdown");
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send_async(h, "x", 1, 0, track_cb, &t.ops[0], &n));
  ASSERT_UEQ(n, 0);
  ASSERT_SYS(send(pfd, "r", 1, 0));
  sock_status s = track_recv(&tr, 0, h, rb, sizeof rb);
  if (s == SOCK_IO_PENDING) {
    tracker_wait(&tr, 1, 10000);
    ASSERT_STATUS(SOCK_OK, tr.ops[0].status);
    ASSERT_UEQ(tr.ops[0].bytes, 1);
  } else {
    ASSERT_OK(s);
    ASSERT_UEQ(tr.ops[0].sent_now, 1);
  }
  ASSERT_EQ(rb[0], 'r');
  tracker_settle(&t, N, 50);
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(buf);
  tracker_free(&t);
  tracker_free(&tr);
  return 0;
}

/* 7. SEND_TIMEOUT_MS bounds a pending send: SOCK_TIMED_OUT with its partial
 * count, not (much) before the deadline; the op queued behind goes on; the
 * peer receives exactly the reported bytes of each op, in order. */
TEST_IMPL(async_send_timeout_partial_then_next) {
  const unsigned timeout = 300;
  const size_t len0 = 4 * MiB, len1 = 64 * KiB, len2 = 1000;
  int pfd;
  tracker t;
  sock_handle h = small_pair(4096, &pfd);
  uint8_t *b0 = pattern_alloc(len0);
  uint8_t *b1 = malloc(len1), *b2 = malloc(len2);
  ASSERT(b1 != NULL && b2 != NULL);
  pattern_fill(b1, len1, 1000003);
  pattern_fill(b2, len2, 7777777);
  tracker_init(&t, 3);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, timeout));

  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, b0, len0));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, b1, len1));
  tracker_wait(&t, 1, 20000);
  op_t *op0 = &t.ops[0];
  ASSERT_UEQ(t.order[0], 0);
  ASSERT_STATUS(SOCK_TIMED_OUT, op0->status);
  ASSERT_UGT(op0->bytes, 0); /* the kernel took a few KiB */
  ASSERT_ULT(op0->bytes, len0);
  ASSERT_UGE(op0->at_ms - t0, timeout * 3 / 4); /* not (much) early */
  ASSERT_ULT(op0->at_ms - t0, 20000);           /* sanity only */

  /* now the peer reads: the op behind it goes on (it may have timed out
   * as well, having waited as long) */
  collector_t c = {0};
  c.fd = pfd;
  collector_start(&c);
  tracker_wait(&t, 2, 20000);
  op_t *op1 = &t.ops[1];
  ASSERT_STATUS2(SOCK_OK, SOCK_TIMED_OUT, op1->status);
  if (op1->status == SOCK_OK) ASSERT_UEQ(op1->bytes, len1);
  ASSERT_ULE(op1->bytes, len1);
  /* and the socket is not stuck: a new send completes */
  sock_status s = track_send(&t, 2, h, b2, len2);
  ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
  if (s == SOCK_IO_PENDING) {
    tracker_wait(&t, 3, 20000);
    ASSERT_STATUS(SOCK_OK, t.ops[2].status);
    ASSERT_UEQ(t.ops[2].bytes, len2);
  }
  tracker_settle(&t, s == SOCK_IO_PENDING ? 3 : 2, 50);
  ASSERT_OK(sock_close(h));
  collector_join(&c);
  size_t b0n = op0->bytes, b1n = op1->bytes;
  ASSERT_MSG(c.got == b0n + b1n + len2, "peer got %zu bytes, callbacks reported %zu + %zu + %zu",
             c.got, b0n, b1n, len2);
  ASSERT_MSG(memcmp(c.buf, b0, b0n) == 0, "timed-out op's bytes corrupt");
  ASSERT_MSG(memcmp(c.buf + b0n, b1, b1n) == 0, "second op's bytes corrupt or misplaced");
  ASSERT_MSG(memcmp(c.buf + b0n + b1n, b2, len2) == 0, "third op's bytes corrupt or misplaced");
  close(pfd);
  collector_free(&c);
  free(b0);
  free(b1);
  free(b2);
  tracker_free(&t);
  return 0;
}

/* 8. Peer reset while sends pend: CONNECTION_RESET (or SHUTDOWN for EPIPE)
 * for each, no SIGPIPE, and later sends fail synchronously. */
static void peer_gone_while_pending(int32_t family, int reset) {
  enum { N = 3 };
  const size_t len = 1 * MiB;
  int pfd;
  tracker t;
  assert_sigpipe_default();
  sock_handle h = connect_pair(family, 4096, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 4096));
  tracker_init(&t, N);
  uint8_t *buf = submit_stuck(&t, h, N, len);
  if (reset)
    peer_reset(pfd);
  else
    close(pfd);
  tracker_wait(&t, N, 10000);
  tracker_settle(&t, N, 100);
  check_ended(&t, N, SOCK_CONNECTION_RESET, SOCK_SHUTDOWN);
  size_t n = UNWRITTEN;
  sock_status s = sock_send_async(h, buf, 10, 0, track_cb, &t.ops[0], &n);
  ASSERT_MSG(s == SOCK_CONNECTION_RESET || s == SOCK_SHUTDOWN,
             "send_async after the reset: %s", status_name(s));
  ASSERT_UEQ(n, 0);
  tracker_settle(&t, N, 100);
  ASSERT_OK(sock_close(h));
  free(buf);
  tracker_free(&t);
}

TEST_IMPL(async_peer_reset_while_pending) {
  peer_gone_while_pending(SOCK_FAMILY_INET, 1);
  return 0;
}

TEST_IMPL(async_unix_peer_gone_while_pending) {
  peer_gone_while_pending(SOCK_FAMILY_UNIX, 0);
  return 0;
}

/* 11. The first op's callback closes its own socket while more ops pend:
 * those end ABORTED, each once; the peer gets exactly what was reported. */
static struct {
  sock_status close_status, send_after_close;
  size_t sent_after_close;
} g_cc;

static void close_in_callback(op_t *op, sock_handle h, sock_status s, size_t n) {
  (void)s;
  (void)n;
  if (op->index != 0) return;
  g_cc.close_status = sock_close(h);
  g_cc.sent_after_close = UNWRITTEN;
  g_cc.send_after_close =
      sock_send_async(h, "x", 1, 0, track_cb, &op->t->ops[0], &g_cc.sent_after_close);
}

TEST_IMPL(async_callback_closes_own_socket) {
  enum { N = 5 };
  const size_t len0 = 256 * KiB, len = 1 * MiB;
  int pfd;
  tracker t;
  sock_handle h = small_pair(4096, &pfd);
  uint8_t *buf = pattern_alloc(len0 + (N - 1) * len);
  tracker_init(&t, N);
  t.hook = close_in_callback;
  g_cc.close_status = -1;
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len0));
  for (size_t i = 1; i < N; i++)
    ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, i, h, buf + len0 + (i - 1) * len, len));

  /* reading op 0's bytes lets op 0 (and only op 0) finish; its callback
   * closes the socket with the others unsent, which resets the connection
   * and may discard the tail of op 0 still in the kernel's send buffer:
   * the peer gets a prefix of the stream, then the reset */
  long long mm;
  int reset;
  size_t got = peer_drain_until_end(pfd, 0, &mm, &reset);
  ASSERT_EQ(mm, -1);
  tracker_wait(&t, N, 10000);
  tracker_settle(&t, N, 100);
  ASSERT_STATUS(SOCK_OK, g_cc.close_status);
  ASSERT_STATUS(SOCK_NOT_SOCKET, g_cc.send_after_close);
  ASSERT_UEQ(g_cc.sent_after_close, 0);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, len0);
  size_t sum = 0;
  for (size_t i = 0; i < N; i++) {
    ASSERT_UEQ(t.order[i], i);
    if (i == 0) continue;
    ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[i].status);
    ASSERT_ULT(t.ops[i].bytes, len);
    if (i > 1) ASSERT_UEQ(t.ops[i].bytes, 0);
    sum += t.ops[i].bytes;
  }
  ASSERT_MSG(reset, "close with unsent data: the peer saw a clean EOF after %zu bytes", got);
  ASSERT_MSG(got <= len0 + sum, "peer got %zu bytes, callbacks reported %zu", got, len0 + sum);
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(h));
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* 10. A chain of sends started from the callback, with the loop-on-SOCK_OK
 * pattern of the header: a million 8-byte steps, each carrying its index.
 * A library that recursed (callback inside sock_send_async) would overflow
 * the engine thread's stack; the stack depth of the callbacks is measured
 * too. With inline completion off, every step goes through the callback. */
#define CHAIN_STEPS 1000000u

typedef struct {
  sock_handle h;
  uint64_t next;
  uint64_t word;
  size_t callbacks;
  sock_status fail;
  size_t fail_bytes;
  int done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} chain_t;

static _Thread_local uintptr_t tl_lo, tl_hi;
static atomic_size_t g_max_spread;

static void chain_cb(sock_handle h, sock_status s, size_t n, void *ud);

static void chain_finish(chain_t *c, sock_status fail) {
  pthread_mutex_lock(&c->mu);
  c->fail = fail;
  c->done = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

/* The header's loop: go on while sends finish inline. */
static void chain_pump(chain_t *c, sock_status s) {
  while (s == SOCK_OK && c->next < CHAIN_STEPS) {
    c->word = c->next++;
    s = sock_send_async(c->h, &c->word, sizeof c->word, SOCK_MSG_NONE, chain_cb, c, NULL);
  }
  if (s == SOCK_IO_PENDING) return; /* chain_cb runs again */
  chain_finish(c, s);               /* SOCK_OK: all steps done */
}

static void chain_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  chain_t *c = ud;
  volatile char mark = 0;
  uintptr_t sp = (uintptr_t)&mark;
  if (tl_lo == 0 || sp < tl_lo) tl_lo = sp;
  if (sp > tl_hi) tl_hi = sp;
  size_t spread = tl_hi - tl_lo, cur = atomic_load(&g_max_spread);
  while (spread > cur && !atomic_compare_exchange_weak(&g_max_spread, &cur, spread)) {
  }
  c->callbacks++;
  if (h != c->h || s != SOCK_OK || n != sizeof c->word) {
    c->fail_bytes = n;
    chain_finish(c, s == SOCK_OK ? SOCK_SOCKET_ERROR : s);
    return;
  }
  chain_pump(c, s);
}

static void run_chain(int inline_completion) {
  int pfd;
  chain_t c;
  memset(&c, 0, sizeof c);
  ASSERT_EQ(pthread_mutex_init(&c.mu, NULL), 0);
  ASSERT_EQ(pthread_cond_init(&c.cv, NULL), 0);
  atomic_store(&g_max_spread, 0);
  /* small buffers: the sender outruns the reader now and then, so the
   * chain also goes through the pending path */
  c.h = small_pair(16384, &pfd);
  if (!inline_completion) ASSERT_OK(sock_set_option(c.h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  const size_t total = (size_t)CHAIN_STEPS * sizeof c.word;
  collector_t col = {0};
  col.fd = pfd;
  col.expect = total;
  col.sleep_every = 8; /* a reader that pauses: the chain goes pending */
  col.pause_ms = 10;
  collector_start(&col);

  chain_pump(&c, SOCK_OK);
  pthread_mutex_lock(&c.mu);
  while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
  pthread_mutex_unlock(&c.mu);
  ASSERT_MSG(c.fail == SOCK_OK, "chain stopped at step %" PRIu64 ": %s (%zu bytes)", c.next,
             status_name(c.fail), c.fail_bytes);
  ASSERT_UEQ(c.next, CHAIN_STEPS);
  collector_join(&col);
  ASSERT_UEQ(col.got, total);
  for (uint64_t i = 0; i < CHAIN_STEPS; i++) {
    uint64_t w;
    memcpy(&w, col.buf + i * sizeof w, sizeof w);
    ASSERT_MSG(w == i, "word %" PRIu64 " of the stream is %" PRIu64, i, w);
  }
  if (inline_completion)
    ASSERT_MSG(c.callbacks > 0, "the chain never went pending: the test proved less");
  else
    ASSERT_UEQ(c.callbacks, CHAIN_STEPS); /* every step through its callback */
  size_t spread = atomic_load(&g_max_spread);
  ASSERT_MSG(spread < 256 * 1024, "callback stack depth varied by %zu bytes: recursion", spread);
  printf("# %zu of %u steps completed through the callback; stack spread %zu bytes\n",
         c.callbacks, CHAIN_STEPS, spread);
  ASSERT_OK(sock_close(c.h));
  close(pfd);
  collector_free(&col);
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
}

TEST_IMPL(async_callback_chain_million_steps) {
  run_chain(1);
  return 0;
}

TEST_IMPL(async_callback_chain_inline_off) {
  run_chain(0);
  return 0;
}

/* sock_close racing the completion of a send, many times over: whichever
 * wins, the callback runs exactly once - SOCK_OK with every byte, or
 * ABORTED with its partial count - and the peer receives exactly the bytes
 * reported. */
TEST_IMPL(async_close_races_completion) {
  enum { ROUNDS = 100 };
  const size_t len = 128 * KiB;
  uint8_t *buf = pattern_alloc(len);
  unsigned seed = 12345;
  int won_ok = 0, won_abort = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int pfd;
    tracker t;
    tracker_init(&t, 1);
    sock_handle h = small_pair(16384, &pfd);
    collector_t c = {0};
    c.fd = pfd;
    c.chunk = 8192;
    c.allow_reset = 1;
    collector_start(&c);
    sock_status s = track_send(&t, 0, h, buf, len);
    ASSERT_STATUS2(SOCK_OK, SOCK_IO_PENDING, s);
    seed = seed * 1103515245u + 12345u;
    unsigned spin = (seed >> 16) % 3000; /* 0..3 ms */
    uint64_t t0 = now_ms();
    while ((now_ms() - t0) * 1000 < spin) {
    }
    ASSERT_OK(sock_close(h));
    size_t reported = len;
    if (s == SOCK_IO_PENDING) {
      tracker_wait(&t, 1, 10000);
      op_t *op = &t.ops[0];
      ASSERT_STATUS2(SOCK_OK, SOCK_OPERATION_ABORTED, op->status);
      if (op->status == SOCK_OK) {
        ASSERT_UEQ(op->bytes, len);
        won_ok++;
      } else {
        ASSERT_ULE(op->bytes, len);
        won_abort++;
      }
      reported = op->bytes;
    }
    collector_join(&c);
    if (reported == len)
      ASSERT_MSG(c.eof && c.got == reported, "round %d: peer got %zu bytes (reset %d), callback reported all %zu",
                 round, c.got, c.reset, reported);
    else /* unsent bytes discarded: a prefix, then a reset */
      ASSERT_MSG(c.reset && c.got <= reported, "round %d: peer got %zu bytes (eof %d), callback reported %zu",
                 round, c.got, c.eof, reported);
    ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
    tracker_settle(&t, s == SOCK_IO_PENDING, 5);
    close(pfd);
    collector_free(&c);
    tracker_free(&t);
  }
  printf("# completed first %d times, close first %d times\n", won_ok, won_abort);
  free(buf);
  return 0;
}
