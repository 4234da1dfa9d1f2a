/* Stress: 1,000 connections, each sending a random mix of blocking and
 * async, single-buffer and gathered sends of random sizes (1 B - 256 KiB)
 * to a plain-POSIX epoll receiver that checks every stream against a
 * pattern that depends on (connection, offset). 10% of the connections end
 * early: closed by the sender (sock_close, possibly with sends pending) or
 * reset by the receiver (SO_LINGER {1,0} + close) at a random point.
 *
 * Checked: every async callback ran exactly once (and only for operations
 * that returned SOCK_IO_PENDING); surviving streams arrive complete and
 * intact, with receiver bytes == the bytes the calls reported; closed
 * streams arrive exactly as reported (a graceful close delivers what the
 * kernel had); reset streams arrive as an intact prefix of at most what
 * was reported; memory and descriptors return to where they were after a
 * warm-up round.
 *
 * Seeded: SOCK_STRESS_SEED=N reproduces a run's plan (sizes, flavours,
 * fates; thread timing is the OS's), else the time is used; the seed is
 * printed as "# stress seed: N". The normal run has a warm-up round and
 * three main rounds (plans seed, seed+1, seed+2); SOCK_SOAK_SECONDS=S
 * repeats main rounds for S seconds instead (make soak).
 *
 * Memory: RSS (after malloc_trim, so it counts live memory) after all main
 * rounds may exceed RSS after the warm-up by at most 8 MiB. The warm-up
 * opens the same 1,000 connections, so the library's tables are at full
 * size; what remains is allocator slack and the touched stacks of the
 * round's threads (4 x 8 MiB reserved, a few hundred KiB touched). A leak
 * of one small record per operation (~10,000 per round) or of the
 * per-socket state of a round (1,000 sockets) exceeds it within a soak; a
 * leak of the payload (~250 MiB per round) at once. Under ASan the check is
 * skipped: its quarantine holds freed memory by design, and LeakSanitizer
 * checks for leaks at exit. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
  NCONN = 1000,
  MAXOPS = 6,
  MAXSEGS = 16,
  SENDERS = 2,
  RECEIVERS = 2,
  BASE_STRIDE = 7919, /* connection c's stream starts at pattern offset c * 7919 */
};
#define MAX_OP_LEN (256 * KiB)
#define RSS_TOLERANCE (8 * MiB)
#define NORMAL_ROUNDS 3 /* main rounds without SOCK_SOAK_SECONDS */

enum { F_SEND, F_SEND_ASYNC, F_SENDV, F_SENDV_ASYNC };
static const char *const flavour_name[] = {"sock_send", "sock_send_async", "sock_sendv",
                                           "sock_sendv_async"};
enum { FATE_NONE, FATE_CLOSE, FATE_RESET };

/* ---- a small seeded PRNG (splitmix64) ---------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static uint64_t rng_below(uint64_t *s, uint64_t n) {
  return rng_next(s) % n;
}

/* ---- the plan and the record of one round ------------------------------- */

typedef struct {
  int flavour;
  size_t len;
  size_t off;    /* stream offset of its first byte */
  int nsegs;     /* for the sendv flavours */
  /* what happened */
  sock_status status;   /* blocking: the call's; async: the submit status */
  size_t sent;          /* blocking: *sent; async: *sent_now */
  int issued;
} op_plan;

typedef struct {
  int nops;
  op_plan ops[MAXOPS];
  size_t planned;       /* sum of the op lengths */
  int fate;
  int close_after;      /* FATE_CLOSE: sock_close right after this op */
  size_t reset_at;      /* FATE_RESET: the receiver resets after this many bytes */
  sock_handle h;
  int closed;           /* by the sender, mid-stream */
  /* receiver side */
  int fd;
  size_t got;
  long long mismatch;
  int eof, reset_done, err;
} conn_t;

static struct {
  conn_t c[NCONN];
  uint8_t *pattern;     /* pattern_byte(0 ..) over NCONN * stride + a stream */
  size_t pattern_len;
  tracker t;            /* op index = conn * MAXOPS + j */
} S;

static const uint8_t *stream_at(int c, size_t off) {
  return S.pattern + (size_t)c * BASE_STRIDE + off;
}

static size_t random_len(uint64_t *rng, size_t max) {
  /* half log-uniform (many small sends), half uniform */
  if (rng_below(rng, 2) == 0) {
    unsigned bits = 0;
    while (((size_t)1 << bits) < max) bits++;
    size_t top = (size_t)1 << rng_below(rng, bits + 1);
    size_t v = 1 + rng_below(rng, top);
    return v > max ? max : v;
  }
  return 1 + rng_below(rng, max);
}

static void make_plan(uint64_t seed, int warm_up) {
  uint64_t rng = seed;
  int max_ops = warm_up ? 1 : MAXOPS;
  for (int i = 0; i < NCONN; i++) {
    conn_t *c = &S.c[i];
    memset(c, 0, sizeof *c);
    c->nops = 1 + (int)rng_below(&rng, (uint64_t)max_ops);
    for (int j = 0; j < c->nops; j++) {
      op_plan *op = &c->ops[j];
      op->flavour = (int)rng_below(&rng, 4);
      op->len = random_len(&rng, MAX_OP_LEN);
      op->off = c->planned;
      op->nsegs = 1 + (int)rng_below(&rng, MAXSEGS);
      c->planned += op->len;
    }
    c->mismatch = -1;
    c->fd = -1;
  }
  /* 10% end early, half each way, at random points */
  int ended = 0;
  while (ended < NCONN / 10) {
    conn_t *c = &S.c[rng_below(&rng, NCONN)];
    if (c->fate != FATE_NONE) continue;
    if (ended % 2 == 0) {
      c->fate = FATE_CLOSE;
      c->close_after = (int)rng_below(&rng, (uint64_t)c->nops);
    } else {
      c->fate = FATE_RESET;
      c->reset_at = rng_below(&rng, c->planned);
    }
    ended++;
  }
}

/* ---- receivers (POSIX epoll) --------------------------------------------- */

typedef struct {
  int first, step; /* connections first, first + step, ... */
  int err;
  pthread_t tid;
} receiver_t;

static void *receiver_main(void *arg) {
  receiver_t *r = arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_SYS(ep);
  int open = 0;
  for (int i = r->first; i < NCONN; i += r->step) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, S.c[i].fd, &ev));
    open++;
  }
  uint8_t *buf = malloc(64 * KiB);
  ASSERT(buf != NULL);
  struct epoll_event evs[64];
  while (open > 0) {
    int n = epoll_wait(ep, evs, 64, (int)wait_bound_ms(30000));
    if (n == -1 && errno == EINTR) continue;
    ASSERT_SYS(n);
    if (n == 0) {
      r->err = ETIMEDOUT;
      break;
    }
    for (int k = 0; k < n; k++) {
      conn_t *c = &S.c[evs[k].data.u32];
      int i = (int)evs[k].data.u32;
      for (int reads = 0; reads < 4; reads++) {
        size_t want = 64 * KiB;
        if (c->fate == FATE_RESET && c->reset_at - c->got < want && c->reset_at > c->got)
          want = c->reset_at - c->got;
        ssize_t got = recv(c->fd, buf, want, 0);
        if (got == -1 && errno == EINTR) continue;
        if (got == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        int done = 0;
        if (got == -1) {
          c->err = errno;
          done = 1;
        } else if (got == 0) {
          c->eof = 1;
          done = 1;
        } else {
          if (c->mismatch < 0) {
            long long m = pattern_mismatch(buf, (size_t)got, (uint64_t)i * BASE_STRIDE + c->got);
            if (m >= 0) c->mismatch = (long long)c->got + m;
          }
          c->got += (size_t)got;
          if (c->fate == FATE_RESET && c->got >= c->reset_at) {
            ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL));
            peer_reset(c->fd);
            c->fd = -1;
            c->reset_done = 1;
            open--;
            break;
          }
        }
        if (done) {
          ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL));
          open--;
          break;
        }
      }
    }
  }
  free(buf);
  close(ep);
  return NULL;
}

/* ---- senders --------------------------------------------------------------- */

typedef struct {
  int first, step;
  uint64_t seed;  /* for the gather lists' cut points */
  size_t pending; /* operations that returned SOCK_IO_PENDING */
  pthread_t tid;
} sender_t;

static void issue(int ci, int j, uint64_t *rng) {
  conn_t *c = &S.c[ci];
  op_plan *op = &c->ops[j];
  const uint8_t *data = stream_at(ci, op->off);
  sock_buf segs[MAXSEGS];
  int nsegs = 0;
  if (op->flavour == F_SENDV || op->flavour == F_SENDV_ASYNC) {
    /* op->nsegs pieces at random cut points (empty pieces allowed) */
    size_t done = 0;
    for (int k = 0; k < op->nsegs; k++) {
      size_t piece = k == op->nsegs - 1 ? op->len - done : rng_below(rng, op->len - done + 1);
      segs[nsegs++] = (sock_buf){data + done, piece};
      done += piece;
    }
  }
  size_t n = UNWRITTEN;
  op_t *t = tracker_op(&S.t, (size_t)ci * MAXOPS + (size_t)j, c->h, op->len);
  switch (op->flavour) {
    case F_SEND:
      op->status = sock_send(c->h, data, op->len, SOCK_MSG_NONE, &n);
      break;
    case F_SENDV:
      op->status = sock_sendv(c->h, segs, (size_t)nsegs, SOCK_MSG_NONE, &n);
      break;
    case F_SEND_ASYNC:
      op->status = sock_send_async(c->h, data, op->len, SOCK_MSG_NONE, track_cb, t, &n);
      break;
    case F_SENDV_ASYNC:
      op->status = sock_sendv_async(c->h, segs, (size_t)nsegs, SOCK_MSG_NONE, track_cb, t, &n);
      memset(segs, 0xEE, sizeof segs); /* the array may be reused at once */
      break;
  }
  t->submit_status = op->status;
  ASSERT_MSG(n != UNWRITTEN, "connection %d op %d (%s): count not written (%s)", ci, j,
             flavour_name[op->flavour], status_name(op->status));
  ASSERT_MSG(n <= op->len, "connection %d op %d: count %zu > len %zu", ci, j, n, op->len);
  op->sent = n;
  op->issued = 1;
}

static void *sender_main(void *arg) {
  sender_t *s = arg;
  uint64_t rng = s->seed;
  /* one operation per connection per pass, so that many streams are busy
   * at once */
  for (int j = 0; j < MAXOPS; j++) {
    for (int i = s->first; i < NCONN; i += s->step) {
      conn_t *c = &S.c[i];
      if (j >= c->nops || c->closed) continue;
      issue(i, j, &rng);
      if (c->ops[j].status == SOCK_IO_PENDING) s->pending++;
      if (c->fate == FATE_CLOSE && c->close_after == j) {
        ASSERT_OK(sock_close(c->h));
        c->closed = 1;
      }
    }
  }
  return NULL;
}

/* ---- one round ----------------------------------------------------------------- */

static int status_ok_for(int fate, sock_status s) {
  if (s == SOCK_OK) return 1;
  if (fate == FATE_RESET) return s == SOCK_CONNECTION_RESET || s == SOCK_SHUTDOWN;
  if (fate == FATE_CLOSE) return s == SOCK_OPERATION_ABORTED; /* pending at sock_close */
  return 0;
}

typedef struct {
  size_t bytes, ops, pending, closed, reset;
} round_stats;

static round_stats run_round(uint64_t seed, int warm_up) {
  round_stats st = {0};
  char addr[SOCK_ADDRESS_MAX_LEN];
  int port;
  make_plan(seed, warm_up);
  tracker_init(&S.t, (size_t)NCONN * MAXOPS);

  int lfd = peer_listen(AF_INET, 0, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  for (int i = 0; i < NCONN; i++) {
    conn_t *c = &S.c[i];
    c->h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    /* 64 KiB: the larger sends cannot complete inline and go pending */
    ASSERT_OK(sock_set_option(c->h, SOCK_OPT_SEND_BUFFER_SIZE, 65536));
    /* a quarter report every async send through the callback */
    if (i % 4 == 3) ASSERT_OK(sock_set_option(c->h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
    ASSERT_OK(sock_connect(c->h, addr));
    c->fd = peer_accept(lfd);
    ASSERT_SYS(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK));
  }
  close(lfd);

  receiver_t rcv[RECEIVERS];
  sender_t snd[SENDERS];
  for (int k = 0; k < RECEIVERS; k++) {
    rcv[k] = (receiver_t){.first = k, .step = RECEIVERS};
    ASSERT_EQ(pthread_create(&rcv[k].tid, NULL, receiver_main, &rcv[k]), 0);
  }
  for (int k = 0; k < SENDERS; k++) {
    snd[k] = (sender_t){.first = k, .step = SENDERS, .seed = seed * 31 + (uint64_t)k};
    ASSERT_EQ(pthread_create(&snd[k].tid, NULL, sender_main, &snd[k]), 0);
  }
  for (int k = 0; k < SENDERS; k++) {
    ASSERT_EQ(pthread_join(snd[k].tid, NULL), 0);
    st.pending += snd[k].pending;
  }
  /* every pending operation reports; then the sender closes what is left */
  tracker_wait(&S.t, st.pending, 50000);
  for (int i = 0; i < NCONN; i++)
    if (!S.c[i].closed) ASSERT_OK(sock_close(S.c[i].h));
  for (int k = 0; k < RECEIVERS; k++) {
    ASSERT_EQ(pthread_join(rcv[k].tid, NULL), 0);
    ASSERT_MSG(rcv[k].err == 0, "receiver %d: %s", k, strerror(rcv[k].err));
  }
  /* exactly once, none late */
  tracker_settle(&S.t, st.pending, 20);

  for (int i = 0; i < NCONN; i++) {
    conn_t *c = &S.c[i];
    size_t reported = 0;
    int discarded = 0; /* an accepted send ended with bytes that never went */
    for (int j = 0; j < c->nops; j++) {
      op_plan *op = &c->ops[j];
      if (!op->issued) {
        ASSERT_MSG(c->fate == FATE_CLOSE && j > c->close_after,
                   "connection %d op %d was never issued", i, j);
        continue;
      }
      st.ops++;
      op_t *t = &S.t.ops[(size_t)i * MAXOPS + (size_t)j];
      int async = op->flavour == F_SEND_ASYNC || op->flavour == F_SENDV_ASYNC;
      sock_status final = op->status;
      size_t bytes = op->sent;
      if (async && op->status == SOCK_IO_PENDING) {
        ASSERT_MSG(t->calls == 1, "connection %d op %d: callback ran %d times", i, j, t->calls);
        final = t->status;
        bytes = t->bytes;
        ASSERT_MSG(bytes >= op->sent && bytes <= op->len,
                   "connection %d op %d: callback reports %zu bytes (%zu inline, len %zu)", i, j,
                   bytes, op->sent, op->len);
      } else {
        ASSERT_MSG(t->calls == 0, "connection %d op %d (%s returned %s): callback ran", i, j,
                   flavour_name[op->flavour], status_name(op->status));
        if (op->status == SOCK_OK)
          ASSERT_MSG(bytes == op->len, "connection %d op %d: SOCK_OK with %zu of %zu bytes", i, j,
                     bytes, op->len);
      }
      ASSERT_MSG(status_ok_for(c->fate, final),
                 "connection %d (fate %d) op %d (%s, %zu bytes): %s with %zu bytes", i, c->fate, j,
                 flavour_name[op->flavour], op->len, status_name(final), bytes);
      if (final == SOCK_OK) ASSERT_UEQ(bytes, op->len);
      if (final == SOCK_OPERATION_ABORTED && bytes < op->len) discarded = 1;
      reported += bytes;
    }
    ASSERT_MSG(c->mismatch == -1, "connection %d (fate %d): stream differs at offset %lld of %zu",
               i, c->fate, c->mismatch, c->got);
    switch (c->fate) {
      case FATE_NONE:
        ASSERT_MSG(c->eof && c->err == 0 && c->got == c->planned && reported == c->planned,
                   "connection %d: receiver got %zu (eof %d, err %s), sent %zu, planned %zu", i,
                   c->got, c->eof, strerror(c->err), reported, c->planned);
        break;
      case FATE_CLOSE:
        st.closed++;
        if (discarded)
          /* A send ended with bytes that never reached the kernel: a
           * prefix of what went, then a reset. */
          ASSERT_MSG(c->err == ECONNRESET && c->got <= reported,
                     "connection %d (closed mid-stream, data discarded): receiver got %zu (eof %d, "
                     "err %s), the calls reported %zu sent",
                     i, c->got, c->eof, strerror(c->err), reported);
        else
          ASSERT_MSG(c->eof && c->err == 0 && c->got == reported,
                     "connection %d (closed mid-stream): receiver got %zu (eof %d, err %s), the "
                     "calls reported %zu sent",
                     i, c->got, c->eof, strerror(c->err), reported);
        break;
      case FATE_RESET:
        st.reset++;
        ASSERT_MSG(c->reset_done || c->eof, "connection %d: never reset (got %zu of %zu)", i, c->got,
                   c->planned);
        ASSERT_MSG(c->got <= reported,
                   "connection %d (reset): receiver got %zu bytes, the calls reported only %zu", i,
                   c->got, reported);
        break;
    }
    st.bytes += c->got;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
  }
  ASSERT_UEQ(st.closed + st.reset, NCONN / 10);
  tracker_free(&S.t);
  return st;
}

/* ---- process-wide measurements ---------------------------------------------- */

static size_t rss_bytes(void) {
  malloc_trim(0); /* freed heap memory back to the OS: RSS = what is live */
  FILE *f = fopen("/proc/self/statm", "r");
  ASSERT(f != NULL);
  unsigned long size, resident;
  ASSERT_EQ(fscanf(f, "%lu %lu", &size, &resident), 2);
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* The open descriptors, as "fd -> target" lines into buf (if not NULL);
 * returns how many. */
static int list_fds(char *buf, size_t cap) {
  DIR *d = opendir("/proc/self/fd");
  ASSERT(d != NULL);
  int n = 0, self = dirfd(d);
  struct dirent *e;
  if (buf) buf[0] = '\0';
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
    n++;
    if (buf) {
      char path[300], target[256];
      snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
      ssize_t k = readlink(path, target, sizeof target - 1);
      target[k > 0 ? k : 0] = '\0';
      size_t used = strlen(buf);
      snprintf(buf + used, cap - used, "\n  %s -> %s", e->d_name, target);
    }
  }
  closedir(d);
  return n;
}

TEST_IMPL(stress_1000_connections) {
  long lim = raise_fd_limit();
  if (lim >= 0 && lim < 2 * NCONN + 100) FAIL("RLIMIT_NOFILE hard limit %ld is too low", lim);
  const char *env = getenv("SOCK_STRESS_SEED");
  uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  const char *soak_env = getenv("SOCK_SOAK_SECONDS");
  long soak = soak_env && *soak_env ? strtol(soak_env, NULL, 10) : 0;
  printf("# stress seed: %llu (SOCK_STRESS_SEED=%llu reproduces the plan)\n",
         (unsigned long long)seed, (unsigned long long)seed);
  if (soak > 0) {
    alarm((unsigned)soak + 120); /* the runner's limit is for normal runs */
    printf("# soak: %ld s\n", soak);
  }

  S.pattern_len = (size_t)NCONN * BASE_STRIDE + (size_t)MAXOPS * MAX_OP_LEN;
  S.pattern = pattern_alloc(S.pattern_len);

  /* warm-up: the same connections and fates, one send each; grows the
   * library's tables to their size and starts the default engine (whose
   * descriptors live as long as the process) */
  uint64_t t0 = now_ms();
  run_round(seed ^ 0xA5A5A5A5ULL, 1);
  sock_handle any = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_attach(any, NULL));
  ASSERT_OK(sock_close(any));
  size_t rss0 = rss_bytes();
  static char fds_before[4096], fds_after[4096];
  int fds0 = list_fds(fds_before, sizeof fds_before);
  printf("# warm-up: %llu ms, rss %zu KiB, %d descriptors\n", (unsigned long long)(now_ms() - t0),
         rss0 / 1024, fds0);

  int rounds = 0;
  uint64_t start = now_ms();
  do {
    uint64_t r0 = now_ms();
    round_stats st = run_round(seed + (uint64_t)rounds, 0);
    rounds++;
    size_t rss = rss_bytes();
    printf("# round %d: %zu ops (%zu pending), %zu MiB received, %zu closed, %zu reset, %llu ms, "
           "rss %+lld KiB\n",
           rounds, st.ops, st.pending, st.bytes / MiB, st.closed, st.reset,
           (unsigned long long)(now_ms() - r0), ((long long)rss - (long long)rss0) / 1024);
  } while (soak > 0 ? now_ms() - start < (uint64_t)soak * 1000 : rounds < NORMAL_ROUNDS);

  int fds1 = list_fds(fds_after, sizeof fds_after);
  size_t rss1 = rss_bytes();
  ASSERT_MSG(fds1 == fds0, "%d descriptors open after the warm-up, %d after %d round(s)\nbefore:%s\nafter:%s",
             fds0, fds1, rounds, fds_before, fds_after);
  if (UNDER_ASAN) {
    printf("# rss check skipped under ASan (its quarantine keeps freed memory; LSan checks leaks)\n");
  } else {
    ASSERT_MSG(rss1 <= rss0 + RSS_TOLERANCE,
               "RSS grew from %zu KiB after the warm-up to %zu KiB after %d round(s) (tolerance "
               "%zu KiB)",
               rss0 / 1024, rss1 / 1024, rounds, (size_t)RSS_TOLERANCE / 1024);
  }
  free(S.pattern);
  return 0;
}
