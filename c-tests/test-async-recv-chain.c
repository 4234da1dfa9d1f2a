/* Receives chained from their own callbacks, the way a server reads: each
 * callback submits the next receive (looping on SOCK_OK). A receive
 * submitted there right after one that emptied the buffer may wait for the
 * next readable event instead of trying a read; these tests make sure no
 * byte and no end of stream is ever left waiting for an event that does
 * not come: data and FIN in one event, urgent data (at whose mark a read
 * stops short), a peek (which leaves the bytes), and a receive submitted
 * from another thread after the peer closed. Each runs on the default
 * engine, a threaded engine and a manual engine. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  const char *name;
  sock_engine *e; /* NULL: the default engine */
  int manual;
} chain_engine;

static void chain_engines(chain_engine out[3]) {
  out[0] = (chain_engine){"default", NULL, 0};
  out[1] = (chain_engine){"threaded", NULL, 0};
  out[2] = (chain_engine){"manual", NULL, 1};
  ASSERT_OK(sock_engine_new(1, &out[1].e));
  ASSERT_OK(sock_engine_new(0, &out[2].e));
}

static void chain_engines_free(chain_engine es[3]) {
  ASSERT_OK(sock_engine_free(es[1].e));
  ASSERT_OK(sock_engine_free(es[2].e));
}

/* ---- a reader that chains its receives ---------------------------------- */

#define CHAIN_CAP 64
#define CHAIN_MAX 4096

typedef struct {
  sock_handle h;
  int32_t flags;         /* of the first receive only (later ones plain) */
  char buf[CHAIN_CAP];
  char got[CHAIN_MAX];   /* every byte received, in order */
  atomic_size_t len;     /* of got, published after the bytes */
  atomic_int eof;        /* a receive completed with 0 bytes */
  atomic_int failed;     /* a receive failed: its status */
  atomic_int callbacks;
  size_t peeked;         /* bytes the first (peek) receive saw */
} chain_t;

static void chain_cb(sock_handle h, sock_status s, size_t n, void *ud);

/* Takes what a receive got; returns nonzero to go on. */
static int chain_take(chain_t *c, sock_status s, size_t n) {
  if (s != SOCK_OK) {
    atomic_store(&c->failed, (int)s);
    return 0;
  }
  if (n == 0) {
    atomic_store(&c->eof, 1);
    return 0;
  }
  if (c->flags & SOCK_MSG_PEEK) {
    c->peeked = n; /* the bytes stay; the next receive (plain) takes them */
    c->flags = SOCK_MSG_NONE;
    return 1;
  }
  size_t len = atomic_load(&c->len);
  if (len + n > CHAIN_MAX) {
    atomic_store(&c->failed, -1);
    return 0;
  }
  memcpy(c->got + len, c->buf, n);
  atomic_store(&c->len, len + n);
  return 1;
}

/* Submits receives until one pends (or the chain ends). */
static void chain_next(chain_t *c) {
  for (;;) {
    size_t now = 0;
    sock_status s = sock_recv_async(c->h, c->buf, sizeof c->buf, c->flags, chain_cb, c, &now);
    if (s == SOCK_IO_PENDING) return;
    if (!chain_take(c, s, now)) return;
  }
}

static void chain_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  chain_t *c = ud;
  (void)h;
  atomic_fetch_add(&c->callbacks, 1);
  if (chain_take(c, s, n)) chain_next(c);
}

/* Waits (polling a manual engine) until the chain saw end of stream. */
static void chain_wait_eof(const chain_engine *en, chain_t *c, const char *what) {
  uint64_t t0 = now_ms();
  while (!atomic_load(&c->eof) && !atomic_load(&c->failed)) {
    ASSERT_MSG(now_ms() - t0 < wait_bound_ms(5000),
               "%s engine, %s: no end of stream after 5 s (%zu bytes, %d callbacks): a "
               "receive waits for an event that does not come",
               en->name, what, atomic_load(&c->len), atomic_load(&c->callbacks));
    if (en->manual)
      ASSERT_OK(sock_engine_poll(en->e, 10, NULL));
    else
      sleep_ms(1);
  }
  ASSERT_MSG(!atomic_load(&c->failed), "%s engine, %s: a receive failed (%d)", en->name, what,
             atomic_load(&c->failed));
}

/* Waits (polling a manual engine) until the chain holds `want` bytes, with
 * the peer's stream still open (no later event to rescue a stuck one). */
static void chain_wait_len(const chain_engine *en, chain_t *c, size_t want, const char *what) {
  uint64_t t0 = now_ms();
  while (atomic_load(&c->len) < want && !atomic_load(&c->failed)) {
    ASSERT_MSG(now_ms() - t0 < wait_bound_ms(3000),
               "%s engine, %s: %zu of %zu bytes after 3 s: a receive waits for an event that "
               "does not come",
               en->name, what, atomic_load(&c->len), want);
    if (en->manual)
      ASSERT_OK(sock_engine_poll(en->e, 10, NULL));
    else
      sleep_ms(1);
  }
}

static sock_handle chain_socket(const chain_engine *en, int *pfd) {
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, pfd);
  if (en->e) ASSERT_OK(sock_attach(h, en->e));
  return h;
}

/* Starts the chain with a receive that must pend (nothing sent yet), so
 * that the receives after it are submitted from callbacks. */
static void chain_start(chain_t *c, sock_handle h, int32_t flags) {
  memset(c, 0, sizeof *c);
  atomic_init(&c->len, 0);
  c->h = h;
  c->flags = flags;
  size_t now = 1;
  ASSERT_STATUS(SOCK_IO_PENDING,
                sock_recv_async(h, c->buf, sizeof c->buf, flags, chain_cb, c, &now));
  ASSERT_UEQ(now, 0);
}

/* ---- the tests ----------------------------------------------------------- */

/* A short read followed by end of stream, with the FIN in the same event as
 * the data (the manual engine polls only after both arrived) or just after
 * it: the chained receive after the short read must still see the end. */
TEST_IMPL(async_recv_chain_data_and_fin) {
  chain_engine es[3];
  chain_engines(es);
  for (int k = 0; k < 3; k++) {
    for (int round = 0; round < 40; round++) {
      int pfd;
      chain_t c;
      sock_handle h = chain_socket(&es[k], &pfd);
      chain_start(&c, h, SOCK_MSG_NONE);
      ASSERT_SYS(send(pfd, "abc", 3, 0));
      if (round % 3 == 1) sleep_ms(1); /* FIN in an event of its own */
      if (round % 3 == 2) usleep((useconds_t)(round * 37 % 500));
      ASSERT_SYS(shutdown(pfd, SHUT_WR));
      if (es[k].manual) sleep_ms(5); /* both arrived before the poll */
      chain_wait_eof(&es[k], &c, "data then FIN");
      ASSERT_UEQ(c.len, 3);
      ASSERT(memcmp(c.got, "abc", 3) == 0);
      ASSERT_OK(sock_close(h));
      close(pfd);
    }
  }
  chain_engines_free(es);
  return 0;
}

/* Urgent data: a read stops short at the urgent mark with normal bytes
 * still behind it, and no new event comes for them. The chain must get
 * every normal byte in order (the urgent byte is out of band). */
TEST_IMPL(async_recv_chain_urgent_mark) {
  chain_engine es[3];
  chain_engines(es);
  for (int k = 0; k < 3; k++) {
    for (int round = 0; round < 10; round++) {
      int pfd;
      chain_t c;
      sock_handle h = chain_socket(&es[k], &pfd);
      chain_start(&c, h, SOCK_MSG_NONE);
      ASSERT_SYS(send(pfd, "abc", 3, 0));
      ASSERT_SYS(send(pfd, "!", 1, MSG_OOB));
      ASSERT_SYS(send(pfd, "def", 3, 0));
      if (es[k].manual) sleep_ms(5); /* all of it before the poll */
      /* every normal byte, before the peer ends the stream */
      chain_wait_len(&es[k], &c, 6, "bytes after an urgent mark");
      ASSERT_SYS(shutdown(pfd, SHUT_WR));
      chain_wait_eof(&es[k], &c, "urgent data");
      ASSERT_UEQ(c.len, 6);
      ASSERT_MSG(memcmp(c.got, "abcdef", 6) == 0, "%s engine: got %.6s", es[k].name, c.got);
      ASSERT_OK(sock_close(h));
      close(pfd);
    }
  }
  chain_engines_free(es);
  return 0;
}

/* A peek that sees fewer bytes than it asked for leaves them there: the
 * plain receive chained after it must get them without a new event. */
TEST_IMPL(async_recv_chain_after_peek) {
  chain_engine es[3];
  chain_engines(es);
  for (int k = 0; k < 3; k++) {
    int pfd;
    chain_t c;
    sock_handle h = chain_socket(&es[k], &pfd);
    chain_start(&c, h, SOCK_MSG_PEEK);
    ASSERT_SYS(send(pfd, "peeked", 6, 0));
    chain_wait_len(&es[k], &c, 6, "the receive after a peek");
    ASSERT_UGE(c.peeked, 1);
    ASSERT_UEQ(c.len, 6);
    ASSERT(memcmp(c.got, "peeked", 6) == 0);
    ASSERT_SYS(shutdown(pfd, SHUT_WR));
    chain_wait_eof(&es[k], &c, "after a peek");
    ASSERT_OK(sock_close(h));
    close(pfd);
  }
  chain_engines_free(es);
  return 0;
}

static atomic_int g_unexpected_callbacks;

static void unexpected_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)h, (void)s, (void)n, (void)ud;
  atomic_fetch_add(&g_unexpected_callbacks, 1);
}

/* Outside the engine's callbacks a receive always tries inline: after a
 * short read and the peer's close, a receive from this thread finishes
 * inline with end of stream, with no poll in between. */
TEST_IMPL(async_recv_short_read_then_eof_inline) {
  chain_engine es[3];
  chain_engines(es);
  for (int k = 0; k < 3; k++) {
    int pfd;
    char rb[64];
    size_t now = 0;
    sock_handle h = chain_socket(&es[k], &pfd);
    ASSERT_SYS(send(pfd, "xyz", 3, 0));
    ASSERT(peer_readable(handle_fd(h), 5000));
    ASSERT_OK(sock_recv_async(h, rb, sizeof rb, SOCK_MSG_NONE, unexpected_cb, NULL, &now));
    ASSERT_UEQ(now, 3);
    ASSERT_SYS(shutdown(pfd, SHUT_WR));
    sleep_ms(20);
    now = 1;
    ASSERT_STATUS(SOCK_OK, sock_recv_async(h, rb, sizeof rb, SOCK_MSG_NONE, unexpected_cb, NULL, &now));
    ASSERT_UEQ(now, 0);
    ASSERT_OK(sock_close(h));
    close(pfd);
  }
  chain_engines_free(es);
  ASSERT_EQ(atomic_load(&g_unexpected_callbacks), 0);
  return 0;
}

/* Many requests and replies on one connection, as a server sees them:
 * every byte, in order, whatever the chunking. */
TEST_IMPL(async_recv_chain_many_small_writes) {
  chain_engine es[3];
  chain_engines(es);
  for (int k = 0; k < 3; k++) {
    int pfd;
    chain_t c;
    char expect[CHAIN_MAX];
    sock_handle h = chain_socket(&es[k], &pfd);
    chain_start(&c, h, SOCK_MSG_NONE);
    size_t off = 0;
    unsigned seed = 7;
    while (off < 3000) {
      size_t n = 1 + (seed = seed * 1103515245 + 12345) % 90;
      if (off + n > 3000) n = 3000 - off;
      for (size_t i = 0; i < n; i++) expect[off + i] = (char)('A' + (off + i) % 26);
      ASSERT_SYS(send(pfd, expect + off, n, 0));
      off += n;
      if (seed % 4 == 0) usleep(200);
      if (es[k].manual && seed % 3 == 0) ASSERT_OK(sock_engine_poll(es[k].e, 0, NULL));
    }
    ASSERT_SYS(shutdown(pfd, SHUT_WR));
    chain_wait_eof(&es[k], &c, "many small writes");
    ASSERT_UEQ(c.len, 3000);
    ASSERT(memcmp(c.got, expect, 3000) == 0);
    ASSERT_OK(sock_close(h));
    close(pfd);
  }
  chain_engines_free(es);
  return 0;
}
