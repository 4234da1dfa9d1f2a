/* Process hygiene: descriptors do not leak into exec'd programs or out of a
 * workload, no send flavour raises SIGPIPE, and a forked child can use
 * sockets (blocking, and async on engines of its own) while the parent's
 * engines stay the parent's. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- descriptors -------------------------------------------------------- */

/* The open descriptors of this process, ascending, into fds (cap entries);
 * returns how many. */
static size_t list_fds(int *fds, size_t cap) {
  DIR *d = opendir("/proc/self/fd");
  ASSERT_MSG(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
  int self = dirfd(d);
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == self) continue;
    ASSERT_ULT(n, cap);
    fds[n++] = fd;
  }
  closedir(d);
  for (size_t i = 1; i < n; i++) /* insertion sort: a few dozen entries */
    for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
      int t = fds[j];
      fds[j] = fds[j - 1];
      fds[j - 1] = t;
    }
  return n;
}

static int contains(const int *fds, size_t n, int fd) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] == fd) return 1;
  return 0;
}

static void describe_fd(int fd, char *buf, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, buf, cap - 1);
  buf[n > 0 ? n : 0] = '\0';
}

/* Starts the default engine (its descriptors live as long as the process). */
static void warm_up_default_engine(void) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_attach(h, NULL));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  tracker t;
  tracker_init(&t, 1);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, "w", 1));
  tracker_wait(&t, 1, 10000);
  peer_expect(pfd, "w", 1, "warm-up");
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
}

/* ---- close-on-exec -------------------------------------------------------- */

/* Every descriptor the library opened (its sockets, an accepted socket, a
 * manual engine's, the engines' internal ones) is closed in a program the
 * process execs. The exec'd /bin/sh lists which of the descriptors it is
 * given are open in it; a descriptor deliberately left inheritable must
 * show up, or the check proves nothing. */
TEST_IMPL(cloexec_across_exec) {
  int before[256], after[256];
  size_t nbefore = list_fds(before, 256);
  char addr[SOCK_ADDRESS_MAX_LEN];
  int pfd, port;

  /* every kind of descriptor the library makes */
  warm_up_default_engine();
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  sock_handle l = new_listener(SOCK_FAMILY_INET6, "[::1]:0", addr);
  int cfd = peer_connect(AF_INET6, addr_port(addr));
  sock_handle acc = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_accept(l, &acc));
  sock_handle u = new_socket(SOCK_FAMILY_UNIX, SOCK_TYPE_DGRAM);
  sock_engine *man = NULL, *thr = NULL;
  ASSERT_OK(sock_engine_new(0, &man));
  ASSERT_OK(sock_engine_new(2, &thr));
  int32_t mfd = -1;
  ASSERT_OK(sock_engine_fd(man, &mfd));
  ASSERT_OK(sock_attach(h, thr));
  int ufd = peer_udp(AF_INET, &port); /* a test descriptor, not asked about */

  /* the control: an inheritable descriptor */
  int ctl = dup(STDERR_FILENO);
  ASSERT_SYS(ctl);
  ASSERT_EQ(fcntl(ctl, F_GETFD) & FD_CLOEXEC, 0);

  /* what to ask about: the library's named descriptors, and every other
   * descriptor that appeared since the test began except the test's own */
  int ask[256];
  size_t nask = 0;
  int named[] = {handle_fd(h), handle_fd(l), handle_fd(acc), handle_fd(u), (int)mfd};
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) ask[nask++] = named[i];
  size_t nafter = list_fds(after, 256);
  int own[] = {pfd, cfd, ufd, ctl};
  for (size_t i = 0; i < nafter; i++) {
    int fd = after[i];
    if (contains(before, nbefore, fd) || contains(ask, nask, fd) ||
        contains(own, sizeof own / sizeof own[0], fd))
      continue;
    ask[nask++] = fd; /* engines' epoll / eventfd / timerfd, ... */
  }
  ASSERT_GE(nask, 8); /* 5 named + the default and threaded engines' own */

  int out[2];
  ASSERT_SYS(pipe2(out, O_CLOEXEC));
  char *argv[300];
  char nums[256][16];
  size_t a = 0;
  argv[a++] = "sh";
  argv[a++] = "-c";
  argv[a++] = "for f; do if [ -e /proc/self/fd/$f ]; then echo $f; fi; done";
  argv[a++] = "sh";
  for (size_t i = 0; i < nask; i++) {
    snprintf(nums[i], sizeof nums[i], "%d", ask[i]);
    argv[a++] = nums[i];
  }
  snprintf(nums[nask], sizeof nums[nask], "%d", ctl);
  argv[a++] = nums[nask];
  argv[a] = NULL;

  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO); /* dup2 clears close-on-exec on fd 1 */
    execv("/bin/sh", argv);
    _exit(127);
  }
  close(out[1]);
  char text[4096];
  size_t got = 0;
  ssize_t r;
  while ((r = read(out[0], text + got, sizeof text - 1 - got)) > 0) got += (size_t)r;
  text[got] = '\0';
  close(out[0]);
  int st;
  ASSERT_SYS(waitpid(pid, &st, 0));
  ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "/bin/sh failed: status 0x%x", st);

  int saw_ctl = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    int fd = atoi(line);
    if (fd == ctl) {
      saw_ctl = 1;
      continue;
    }
    char what[256];
    describe_fd(fd, what, sizeof what);
    FAIL("descriptor %d (%s) is open in the exec'd program: not close-on-exec", fd, what);
  }
  ASSERT_MSG(saw_ctl, "the inheritable control descriptor %d was not seen: the check is broken",
             ctl);
  printf("# %zu library descriptors checked\n", nask);

  close(ctl);
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_close(acc));
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_engine_free(man));
  ASSERT_OK(sock_engine_free(thr));
  close(pfd);
  close(cfd);
  close(ufd);
  return 0;
}

/* ---- SIGPIPE -------------------------------------------------------------- */

/* Wrong statuses are collected and reported at the end, so that every
 * flavour still runs (the point here is that none raises SIGPIPE). */
static char g_wrong[2048];
static const char *g_case = "";

static void expect_send_error(sock_status s, const char *what) {
  if (s == SOCK_CONNECTION_RESET || s == SOCK_SHUTDOWN) return;
  size_t used = strlen(g_wrong);
  snprintf(g_wrong + used, sizeof g_wrong - used,
           "\n  %s: %s to a dead peer: %s, expected SOCK_CONNECTION_RESET or SOCK_SHUTDOWN", g_case,
           what, status_name(s));
}

/* Every send flavour, three times each, into a connection whose peer is
 * gone; with SIGPIPE at its default action a single EPIPE raised as a
 * signal would kill the test. */
static void all_send_flavours(sock_handle h, const char *peer_text, const uint8_t *buf,
                              size_t len) {
  tracker t;
  tracker_init(&t, 6);
  size_t pending = 0;
  for (int round = 0; round < 3; round++) {
    size_t n = UNWRITTEN;
    expect_send_error(sock_send(h, buf, len, 0, &n), "sock_send");
    ASSERT_ULE(n, len);
    sock_buf v[3] = {{buf, len / 2}, {buf, 0}, {buf + len / 2, len - len / 2}};
    n = UNWRITTEN;
    expect_send_error(sock_sendv(h, v, 3, 0, &n), "sock_sendv");
    n = UNWRITTEN;
    expect_send_error(sock_send_to(h, buf, len, 0, peer_text, &n), "sock_send_to");
    if (round < 2) {
      /* async: fails at once, or reports the error through the callback */
      size_t i = (size_t)round * 2;
      sock_status s = track_send(&t, i, h, buf, len);
      if (s == SOCK_IO_PENDING)
        pending++;
      else
        expect_send_error(s, "sock_send_async");
      n = UNWRITTEN;
      op_t *op = tracker_op(&t, i + 1, h, len);
      s = sock_sendv_async(h, v, 3, 0, track_cb, op, &n);
      op->submit_status = s;
      if (s == SOCK_IO_PENDING)
        pending++;
      else
        expect_send_error(s, "sock_sendv_async");
    }
  }
  tracker_wait(&t, pending, 10000);
  tracker_settle(&t, pending, 100);
  for (size_t i = 0; i < 4; i++)
    if (t.ops[i].submit_status == SOCK_IO_PENDING)
      expect_send_error(t.ops[i].status, "async send (callback)");
  tracker_free(&t);
}

TEST_IMPL(no_sigpipe_every_send_flavour) {
  const size_t len = 64 * KiB;
  uint8_t *buf = pattern_alloc(len);
  char peer_text[SOCK_ADDRESS_MAX_LEN];
  int pfd;
  assert_sigpipe_default();

  /* TCP, reset by the peer */
  g_case = "TCP reset by the peer";
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  peer_addr(h, peer_text);
  peer_reset(pfd);
  ASSERT_MSG(peer_readable(handle_fd(h), 5000), "the reset did not arrive");
  all_send_flavours(h, peer_text, buf, len);
  ASSERT_OK(sock_close(h));

  /* TCP, closed by the peer after it read everything, then reset by the
   * kernel on our first write */
  g_case = "TCP closed by the peer";
  h = connect_pair(SOCK_FAMILY_INET6, 0, &pfd);
  peer_addr(h, peer_text);
  close(pfd);
  ASSERT(peer_readable(handle_fd(h), 5000));
  size_t n;
  sock_status s = sock_send(h, buf, 10, 0, &n); /* may still succeed: the kernel has it */
  ASSERT_MSG(s == SOCK_OK || s == SOCK_CONNECTION_RESET || s == SOCK_SHUTDOWN, "first send: %s",
             status_name(s));
  /* the RST answering it: the socket reports an error or a hang-up */
  struct pollfd pe = {handle_fd(h), 0, 0};
  uint64_t t0 = now_ms();
  while (poll(&pe, 1, 100) != 1 || !(pe.revents & (POLLERR | POLLHUP)))
    ASSERT_MSG(now_ms() - t0 < 5000, "no reset within 5 s of writing to a closed peer");
  all_send_flavours(h, peer_text, buf, len);
  ASSERT_OK(sock_close(h));

  /* Unix stream, peer gone: EPIPE. sock_send_to on a connected stream
   * checks the address and ignores it: first while the peer is there */
  g_case = "Unix stream, peer gone";
  const char *any_unix = "unix:/tmp/libsock-test-nonexistent.sock";
  h = connect_pair(SOCK_FAMILY_UNIX, 0, &pfd);
  s = sock_send_to(h, "u", 1, 0, any_unix, &n);
  if (s != SOCK_OK) {
    size_t used = strlen(g_wrong);
    snprintf(g_wrong + used, sizeof g_wrong - used,
             "\n  sock_send_to on a connected Unix stream (peer alive): %s, expected SOCK_OK "
             "(the address is checked, then ignored)", status_name(s));
  } else {
    peer_expect(pfd, "u", 1, "send_to on a connected Unix stream");
  }
  close(pfd);
  all_send_flavours(h, any_unix, buf, len);
  ASSERT_OK(sock_close(h));
  free(buf);
  /* no SIGPIPE killed us; now the statuses */
  ASSERT_MSG(g_wrong[0] == '\0', "wrong statuses:%s", g_wrong);
  return 0;
}

/* ---- fork ----------------------------------------------------------------- */

/* Runs `fn` in a forked child; fails the test unless it exits 0 within
 * timeout_ms (a hung child is killed). */
static void run_in_child(void (*fn)(void *), void *arg, unsigned timeout_ms) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    alarm(timeout_ms / 1000 + 5);
    fn(arg);
    fflush(stdout);
    _exit(0);
  }
  uint64_t t0 = now_ms();
  int st;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    ASSERT_SYS(w);
    if (w == pid) break;
    if (now_ms() - t0 > timeout_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      FAIL("the forked child hung for %u ms (a lock held across fork?)", timeout_ms);
    }
    sleep_ms(5);
  }
  if (WIFSIGNALED(st)) FAIL("the forked child died of signal %d", WTERMSIG(st));
  ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child failed (exit %d)",
             WEXITSTATUS(st));
}

static struct {
  sock_handle h;     /* blocking use in both */
  int pfd;
  sock_handle d;     /* bound to the default engine in the parent */
  int dpfd;
  sock_handle m;     /* bound to a manual engine of the parent */
  int mpfd;
  sock_handle p;     /* a receive pending in the parent at fork time */
  int ppfd;
} F;

static void child_async_refused(sock_handle h, const char *what) {
  tracker t;
  char rb[8];
  tracker_init(&t, 1);
  tracker_op(&t, 0, h, 1);
  size_t n = UNWRITTEN;
  sock_status s = sock_send_async(h, "x", 1, 0, track_cb, &t.ops[0], &n);
  ASSERT_MSG(s == SOCK_OPERATION_NOT_SUPPORTED,
             "child: sock_send_async on %s: %s, expected SOCK_OPERATION_NOT_SUPPORTED", what,
             status_name(s));
  ASSERT_UEQ(n, 0);
  sock_buf b = {"x", 1};
  n = UNWRITTEN;
  s = sock_sendv_async(h, &b, 1, 0, track_cb, &t.ops[0], &n);
  ASSERT_MSG(s == SOCK_OPERATION_NOT_SUPPORTED,
             "child: sock_sendv_async on %s: %s, expected SOCK_OPERATION_NOT_SUPPORTED", what,
             status_name(s));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  s = sock_recv_async(h, rb, sizeof rb, 0, track_cb, &t.ops[0], &n);
  ASSERT_MSG(s == SOCK_OPERATION_NOT_SUPPORTED,
             "child: sock_recv_async on %s: %s, expected SOCK_OPERATION_NOT_SUPPORTED", what,
             status_name(s));
  ASSERT_UEQ(n, 0);
  tracker_settle(&t, 0, 50);
  tracker_free(&t);
}

/* Big async send on h, pending, through to its callback; the peer checks. */
static void child_async_send(sock_handle h, int peer, sock_engine *manual, const char *what) {
  const size_t len = 2 * MiB;
  uint8_t *buf = pattern_alloc(len);
  tracker t;
  tracker_init(&t, 1);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 65536));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len));
  reader_t r = {.fd = peer, .expect = len, .check_pattern = 1};
  reader_start(&r);
  uint64_t t0 = now_ms();
  while (tracker_calls(&t) < 1) {
    if (now_ms() - t0 > 10000) {
      int64_t pend = -1;
      sock_get_option(h, SOCK_OPT_PENDING_SEND_BYTES, &pend);
      FAIL("child: %s: the async send of %zu bytes never completed (%zu went inline, the peer "
           "has %zu, %lld still pending in the library)",
           what, len, t.ops[0].sent_now, r.got, (long long)pend);
    }
    if (manual)
      ASSERT_OK(sock_engine_poll(manual, 100, NULL));
    else
      sleep_ms(1);
  }
  reader_join(&r);
  tracker_settle(&t, 1, 0);
  ASSERT_MSG(t.ops[0].status == SOCK_OK && t.ops[0].bytes == len, "child: %s: %s with %zu bytes",
             what, status_name(t.ops[0].status), t.ops[0].bytes);
  ASSERT_UEQ(r.got, len);
  ASSERT_EQ(r.mismatch, -1);
  tracker_free(&t);
  free(buf);
}

static void child_main(void *arg) {
  char b[16];
  int pfd;
  (void)arg;
  /* blocking calls on an inherited connected socket */
  ASSERT_OK(sock_set_option(F.h, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  ASSERT_OK(sock_send(F.h, "ping", 4, 0, NULL));
  peer_expect(F.pfd, "ping", 4, "child: send on an inherited socket");
  ASSERT_SYS(send(F.pfd, "pong", 4, 0));
  recv_exact(F.h, b, 4);
  ASSERT(memcmp(b, "pong", 4) == 0);

  /* a new socket, blocking */
  sock_handle n = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_send(n, "new", 3, 0, NULL));
  peer_expect(pfd, "new", 3, "child: send on a new socket");

  /* async on sockets bound to the parent's engines: refused */
  child_async_refused(F.d, "a socket bound to the parent's default engine");
  child_async_refused(F.m, "a socket bound to the parent's manual engine");
  child_async_refused(F.p, "a socket with a receive pending in the parent");

  /* an engine of the child's own, with a new socket */
  sock_engine *e = NULL;
  ASSERT_OK(sock_engine_new(0, &e));
  ASSERT_OK(sock_attach(n, e));
  child_async_send(n, pfd, e, "new socket on the child's manual engine");
  ASSERT_OK(sock_close(n));
  close(pfd);
  ASSERT_OK(sock_engine_free(e));

  /* the default engine, started anew in the child */
  n = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_attach(n, NULL));
  child_async_send(n, pfd, NULL, "new socket on the child's default engine");
  ASSERT_OK(sock_close(n));
  close(pfd);

  /* an inherited socket re-attached in the child works again */
  ASSERT_OK(sock_attach(F.d, NULL));
  child_async_send(F.d, F.dpfd, NULL, "inherited socket re-attached in the child");
}

TEST_IMPL(fork_child_sockets_and_engines) {
  char rb[16];
  tracker t;
  tracker_init(&t, 3);
  memset(&F, 0, sizeof F);
  F.h = connect_pair(SOCK_FAMILY_INET, 0, &F.pfd);
  F.d = connect_pair(SOCK_FAMILY_INET, 0, &F.dpfd);
  F.m = connect_pair(SOCK_FAMILY_INET, 0, &F.mpfd);
  F.p = connect_pair(SOCK_FAMILY_INET, 0, &F.ppfd);
  sock_engine *pm = NULL;
  ASSERT_OK(sock_engine_new(0, &pm));

  /* the parent uses the default engine and its manual engine first */
  ASSERT_OK(sock_attach(F.d, NULL));
  ASSERT_OK(track_send(&t, 0, F.d, "d0", 2)); /* inline */
  peer_expect(F.dpfd, "d0", 2, "parent before fork");
  ASSERT_OK(sock_attach(F.m, pm));
  ASSERT_OK(sock_send_async(F.m, "m0", 2, 0, track_cb, tracker_op(&t, 0, F.m, 2), NULL));
  peer_expect(F.mpfd, "m0", 2, "parent before fork (manual engine)");
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, F.p, rb, sizeof rb));

  /* Plain build: fork at once, while the engine threads may still be busy
   * with the calls above (the library must cope). Under ASan, first let
   * them go idle: GCC's ASan allocator does not take its locks around
   * fork, so a child forked while another thread is inside malloc/free
   * deadlocks in its first allocation, whatever the library does. */
  if (UNDER_ASAN) sleep_ms(200);
  run_in_child(child_main, NULL, 30000);

  /* the parent is unaffected: its pending receive completes normally */
  ASSERT_UEQ(tracker_calls(&t), 0);
  ASSERT_SYS(send(F.ppfd, "after", 5, 0));
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 5);
  ASSERT(memcmp(rb, "after", 5) == 0);
  /* its default engine still works: a pending send to its callback */
  ASSERT_OK(sock_set_option(F.d, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 2, F.d, "d1", 2));
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[2].status);
  peer_expect(F.dpfd, "d1", 2, "parent's default engine after the fork");
  /* and its manual engine */
  tracker t2;
  tracker_init(&t2, 1);
  ASSERT_OK(sock_set_option(F.m, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t2, 0, F.m, "m1", 2));
  uint64_t t0 = now_ms();
  while (tracker_calls(&t2) < 1) {
    ASSERT_MSG(now_ms() - t0 < 10000, "parent's manual engine stopped working after the fork");
    ASSERT_OK(sock_engine_poll(pm, 100, NULL));
  }
  ASSERT_STATUS(SOCK_OK, t2.ops[0].status);
  peer_expect(F.mpfd, "m1", 2, "parent's manual engine after the fork");
  /* and blocking calls on the socket the child used too */
  ASSERT_OK(sock_send(F.h, "parent", 6, 0, NULL));
  peer_expect(F.pfd, "parent", 6, "parent after the fork");
  tracker_settle(&t, 2, 50);
  tracker_settle(&t2, 1, 0);

  ASSERT_OK(sock_close(F.h));
  ASSERT_OK(sock_close(F.d));
  ASSERT_OK(sock_close(F.m));
  ASSERT_OK(sock_close(F.p));
  ASSERT_OK(sock_engine_free(pm));
  close(F.pfd);
  close(F.dpfd);
  close(F.mpfd);
  close(F.ppfd);
  tracker_free(&t);
  tracker_free(&t2);
  return 0;
}

/* ---- descriptor leaks ------------------------------------------------------ */

static void workload(void) {
  enum { NC = 16 };
  char addr[SOCK_ADDRESS_MAX_LEN], uaddr[SOCK_ADDRESS_MAX_LEN], path[108], rb[64];
  const size_t big = 1 * MiB;
  uint8_t *buf = pattern_alloc(big);
  sock_handle c[NC], a[NC];
  tracker t;
  tracker_init(&t, 3 * NC + 8);
  size_t nt = 0, pending = 0;

  /* TCP: a listener, clients, accepted sockets, blocking and async I/O */
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  for (int i = 0; i < NC; i++) {
    c[i] = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
    ASSERT_OK(sock_connect(c[i], addr));
    ASSERT_OK(sock_accept(l, &a[i]));
    ASSERT_OK(sock_send(c[i], "hi", 2, 0, NULL));
    recv_exact(a[i], rb, 2);
  }
  sock_engine *man = NULL, *thr = NULL;
  ASSERT_OK(sock_engine_new(0, &man));
  ASSERT_OK(sock_engine_new(2, &thr));
  for (int i = 0; i < NC; i++) {
    ASSERT_OK(sock_set_option(c[i], SOCK_OPT_SEND_BUFFER_SIZE, 65536));
    if (i % 4 == 1) ASSERT_OK(sock_attach(c[i], man));
    if (i % 4 == 2) ASSERT_OK(sock_attach(c[i], thr));
    /* nobody reads: these stay pending, then end by close / cancel /
     * engine free */
    sock_status s = track_send(&t, nt++, c[i], buf, big);
    ASSERT_STATUS(SOCK_IO_PENDING, s);
    pending++;
    if (i % 2 == 0) { /* a receive nobody answers */
      ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, nt++, c[i], rb, sizeof rb));
      pending++;
    }
  }
  for (int i = 0; i < NC; i += 3) ASSERT_OK(sock_cancel_sends(c[i]));
  ASSERT_OK(sock_engine_free(man)); /* aborts the manual engine's operations here */
  for (int i = 0; i < NC; i++) {
    ASSERT_OK(sock_close(c[i]));
    ASSERT_OK(sock_close(a[i]));
  }
  ASSERT_OK(sock_engine_free(thr));
  ASSERT_OK(sock_close(l));
  tracker_wait(&t, pending, 20000);

  /* accept timeout, refused connect, bad calls */
  l = new_listener(SOCK_FAMILY_INET6, "[::1]:0", NULL);
  ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, 20));
  sock_handle x = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_accept(l, &x));
  ASSERT_OK(sock_close(l));
  int bfd = peer_bound_not_listening(addr, sizeof addr);
  x = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_CONNECTION_REFUSED, sock_connect(x, addr));
  ASSERT_OK(sock_close(x));
  close(bfd);
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_socket(99, SOCK_TYPE_STREAM, &x));
  l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  x = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_ALREADY_IN_USE, sock_bind(x, addr));
  ASSERT_OK(sock_close(x));
  ASSERT_OK(sock_close(l));

  /* UDP and Unix sockets */
  sock_handle u1 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  sock_handle u2 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u1, "127.0.0.1:0"));
  local_addr(u1, uaddr);
  ASSERT_OK(sock_send_to(u2, "dg", 2, 0, uaddr, NULL));
  size_t n;
  ASSERT_OK(sock_recv(u1, rb, sizeof rb, 0, &n));
  ASSERT_OK(sock_close(u1));
  ASSERT_OK(sock_close(u2));
  unix_path(path, sizeof path, "leak");
  snprintf(addr, sizeof addr, "unix:%s", path);
  unlink(path);
  sock_handle ul = new_listener(SOCK_FAMILY_UNIX, addr, NULL);
  sock_handle uc = new_socket(SOCK_FAMILY_UNIX, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_connect(uc, addr));
  sock_handle ua;
  ASSERT_OK(sock_accept(ul, &ua));
  ASSERT_OK(sock_close(uc));
  ASSERT_OK(sock_close(ua));
  ASSERT_OK(sock_close(ul));
  unlink(path);

  tracker_settle(&t, pending, 50);
  tracker_free(&t);
  free(buf);
}

TEST_IMPL(no_fd_leak_workload) {
  int before[256], after[256];
  warm_up_default_engine();
  size_t nbefore = list_fds(before, 256);
  /* the counter sees a new descriptor (or the check proves nothing) */
  int p[2];
  ASSERT_SYS(pipe(p));
  ASSERT_UEQ(list_fds(after, 256), nbefore + 2);
  close(p[0]);
  close(p[1]);

  for (int round = 0; round < 2; round++) workload();

  size_t nafter = list_fds(after, 256);
  for (size_t i = 0; i < nafter; i++) {
    if (contains(before, nbefore, after[i])) continue;
    char what[256];
    describe_fd(after[i], what, sizeof what);
    fprintf(stderr, "leaked descriptor %d: %s\n", after[i], what);
  }
  ASSERT_MSG(nafter == nbefore, "%zu descriptors open before the workload, %zu after", nbefore,
             nafter);
  return 0;
}
