#define _GNU_SOURCE
#include "test-helpers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- assertions ------------------------------------------------------- */

void test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(1); /* also from helper threads: no atexit handlers, no races */
}

const char *status_name(sock_status s) {
  switch (s) {
#define N(x) case x: return #x;
    N(SOCK_OK) N(SOCK_SOCKET_ERROR) N(SOCK_OPERATION_ABORTED) N(SOCK_IO_PENDING)
    N(SOCK_INTERRUPTED) N(SOCK_ACCESS_DENIED) N(SOCK_FAULT)
    N(SOCK_INVALID_ARGUMENT) N(SOCK_TOO_MANY_OPEN_SOCKETS) N(SOCK_WOULD_BLOCK)
    N(SOCK_IN_PROGRESS) N(SOCK_ALREADY_IN_PROGRESS) N(SOCK_NOT_SOCKET)
    N(SOCK_DESTINATION_ADDRESS_REQUIRED) N(SOCK_MESSAGE_SIZE)
    N(SOCK_PROTOCOL_TYPE) N(SOCK_PROTOCOL_OPTION) N(SOCK_PROTOCOL_NOT_SUPPORTED)
    N(SOCK_SOCKET_NOT_SUPPORTED) N(SOCK_OPERATION_NOT_SUPPORTED)
    N(SOCK_PROTOCOL_FAMILY_NOT_SUPPORTED) N(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED)
    N(SOCK_ADDRESS_ALREADY_IN_USE) N(SOCK_ADDRESS_NOT_AVAILABLE)
    N(SOCK_NETWORK_DOWN) N(SOCK_NETWORK_UNREACHABLE) N(SOCK_NETWORK_RESET)
    N(SOCK_CONNECTION_ABORTED) N(SOCK_CONNECTION_RESET) N(SOCK_NO_BUFFER_SPACE)
    N(SOCK_IS_CONNECTED) N(SOCK_NOT_CONNECTED) N(SOCK_SHUTDOWN)
    N(SOCK_TIMED_OUT) N(SOCK_CONNECTION_REFUSED) N(SOCK_HOST_DOWN)
    N(SOCK_HOST_UNREACHABLE) N(SOCK_DISCONNECTING) N(SOCK_HOST_NOT_FOUND)
    N(SOCK_TRY_AGAIN) N(SOCK_NO_DATA)
#undef N
    default: return "?";
  }
}

/* ---- patterns --------------------------------------------------------- */

uint8_t pattern_byte(uint64_t off) {
  uint32_t x = (uint32_t)off * 2654435761u;
  x ^= x >> 15;
  x *= 2246822519u;
  x ^= x >> 13;
  return (uint8_t)(x >> 7);
}

void pattern_fill(void *buf, size_t len, uint64_t start_off) {
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++) p[i] = pattern_byte(start_off + i);
}

long long pattern_mismatch(const void *buf, size_t len, uint64_t start_off) {
  const uint8_t *p = buf;
  for (size_t i = 0; i < len; i++)
    if (p[i] != pattern_byte(start_off + i)) return (long long)i;
  return -1;
}

uint8_t *pattern_alloc(size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  ASSERT(p != NULL);
  pattern_fill(p, len, 0);
  return p;
}

uint64_t fnv1a(uint64_t h, const void *buf, size_t len) {
  const uint8_t *p = buf;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* ---- time ------------------------------------------------------------- */

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned wait_scale = 1;
static pthread_once_t wait_scale_once = PTHREAD_ONCE_INIT;

static void read_wait_scale(void) {
  const char *env = getenv("SOCK_TEST_WAIT_SCALE");
  long scale = env && *env ? strtol(env, NULL, 10) : 1;
  wait_scale = scale < 1 ? 1 : scale > 100 ? 100 : (unsigned)scale;
}

unsigned wait_bound_ms(unsigned ms) {
  pthread_once(&wait_scale_once, read_wait_scale);
  return ms * wait_scale;
}

void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* ---- peers ------------------------------------------------------------ */

static socklen_t loopback(int af, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    ASSERT(af == AF_INET6);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_addr = in6addr_loopback;
    return sizeof *a;
  }
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  ASSERT_SYS(getsockname(fd, (struct sockaddr *)&ss, &sl));
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int peer_listen(int af, int rcvbuf, int *port) {
  struct sockaddr_storage ss;
  socklen_t sl = loopback(af, 0, &ss);
  int fd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(fd);
  if (rcvbuf > 0) ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
  ASSERT_SYS(bind(fd, (struct sockaddr *)&ss, sl));
  ASSERT_SYS(listen(fd, 16));
  *port = bound_port(fd);
  ASSERT(*port > 0);
  return fd;
}

int peer_listen_unix(const char *path, int rcvbuf) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  ASSERT(strlen(path) < sizeof a.sun_path);
  strcpy(a.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(fd);
  if (rcvbuf > 0) ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
  ASSERT_SYS(bind(fd, (struct sockaddr *)&a, sizeof a));
  ASSERT_SYS(listen(fd, 16));
  return fd;
}

int peer_accept(int lfd) {
  struct pollfd p = {lfd, POLLIN, 0};
  int n;
  int ms = (int)wait_bound_ms(10000);
  do n = poll(&p, 1, ms); while (n == -1 && errno == EINTR);
  ASSERT_MSG(n == 1, "peer_accept: nothing to accept within %d ms", ms);
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  ASSERT_SYS(fd);
  return fd;
}

int peer_connect(int af, int port) {
  struct sockaddr_storage ss;
  socklen_t sl = loopback(af, port, &ss);
  int fd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(fd);
  ASSERT_SYS(connect(fd, (struct sockaddr *)&ss, sl));
  return fd;
}

int peer_bound_not_listening(char *addr, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t sl = loopback(AF_INET, 0, &ss);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(fd);
  ASSERT_SYS(bind(fd, (struct sockaddr *)&ss, sl));
  addr_text(addr, cap, AF_INET, bound_port(fd));
  return fd;
}

int peer_udp(int af, int *port) {
  struct sockaddr_storage ss;
  socklen_t sl = loopback(af, 0, &ss);
  int fd = socket(af, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_SYS(fd);
  ASSERT_SYS(bind(fd, (struct sockaddr *)&ss, sl));
  *port = bound_port(fd);
  return fd;
}

void addr_text(char *buf, size_t cap, int af, int port) {
  if (af == AF_INET)
    snprintf(buf, cap, "127.0.0.1:%d", port);
  else
    snprintf(buf, cap, "[::1]:%d", port);
}

void unix_path(char *buf, size_t cap, const char *tag) {
  snprintf(buf, cap, "/tmp/libsock-test-%ld-%s.sock", (long)getpid(), tag);
}

void peer_reset(int fd) {
  struct linger l = {1, 0};
  ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l));
  ASSERT_SYS(close(fd));
}

int peer_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  do n = poll(&p, 1, ms); while (n == -1 && errno == EINTR);
  return n == 1;
}

size_t peer_drain(int fd, size_t max, uint64_t start_off, long long *mismatch) {
  static _Thread_local uint8_t buf[65536];
  size_t total = 0;
  int ms = (int)wait_bound_ms(10000);
  *mismatch = -1;
  while (total < max) {
    size_t want = max - total < sizeof buf ? max - total : sizeof buf;
    if (!peer_readable(fd, ms)) FAIL("peer_drain: no data and no EOF within %d ms (got %zu)", ms, total);
    ssize_t n = recv(fd, buf, want, 0);
    if (n == -1 && errno == EINTR) continue;
    if (n <= 0) break;
    long long m = pattern_mismatch(buf, (size_t)n, start_off + total);
    if (m >= 0 && *mismatch < 0) *mismatch = (long long)total + m;
    total += (size_t)n;
  }
  return total;
}

size_t peer_drain_until_end(int fd, uint64_t start_off, long long *mismatch, int *reset) {
  static _Thread_local uint8_t buf[65536];
  size_t total = 0;
  int ms = (int)wait_bound_ms(10000);
  *mismatch = -1;
  *reset = 0;
  for (;;) {
    if (!peer_readable(fd, ms)) FAIL("peer: no data and no end within %d ms (got %zu)", ms, total);
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1 && errno == ECONNRESET) {
      *reset = 1;
      break;
    }
    if (n == -1) FAIL("peer: recv: %s after %zu bytes", strerror(errno), total);
    if (n == 0) break;
    long long m = pattern_mismatch(buf, (size_t)n, start_off + total);
    if (m >= 0 && *mismatch < 0) *mismatch = (long long)total + m;
    total += (size_t)n;
  }
  return total;
}

void peer_read_exact(int fd, void *buf, size_t len) {
  size_t got = 0;
  int ms = (int)wait_bound_ms(10000);
  while (got < len) {
    if (!peer_readable(fd, ms)) FAIL("peer_read_exact: only %zu of %zu bytes within %d ms", got, len, ms);
    ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1) FAIL("peer_read_exact: recv: %s (after %zu of %zu)", strerror(errno), got, len);
    if (n == 0) FAIL("peer_read_exact: EOF after %zu of %zu bytes", got, len);
    got += (size_t)n;
  }
}

sock_handle connect_pair(int32_t family, int peer_rcvbuf, int *peer_fd) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  char path[108];
  int lfd, port = 0;
  sock_handle h = SOCK_INVALID_HANDLE;
  if (family == SOCK_FAMILY_UNIX) {
    unix_path(path, sizeof path, "pair");
    lfd = peer_listen_unix(path, peer_rcvbuf);
    snprintf(addr, sizeof addr, "unix:%s", path);
  } else {
    int af = family == SOCK_FAMILY_INET ? AF_INET : AF_INET6;
    lfd = peer_listen(af, peer_rcvbuf, &port);
    addr_text(addr, sizeof addr, af, port);
  }
  ASSERT_OK(sock_socket(family, SOCK_TYPE_STREAM, &h));
  ASSERT(h != SOCK_INVALID_HANDLE);
  ASSERT_OK(sock_connect(h, addr));
  *peer_fd = peer_accept(lfd);
  close(lfd);
  if (family == SOCK_FAMILY_UNIX) unlink(path);
  return h;
}

/* ---- libsock wrappers ------------------------------------------------- */

sock_handle new_socket(int32_t family, int32_t type) {
  sock_handle h = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_socket(family, type, &h));
  ASSERT(h != SOCK_INVALID_HANDLE && h != UNWRITTEN_HANDLE);
  return h;
}

sock_handle new_listener(int32_t family, const char *address, char *addr_out) {
  sock_handle h = new_socket(family, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_bind(h, address));
  ASSERT_OK(sock_listen(h, 16));
  if (addr_out) local_addr(h, addr_out);
  return h;
}

int handle_fd(sock_handle h) {
  int32_t fd = -1;
  ASSERT_OK(sock_fd(h, &fd));
  ASSERT(fd >= 0);
  return fd;
}

void local_addr(sock_handle h, char *buf) {
  size_t len = UNWRITTEN;
  ASSERT_OK(sock_local_address(h, buf, SOCK_ADDRESS_MAX_LEN, &len));
  ASSERT_UEQ(len, strlen(buf) + 1);
}

void peer_addr(sock_handle h, char *buf) {
  size_t len = UNWRITTEN;
  ASSERT_OK(sock_peer_address(h, buf, SOCK_ADDRESS_MAX_LEN, &len));
  ASSERT_UEQ(len, strlen(buf) + 1);
}

int addr_port(const char *text) {
  const char *c = strrchr(text, ':');
  char *end;
  if (!c || !c[1]) return -1;
  long p = strtol(c + 1, &end, 10);
  if (*end || p < 0 || p > 65535) return -1;
  return (int)p;
}

void recv_exact(sock_handle h, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t r = UNWRITTEN;
    sock_status s = sock_recv(h, (char *)buf + got, n - got, SOCK_MSG_NONE, &r);
    if (s != SOCK_OK) FAIL("recv_exact: %s after %zu of %zu bytes", status_name(s), got, n);
    if (r == 0) FAIL("recv_exact: end of stream after %zu of %zu bytes", got, n);
    ASSERT_ULE(r, n - got);
    got += r;
  }
}

int kernel_int_opt(int fd, int level, int opt) {
  int v = -12345;
  socklen_t sl = sizeof v;
  ASSERT_SYS(getsockopt(fd, level, opt, &v, &sl));
  return v;
}

void assert_sigpipe_default(void) {
  struct sigaction sa;
  sigset_t cur;
  ASSERT_SYS(sigaction(SIGPIPE, NULL, &sa));
  ASSERT_MSG(sa.sa_handler == SIG_DFL, "SIGPIPE is not SIG_DFL: the test would prove nothing");
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, NULL, &cur), 0);
  ASSERT_MSG(!sigismember(&cur, SIGPIPE), "SIGPIPE is blocked: the test would prove nothing");
}

/* ---- reader thread ---------------------------------------------------- */

static void *reader_main(void *arg) {
  reader_t *r = arg;
  size_t chunk = r->chunk ? r->chunk : 65536;
  uint8_t *buf = malloc(chunk);
  unsigned reads = 0;
  ASSERT(buf != NULL);
  while (r->expect == 0 || r->got < r->expect) {
    size_t want = chunk;
    if (r->expect && r->expect - r->got < want) want = r->expect - r->got;
    if (!peer_readable(r->fd, (int)wait_bound_ms(20000))) {
      r->err = ETIMEDOUT;
      break;
    }
    ssize_t n = recv(r->fd, buf, want, 0);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1) {
      r->err = errno;
      break;
    }
    if (n == 0) {
      r->eof = 1;
      break;
    }
    if (r->check_pattern && r->mismatch < 0) {
      long long m = pattern_mismatch(buf, (size_t)n, r->got);
      if (m >= 0) r->mismatch = (long long)r->got + m;
    }
    r->hash = fnv1a(r->hash, buf, (size_t)n);
    r->got += (size_t)n;
    if (r->sleep_every && ++reads % r->sleep_every == 0) sleep_ms(1);
  }
  free(buf);
  return NULL;
}

void reader_start(reader_t *r) {
  r->got = 0;
  r->hash = FNV1A_INIT;
  r->mismatch = -1;
  r->err = 0;
  r->eof = 0;
  ASSERT_EQ(pthread_create(&r->tid, NULL, reader_main, r), 0);
}

void reader_join(reader_t *r) {
  ASSERT_EQ(pthread_join(r->tid, NULL), 0);
}

int proc_self_entries(const char *dir) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/%s", dir);
  DIR *d = opendir(path);
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}
