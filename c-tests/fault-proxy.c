/* The fault-injecting loopback proxy of fault-proxy.h: one thread, poll(),
 * non-blocking sockets; control calls set flags under the lock and wake
 * the thread through a pipe. */
#define _GNU_SOURCE
#include "fault-proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test-helpers.h"

#define FP_MAX_CONNS 64
#define FP_BUF (64 * 1024)
#define FP_CLIENT_RCVBUF (64 * 1024)

typedef struct {
  int used;
  int fd[2];           /* FP_CLIENT, FP_SERVER; -1 once closed */
  /* buf[d]: bytes read from side !d, waiting to be written toward side d */
  uint8_t buf[2][FP_BUF];
  size_t len[2], off[2];
  int eof_from[2];     /* side s sent end of stream */
  int shut_toward[2];  /* shutdown(SHUT_WR) done toward side d */
  int half_req[2];     /* fp_half_close asked for it */
  int stall;
  size_t rate;         /* bytes/s per direction, 0 = unlimited */
  double tokens[2];
  uint64_t refill_ms;
  int reset_req, dead;
  size_t forwarded[2];
} fp_conn;

struct fault_proxy {
  pthread_t tid;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int lfd, wake[2];
  int port, target_port;
  int stop;
  int nconns;
  fp_conn conns[FP_MAX_CONNS];
};

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  ASSERT_SYS(fl);
  ASSERT_SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
}

static void wake(fault_proxy *p) {
  char c = 1;
  while (write(p->wake[1], &c, 1) == -1 && errno == EINTR) {
  }
}

static void abort_fd(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

static void conn_close(fp_conn *c, int abortive) {
  for (int s = 0; s < 2; s++) {
    if (c->fd[s] < 0) continue;
    if (abortive)
      abort_fd(c->fd[s]);
    else
      close(c->fd[s]);
    c->fd[s] = -1;
  }
  c->dead = 1;
}

static void do_accept(fault_proxy *p) {
  int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (cfd == -1) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
    FAIL("fault proxy: accept: %s", strerror(errno));
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)p->target_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(sfd);
  if (connect(sfd, (struct sockaddr *)&a, sizeof a) == -1)
    FAIL("fault proxy: connect to port %d: %s", p->target_port, strerror(errno));
  set_nonblock(cfd);
  set_nonblock(sfd);
  ASSERT_MSG(p->nconns < FP_MAX_CONNS, "fault proxy: more than %d connections", FP_MAX_CONNS);
  fp_conn *c = &p->conns[p->nconns];
  memset(c, 0, sizeof *c);
  c->used = 1;
  c->fd[FP_CLIENT] = cfd;
  c->fd[FP_SERVER] = sfd;
  c->refill_ms = now_ms();
  p->nconns++;
  pthread_cond_broadcast(&p->cv);
}

static void refill(fp_conn *c, uint64_t now) {
  if (!c->rate) return;
  double cap = (double)c->rate / 20.0; /* at most 50 ms worth at once */
  if (cap < 1) cap = 1;
  double add = (double)c->rate * (double)(now - c->refill_ms) / 1000.0;
  c->refill_ms = now;
  for (int d = 0; d < 2; d++) {
    c->tokens[d] += add;
    if (c->tokens[d] > cap) c->tokens[d] = cap;
  }
}

/* May the proxy read from side s now (toward side !s)? */
static int want_read(const fp_conn *c, int s) {
  int d = !s;
  if (c->fd[s] < 0 || c->eof_from[s] || c->shut_toward[d] || c->half_req[d]) return 0;
  if (s == FP_CLIENT && c->stall) return 0;
  if (c->len[d] == FP_BUF) return 0;
  if (c->rate && c->tokens[d] < 1) return 0;
  return 1;
}

/* Moves what it can on one connection. */
static void pump(fp_conn *c, const short *revents) {
  for (int s = 0; s < 2 && !c->dead; s++) {
    int d = !s;
    /* read from s */
    if (want_read(c, s) && (revents[s] & (POLLIN | POLLHUP | POLLERR))) {
      /* compact, then read into the free tail */
      if (c->off[d] > 0) {
        memmove(c->buf[d], c->buf[d] + c->off[d], c->len[d] - c->off[d]);
        c->len[d] -= c->off[d];
        c->off[d] = 0;
      }
      size_t room = FP_BUF - c->len[d];
      if (c->rate && room > (size_t)c->tokens[d]) room = (size_t)c->tokens[d];
      ssize_t n = recv(c->fd[s], c->buf[d] + c->len[d], room, 0);
      if (n > 0) {
        c->len[d] += (size_t)n;
        if (c->rate) c->tokens[d] -= (double)n;
      } else if (n == 0) {
        c->eof_from[s] = 1;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_close(c, 1); /* the peer reset: pass it on */
        return;
      }
    }
  }
  for (int d = 0; d < 2 && !c->dead; d++) {
    /* write toward d */
    while (c->fd[d] >= 0 && c->off[d] < c->len[d] && !c->shut_toward[d]) {
      ssize_t n = send(c->fd[d], c->buf[d] + c->off[d], c->len[d] - c->off[d], MSG_NOSIGNAL);
      if (n > 0) {
        c->off[d] += (size_t)n;
        c->forwarded[d] += (size_t)n;
        continue;
      }
      if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      conn_close(c, 1);
      return;
    }
    if (c->off[d] == c->len[d]) c->off[d] = c->len[d] = 0;
    /* end of stream from the other side, or a half-close asked for, and
     * everything for d written: shut down writing toward d */
    if (!c->shut_toward[d] && c->len[d] == 0 && (c->eof_from[!d] || c->half_req[d])) {
      shutdown(c->fd[d], SHUT_WR);
      c->shut_toward[d] = 1;
    }
  }
  if (!c->dead && c->shut_toward[0] && c->shut_toward[1] && c->eof_from[0] && c->eof_from[1])
    conn_close(c, 0);
}

static void *fp_main(void *arg) {
  fault_proxy *p = arg;
  struct pollfd pfds[2 + 2 * FP_MAX_CONNS];
  int map[2 + 2 * FP_MAX_CONNS];
  pthread_mutex_lock(&p->mu);
  while (!p->stop) {
    uint64_t now = now_ms();
    int n = 0, timeout = 1000;
    pfds[n++] = (struct pollfd){p->lfd, POLLIN, 0};
    pfds[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
    for (int i = 0; i < p->nconns; i++) {
      fp_conn *c = &p->conns[i];
      if (c->dead) continue;
      if (c->reset_req) {
        conn_close(c, 1);
        pthread_cond_broadcast(&p->cv);
        continue;
      }
      refill(c, now);
      for (int s = 0; s < 2; s++) {
        short ev = 0;
        if (want_read(c, s)) ev |= POLLIN;
        if (c->len[s] > c->off[s] && !c->shut_toward[s]) ev |= POLLOUT;
        if (c->rate && c->tokens[!s] < 1 && !c->eof_from[s]) timeout = 10;
        map[n] = i * 2 + s;
        /* nothing wanted: not polled at all (a socket shut down both ways
         * reports POLLHUP forever) */
        pfds[n++] = (struct pollfd){ev ? c->fd[s] : -1, ev, 0};
      }
    }
    pthread_mutex_unlock(&p->mu);
    int r = poll(pfds, (nfds_t)n, timeout);
    pthread_mutex_lock(&p->mu);
    if (r == -1 && errno == EINTR) continue;
    ASSERT_SYS(r);
    if (pfds[1].revents & POLLIN) {
      char drain[64];
      while (read(p->wake[0], drain, sizeof drain) > 0) {
      }
    }
    if (pfds[0].revents & POLLIN) do_accept(p);
    /* every connection, also without events: flags may have changed */
    for (int k = 2; k < n; k += 2) {
      fp_conn *c = &p->conns[map[k] / 2];
      if (c->dead) continue;
      if (c->reset_req) {
        conn_close(c, 1);
        continue;
      }
      refill(c, now_ms());
      short rev[2] = {pfds[k].revents, pfds[k + 1].revents};
      pump(c, rev);
    }
    pthread_cond_broadcast(&p->cv);
  }
  for (int i = 0; i < p->nconns; i++)
    if (!p->conns[i].dead) conn_close(&p->conns[i], 0);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

fault_proxy *fp_start(int target_port) {
  fault_proxy *p = calloc(1, sizeof *p);
  ASSERT(p != NULL);
  ASSERT_EQ(pthread_mutex_init(&p->mu, NULL), 0);
  ASSERT_EQ(pthread_cond_init(&p->cv, NULL), 0);
  p->target_port = target_port;
  ASSERT_SYS(pipe2(p->wake, O_CLOEXEC | O_NONBLOCK));
  p->lfd = peer_listen(AF_INET, FP_CLIENT_RCVBUF, &p->port);
  set_nonblock(p->lfd);
  ASSERT_EQ(pthread_create(&p->tid, NULL, fp_main, p), 0);
  return p;
}

void fp_addr(const fault_proxy *p, char *buf, size_t cap) {
  addr_text(buf, cap, AF_INET, p->port);
}

static void wait_until(fault_proxy *p, uint64_t deadline, const char *what) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 10 * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
  if (now_ms() > deadline) {
    pthread_mutex_unlock(&p->mu);
    FAIL("fault proxy: %s did not happen in time", what);
  }
}

void fp_wait_conns(fault_proxy *p, int n, unsigned timeout_ms) {
  uint64_t dl = now_ms() + wait_bound_ms(timeout_ms);
  pthread_mutex_lock(&p->mu);
  while (p->nconns < n) wait_until(p, dl, "accepting the connections");
  pthread_mutex_unlock(&p->mu);
}

static fp_conn *conn_locked(fault_proxy *p, int conn) {
  if (conn < 0 || conn >= p->nconns) {
    pthread_mutex_unlock(&p->mu);
    FAIL("fault proxy: no connection %d (%d accepted)", conn, p->nconns);
  }
  return &p->conns[conn];
}

void fp_stall(fault_proxy *p, int conn, int on) {
  pthread_mutex_lock(&p->mu);
  conn_locked(p, conn)->stall = on;
  wake(p);
  pthread_mutex_unlock(&p->mu);
}

void fp_throttle(fault_proxy *p, int conn, size_t bytes_per_s) {
  pthread_mutex_lock(&p->mu);
  fp_conn *c = conn_locked(p, conn);
  c->rate = bytes_per_s;
  c->tokens[0] = c->tokens[1] = 0;
  c->refill_ms = now_ms();
  wake(p);
  pthread_mutex_unlock(&p->mu);
}

void fp_reset(fault_proxy *p, int conn) {
  uint64_t dl = now_ms() + wait_bound_ms(5000);
  pthread_mutex_lock(&p->mu);
  fp_conn *c = conn_locked(p, conn);
  c->reset_req = 1;
  wake(p);
  while (!c->dead) wait_until(p, dl, "the reset");
  pthread_mutex_unlock(&p->mu);
}

void fp_half_close(fault_proxy *p, int conn, int side) {
  uint64_t dl = now_ms() + wait_bound_ms(10000);
  pthread_mutex_lock(&p->mu);
  fp_conn *c = conn_locked(p, conn);
  c->half_req[side] = 1;
  wake(p);
  while (!c->shut_toward[side] && !c->dead) wait_until(p, dl, "the half-close");
  ASSERT_MSG(c->shut_toward[side], "fault proxy: connection %d died before its half-close", conn);
  pthread_mutex_unlock(&p->mu);
}

size_t fp_forwarded(fault_proxy *p, int conn, int side) {
  pthread_mutex_lock(&p->mu);
  size_t n = conn_locked(p, conn)->forwarded[side];
  pthread_mutex_unlock(&p->mu);
  return n;
}

void fp_stop(fault_proxy *p) {
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  wake(p);
  pthread_mutex_unlock(&p->mu);
  ASSERT_EQ(pthread_join(p->tid, NULL), 0);
  close(p->lfd);
  close(p->wake[0]);
  close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
}
