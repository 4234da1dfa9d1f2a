/* Life cycle: socket, bind, listen, connect, accept, addresses, close. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

TEST_IMPL(version_matches_macros) {
  char expect[64];
  snprintf(expect, sizeof expect, "%d.%d.%d", (int)SOCK_VERSION_MAJOR,
           (int)SOCK_VERSION_MINOR, (int)SOCK_VERSION_PATCH);
  ASSERT_STR_EQ(sock_version(), expect);
  return 0;
}

TEST_IMPL(strerror_never_null) {
  static const sock_status known[] = {
      SOCK_OK, SOCK_SOCKET_ERROR, SOCK_OPERATION_ABORTED, SOCK_FAULT,
      SOCK_INVALID_ARGUMENT, SOCK_WOULD_BLOCK, SOCK_NOT_SOCKET,
      SOCK_MESSAGE_SIZE, SOCK_CONNECTION_RESET, SOCK_SHUTDOWN, SOCK_TIMED_OUT,
      SOCK_CONNECTION_REFUSED, SOCK_HOST_NOT_FOUND, SOCK_NO_DATA};
  static const sock_status unknown[] = {1, -2, 42, 12345, INT32_MAX, INT32_MIN};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    const char *t = sock_strerror(known[i]);
    ASSERT(t != NULL);
    ASSERT_GT(strlen(t), 0);
  }
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *t = sock_strerror(unknown[i]);
    ASSERT(t != NULL);
    ASSERT_GT(strlen(t), 0);
    /* An unknown code must not read as success. */
    ASSERT(strcmp(t, sock_strerror(SOCK_OK)) != 0);
  }
  ASSERT(strcmp(sock_strerror(SOCK_TIMED_OUT), sock_strerror(SOCK_CONNECTION_RESET)) != 0);
  return 0;
}

/* listener, client, accepted: addresses agree, bytes flow both ways, EOF,
 * and every handle is dead after close. */
static void lifecycle(int32_t family, const char *bind_addr, const char *prefix) {
  char laddr[SOCK_ADDRESS_MAX_LEN], caddr[SOCK_ADDRESS_MAX_LEN];
  char a_local[SOCK_ADDRESS_MAX_LEN], a_peer[SOCK_ADDRESS_MAX_LEN];
  char c_peer[SOCK_ADDRESS_MAX_LEN];
  char buf[16];
  size_t n;
  sock_handle l = new_listener(family, bind_addr, laddr);
  ASSERT_MSG(strncmp(laddr, prefix, strlen(prefix)) == 0, "local address '%s' lacks prefix '%s'",
             laddr, prefix);
  if (family != SOCK_FAMILY_UNIX) ASSERT_GT(addr_port(laddr), 0); /* the real port, not 0 */
  else ASSERT_STR_EQ(laddr, bind_addr);

  sock_handle c = new_socket(family, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_connect(c, laddr));
  sock_handle a = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_accept(l, &a));
  ASSERT(a != SOCK_INVALID_HANDLE && a != UNWRITTEN_HANDLE);
  ASSERT(a != l && a != c && c != l);

  peer_addr(c, c_peer);
  ASSERT_STR_EQ(c_peer, laddr);
  local_addr(a, a_local);
  ASSERT_STR_EQ(a_local, laddr);
  if (family != SOCK_FAMILY_UNIX) {
    local_addr(c, caddr);
    peer_addr(a, a_peer);
    ASSERT_STR_EQ(a_peer, caddr);
    ASSERT_MSG(strncmp(caddr, prefix, strlen(prefix)) == 0, "client address '%s'", caddr);
  }

  ASSERT_OK(sock_send(c, "ping", 4, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 4);
  recv_exact(a, buf, 4);
  ASSERT(memcmp(buf, "ping", 4) == 0);
  ASSERT_OK(sock_send(a, "pong!", 5, SOCK_MSG_NONE, NULL));
  recv_exact(c, buf, 5);
  ASSERT(memcmp(buf, "pong!", 5) == 0);

  ASSERT_OK(sock_close(c));
  n = UNWRITTEN;
  ASSERT_OK(sock_set_option(a, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  ASSERT_OK(sock_recv(a, buf, sizeof buf, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 0); /* orderly end of stream */

  ASSERT_OK(sock_close(a));
  ASSERT_OK(sock_close(l));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(l));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(a));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_close(c));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_send(c, "x", 1, 0, NULL));
  ASSERT_STATUS(SOCK_NOT_SOCKET, sock_local_address(l, laddr, sizeof laddr, NULL));
}

TEST_IMPL(tcp4_lifecycle) {
  lifecycle(SOCK_FAMILY_INET, "127.0.0.1:0", "127.0.0.1:");
  return 0;
}

TEST_IMPL(tcp6_lifecycle) {
  lifecycle(SOCK_FAMILY_INET6, "[::1]:0", "[::1]:");
  return 0;
}

TEST_IMPL(unix_lifecycle) {
  char path[108], addr[SOCK_ADDRESS_MAX_LEN];
  struct stat st;
  unix_path(path, sizeof path, "life");
  unlink(path);
  snprintf(addr, sizeof addr, "unix:%s", path);
  lifecycle(SOCK_FAMILY_UNIX, addr, "unix:/tmp/libsock-test-");
  /* Bound paths are not unlinked on close: that is the caller's job. */
  ASSERT_SYS(stat(path, &st));
  ASSERT(S_ISSOCK(st.st_mode));
  ASSERT_SYS(unlink(path));
  return 0;
}

TEST_IMPL(localhost_resolves) {
  char addr[SOCK_ADDRESS_MAX_LEN], got[SOCK_ADDRESS_MAX_LEN], want[SOCK_ADDRESS_MAX_LEN];
  int port;
  int lfd = peer_listen(AF_INET, 0, &port);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  snprintf(addr, sizeof addr, "localhost:%d", port);
  ASSERT_OK(sock_connect(h, addr));
  int pfd = peer_accept(lfd);
  peer_addr(h, got);
  snprintf(want, sizeof want, "127.0.0.1:%d", port);
  ASSERT_STR_EQ(got, want);
  ASSERT_OK(sock_close(h));
  close(pfd);
  close(lfd);

  h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_bind(h, "localhost:0"));
  local_addr(h, got);
  ASSERT_MSG(strncmp(got, "127.0.0.1:", 10) == 0, "bound to '%s'", got);
  ASSERT_GT(addr_port(got), 0);
  ASSERT_OK(sock_close(h));
  return 0;
}

TEST_IMPL(unknown_host_not_found) {
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS2(SOCK_HOST_NOT_FOUND, SOCK_TRY_AGAIN,
                 sock_connect(h, "no-such-host.invalid:80"));
  ASSERT_OK(sock_close(h));
  return 0;
}

/* A bound, non-listening port: the kernel refuses the connection. */
TEST_IMPL(connect_refused) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  int tfd = peer_bound_not_listening(addr, sizeof addr);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_CONNECTION_REFUSED, sock_connect(h, addr));
  ASSERT_EQ(sock_os_error(), ECONNREFUSED);
  ASSERT_OK(sock_close(h));
  close(tfd);
  return 0;
}

TEST_IMPL(connect_nonblocking_in_progress) {
  char addr[SOCK_ADDRESS_MAX_LEN], buf[2];
  int port;
  int lfd = peer_listen(AF_INET, 0, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  ASSERT_STATUS(SOCK_IN_PROGRESS, sock_connect(h, addr));
  struct pollfd p = {handle_fd(h), POLLOUT, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  ASSERT(p.revents & POLLOUT);
  ASSERT_STATUS2(SOCK_IS_CONNECTED, SOCK_ALREADY_IN_PROGRESS, sock_connect(h, addr));
  int pfd = peer_accept(lfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 1));
  ASSERT_OK(sock_send(h, "hi", 2, 0, NULL));
  peer_read_exact(pfd, buf, 2);
  ASSERT(memcmp(buf, "hi", 2) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  close(lfd);
  return 0;
}

TEST_IMPL(connect_twice_is_connected) {
  int pfd;
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  peer_addr(h, addr);
  ASSERT_STATUS(SOCK_IS_CONNECTED, sock_connect(h, addr));
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(bind_errors) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_ALREADY_IN_USE, sock_bind(h, addr));
  ASSERT_EQ(sock_os_error(), EADDRINUSE);
  ASSERT_OK(sock_bind(h, "127.0.0.1:0"));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_bind(h, "127.0.0.1:0")); /* already bound */
  /* 192.0.2.1 (TEST-NET-1) is no address of this machine. */
  sock_handle g = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_NOT_AVAILABLE, sock_bind(g, "192.0.2.1:0"));
  ASSERT_OK(sock_close(g));
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_close(l));
  return 0;
}

TEST_IMPL(accept_timeout) {
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", NULL);
  sock_handle a = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_accept(l, &a));
  uint64_t dt = now_ms() - t0;
  ASSERT(a == SOCK_INVALID_HANDLE);
  ASSERT_UGE(dt, 80);    /* not (much) early */
  ASSERT_ULT(dt, 10000); /* and not forever */
  ASSERT_OK(sock_close(l));
  return 0;
}

TEST_IMPL(accept_nonblocking_would_block) {
  char addr[SOCK_ADDRESS_MAX_LEN], buf[3];
  int64_t v;
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  sock_handle a = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_set_option(l, SOCK_OPT_BLOCKING, 0));
  ASSERT_OK(sock_set_option(l, SOCK_OPT_RECV_TIMEOUT_MS, 777));
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_accept(l, &a));
  ASSERT(a == SOCK_INVALID_HANDLE);

  int cfd = peer_connect(AF_INET, addr_port(addr));
  struct pollfd p = {handle_fd(l), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  ASSERT_OK(sock_accept(l, &a));
  ASSERT(a != SOCK_INVALID_HANDLE);
  /* The accepted socket starts with default options, not the listener's. */
  ASSERT_OK(sock_get_option(a, SOCK_OPT_BLOCKING, &v));
  ASSERT_EQ(v, 1);
  ASSERT_OK(sock_get_option(a, SOCK_OPT_RECV_TIMEOUT_MS, &v));
  ASSERT_EQ(v, 0);
  ASSERT_OK(sock_get_option(a, SOCK_OPT_SEND_TIMEOUT_MS, &v));
  ASSERT_EQ(v, 0);
  ASSERT_EQ(send(cfd, "abc", 3, 0), 3);
  recv_exact(a, buf, 3); /* blocking recv works on it */
  ASSERT(memcmp(buf, "abc", 3) == 0);
  ASSERT_OK(sock_close(a));
  ASSERT_OK(sock_close(l));
  close(cfd);
  return 0;
}

TEST_IMPL(recv_timeout) {
  int pfd;
  char buf[8];
  size_t n = UNWRITTEN;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UGE(now_ms() - t0, 80);
  ASSERT_UEQ(n, 0);
  ASSERT_EQ(send(pfd, "x", 1, 0), 1);
  ASSERT_OK(sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 1);
  ASSERT_EQ(buf[0], 'x');
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(recv_peek_and_eof) {
  int pfd;
  char buf[16];
  size_t n = UNWRITTEN;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  ASSERT_EQ(send(pfd, "abcdef", 6, 0), 6);
  ASSERT(peer_readable(handle_fd(h), 5000));
  ASSERT_OK(sock_recv(h, buf, 3, SOCK_MSG_PEEK, &n));
  ASSERT_UEQ(n, 3);
  ASSERT(memcmp(buf, "abc", 3) == 0);
  recv_exact(h, buf, 6); /* the peeked bytes are still there */
  ASSERT(memcmp(buf, "abcdef", 6) == 0);
  ASSERT_SYS(shutdown(pfd, SHUT_WR));
  n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, 0, &n)); /* and again */
  ASSERT_UEQ(n, 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

static void assert_cloexec(sock_handle h) {
  int fd = handle_fd(h);
  int fl = fcntl(fd, F_GETFD);
  ASSERT_SYS(fl);
  ASSERT_MSG(fl & FD_CLOEXEC, "fd %d of handle %" PRIu64 " is not close-on-exec", fd, h);
}

TEST_IMPL(sockets_are_cloexec) {
  char addr[SOCK_ADDRESS_MAX_LEN], path[108];
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  sock_handle c = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_handle a;
  assert_cloexec(l);
  assert_cloexec(c);
  ASSERT_OK(sock_connect(c, addr));
  ASSERT_OK(sock_accept(l, &a));
  assert_cloexec(a);
  sock_handle u = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM);
  assert_cloexec(u);
  unix_path(path, sizeof path, "cloexec");
  snprintf(addr, sizeof addr, "unix:%s", path);
  unlink(path);
  sock_handle x = new_listener(SOCK_FAMILY_UNIX, addr, NULL);
  assert_cloexec(x);
  sock_handle xc = new_socket(SOCK_FAMILY_UNIX, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_connect(xc, addr));
  sock_handle xa;
  ASSERT_OK(sock_accept(x, &xa));
  assert_cloexec(xa);
  ASSERT_OK(sock_close(xa));
  ASSERT_OK(sock_close(xc));
  ASSERT_OK(sock_close(x));
  unlink(path);
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_close(a));
  ASSERT_OK(sock_close(c));
  ASSERT_OK(sock_close(l));
  return 0;
}

static void *os_error_thread(void *arg) {
  const char *busy = arg;
  /* "0 if none": a fresh thread has no last error, whatever main did. */
  ASSERT_EQ(sock_os_error(), 0);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_ALREADY_IN_USE, sock_bind(h, busy));
  ASSERT_EQ(sock_os_error(), EADDRINUSE);
  ASSERT_OK(sock_close(h));
  return NULL;
}

TEST_IMPL(os_error_is_per_thread) {
  char busy[SOCK_ADDRESS_MAX_LEN];
  pthread_t t;
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", busy);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  char addr[SOCK_ADDRESS_MAX_LEN];
  int tfd = peer_bound_not_listening(addr, sizeof addr);
  ASSERT_STATUS(SOCK_CONNECTION_REFUSED, sock_connect(h, addr));
  ASSERT_EQ(sock_os_error(), ECONNREFUSED);

  ASSERT_EQ(pthread_create(&t, NULL, os_error_thread, busy), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(sock_os_error(), ECONNREFUSED); /* untouched by the other thread */
  ASSERT_OK(sock_close(h));
  ASSERT_OK(sock_close(l));
  close(tfd);
  return 0;
}
