/* Bad arguments: NULL pointers, dead or made-up handles, unknown enum
 * values, absurd lengths. Each has its status and does nothing. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <sys/socket.h>
#include <unistd.h>

/* Every export that takes a handle returns SOCK_NOT_SOCKET for h, with
 * otherwise valid arguments, and clears/zeroes its outputs. */
static void assert_not_socket_everywhere(sock_handle h) {
  char buf[64], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int64_t v;
  int32_t fd;
  sock_handle out;
  sock_buf b = {"x", 1};
#define NS(expr) ASSERT_STATUS(SOCK_NOT_SOCKET, expr)
  NS(sock_bind(h, "127.0.0.1:0"));
  NS(sock_listen(h, 4));
  out = UNWRITTEN_HANDLE;
  NS(sock_accept(h, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  NS(sock_connect(h, "127.0.0.1:9"));
  NS(sock_shutdown(h, SOCK_SHUT_BOTH));
  NS(sock_local_address(h, addr, sizeof addr, &n));
  NS(sock_peer_address(h, addr, sizeof addr, &n));
  NS(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  NS(sock_get_option(h, SOCK_OPT_BLOCKING, &v));
  NS(sock_fd(h, &fd));
  n = UNWRITTEN;
  NS(sock_send(h, "x", 1, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_send_to(h, "x", 1, 0, "127.0.0.1:9", &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_sendv(h, &b, 1, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv_from(h, buf, sizeof buf, 0, addr, sizeof addr, &n));
  ASSERT_UEQ(n, 0);
  NS(sock_close(h));
#undef NS
}

TEST_IMPL(invalid_handles) {
  assert_not_socket_everywhere(SOCK_INVALID_HANDLE);
  assert_not_socket_everywhere(NEVER_ISSUED_HANDLE);
  assert_not_socket_everywhere(UINT64_MAX);
  assert_not_socket_everywhere(1);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  /* a live handle plus one in its low or high half is never valid by accident */
  assert_not_socket_everywhere(h ^ 0x8000000000000000ULL);
  ASSERT_OK(sock_close(h));
  assert_not_socket_everywhere(h); /* closed */
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_close(u));
  assert_not_socket_everywhere(u);
  return 0;
}

/* Close h1; h2 reuses its descriptor number. h1 stays dead and cannot
 * touch h2. */
TEST_IMPL(stale_handle_never_reaches_new_socket) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle h1 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  int fd1 = handle_fd(h1);
  ASSERT_OK(sock_close(h1));
  sock_handle h2 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_MSG(handle_fd(h2) == fd1,
             "new socket got fd %d, not the closed one's %d: cannot test the stale case",
             handle_fd(h2), fd1);
  ASSERT(h2 != h1);
  assert_not_socket_everywhere(h1);
  /* h2 is untouched by all that: still open, unbound, blocking */
  int64_t v;
  ASSERT_OK(sock_get_option(h2, SOCK_OPT_BLOCKING, &v));
  ASSERT_EQ(v, 1);
  ASSERT_OK(sock_bind(h2, "127.0.0.1:0"));
  ASSERT_OK(sock_listen(h2, 4));
  local_addr(h2, addr);
  ASSERT_GT(addr_port(addr), 0);
  ASSERT_EQ(handle_fd(h2), fd1);
  /* the same again with h2 closed and a datagram socket taking the fd */
  ASSERT_OK(sock_close(h2));
  sock_handle h3 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_EQ(handle_fd(h3), fd1);
  assert_not_socket_everywhere(h1);
  assert_not_socket_everywhere(h2);
  ASSERT_OK(sock_close(h3));
  return 0;
}

TEST_IMPL(null_pointers) {
  char buf[16], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", NULL);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 100)); /* never hang on a bug */
  ASSERT_OK(sock_set_option(u, SOCK_OPT_RECV_TIMEOUT_MS, 100));

  ASSERT_STATUS(SOCK_FAULT, sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_bind(u, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_accept(l, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_connect(u, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_local_address(h, NULL, 16, &n));
  ASSERT_STATUS(SOCK_FAULT, sock_peer_address(h, NULL, 16, &n));
  ASSERT_STATUS(SOCK_FAULT, sock_get_option(h, SOCK_OPT_BLOCKING, NULL));
  ASSERT_STATUS(SOCK_FAULT, sock_fd(h, NULL));
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send(h, NULL, 4, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send_to(u, NULL, 4, 0, "127.0.0.1:9", &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send_to(u, "abcd", 4, 0, NULL, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_sendv(h, NULL, 1, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_recv(h, NULL, 4, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_recv_from(u, NULL, 4, 0, addr, sizeof addr, &n));
  ASSERT_UEQ(n, 0);
  ASSERT(!peer_readable(pfd, 50)); /* none of it sent anything */

  /* the optional outputs may be NULL */
  ASSERT_OK(sock_send(h, "ok", 2, 0, NULL));
  peer_read_exact(pfd, buf, 2);
  ASSERT_EQ(send(pfd, "yo", 2, 0), 2);
  ASSERT(peer_readable(handle_fd(h), 5000));
  ASSERT_OK(sock_recv(h, buf, 1, 0, NULL));
  ASSERT_EQ(buf[0], 'y');
  ASSERT_OK(sock_local_address(h, addr, sizeof addr, NULL));

  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_close(u));
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(unknown_enum_values) {
  static const int32_t bad_family[] = {0, 4, -1, 100, AF_INET, 10,
                                       INT32_MAX, INT32_MIN};
  static const int32_t bad_type[] = {0, 3, -1, 5, INT32_MAX, INT32_MIN};
  static const int32_t bad_how[] = {3, -1, 100, INT32_MIN};
  static const int32_t bad_send_flags[] = {SOCK_MSG_PEEK, 8, 16, 0x100, -1, INT32_MIN,
                                           SOCK_MSG_OOB | 8};
  static const int32_t bad_recv_flags[] = {SOCK_MSG_DONT_ROUTE, 8, 0x100, -1, INT32_MIN,
                                           SOCK_MSG_PEEK | 8};
  sock_handle out;
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int pfd;

  for (size_t i = 0; i < sizeof bad_family / sizeof bad_family[0]; i++) {
    if (bad_family[i] == SOCK_FAMILY_INET || bad_family[i] == SOCK_FAMILY_INET6 ||
        bad_family[i] == SOCK_FAMILY_UNIX)
      continue; /* AF_INET happens to be 2 == SOCK_FAMILY_INET6 */
    out = UNWRITTEN_HANDLE;
    sock_status s = sock_socket(bad_family[i], SOCK_TYPE_STREAM, &out);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "family %d: %s", (int)bad_family[i], status_name(s));
    ASSERT(out == SOCK_INVALID_HANDLE);
  }
  for (size_t i = 0; i < sizeof bad_type / sizeof bad_type[0]; i++) {
    out = UNWRITTEN_HANDLE;
    sock_status s = sock_socket(SOCK_FAMILY_INET, bad_type[i], &out);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "type %d: %s", (int)bad_type[i], status_name(s));
    ASSERT(out == SOCK_INVALID_HANDLE);
  }

  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  ASSERT_EQ(send(pfd, "data", 4, 0), 4);
  ASSERT(peer_readable(handle_fd(h), 5000));
  for (size_t i = 0; i < sizeof bad_how / sizeof bad_how[0]; i++)
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_shutdown(h, bad_how[i]));
  sock_buf b = {"x", 1};
  for (size_t i = 0; i < sizeof bad_send_flags / sizeof bad_send_flags[0]; i++) {
    int32_t f = bad_send_flags[i];
    n = UNWRITTEN;
    sock_status s = sock_send(h, "x", 1, f, &n);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "send flags 0x%x: %s", (unsigned)f, status_name(s));
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    s = sock_sendv(h, &b, 1, f, &n);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "sendv flags 0x%x: %s", (unsigned)f, status_name(s));
    ASSERT_UEQ(n, 0);
  }
  for (size_t i = 0; i < sizeof bad_recv_flags / sizeof bad_recv_flags[0]; i++) {
    int32_t f = bad_recv_flags[i];
    n = UNWRITTEN;
    sock_status s = sock_recv(h, buf, sizeof buf, f, &n);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "recv flags 0x%x: %s", (unsigned)f, status_name(s));
    ASSERT_UEQ(n, 0);
  }
  /* nothing was sent, nothing consumed; the connection is intact */
  ASSERT(!peer_readable(pfd, 50));
  recv_exact(h, buf, 4);
  ASSERT(memcmp(buf, "data", 4) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);

  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  local_addr(u, addr);
  ASSERT_OK(sock_set_option(u, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  for (size_t i = 0; i < sizeof bad_send_flags / sizeof bad_send_flags[0]; i++)
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_send_to(u, "x", 1, bad_send_flags[i], addr, NULL));
  for (size_t i = 0; i < sizeof bad_recv_flags / sizeof bad_recv_flags[0]; i++)
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT,
                  sock_recv_from(u, buf, sizeof buf, bad_recv_flags[i], addr, sizeof addr, NULL));
  ASSERT_OK(sock_close(u));
  return 0;
}

TEST_IMPL(lengths_beyond_ptrdiff_max) {
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  const size_t huge = SIZE_MAX / 2 + 1;
  size_t n;
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_send(h, buf, huge, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_send(h, buf, SIZE_MAX, 0, &n));
  ASSERT_UEQ(n, 0);
  sock_buf b[2] = {{buf, 1}, {buf, huge}};
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_sendv(h, b, 2, 0, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_recv(h, buf, huge, 0, &n));
  ASSERT_UEQ(n, 0);
  ASSERT(!peer_readable(pfd, 50));
  ASSERT_OK(sock_close(h));
  close(pfd);

  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  local_addr(u, addr);
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_send_to(u, buf, huge, 0, addr, NULL));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_recv_from(u, buf, huge, 0, NULL, 0, NULL));
  ASSERT_OK(sock_close(u));
  return 0;
}

TEST_IMPL(stream_only_calls_on_datagram) {
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  sock_handle out = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_listen(u, 4));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept(u, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  sock_handle x = new_socket(SOCK_FAMILY_UNIX, SOCK_TYPE_DGRAM);
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_listen(x, 4));
  ASSERT_OK(sock_close(x));
  /* accept on a stream socket that is not listening */
  sock_handle t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_set_option(t, SOCK_OPT_RECV_TIMEOUT_MS, 100));
  out = UNWRITTEN_HANDLE;
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept(t, &out));
  ASSERT(out == SOCK_INVALID_HANDLE);
  ASSERT_OK(sock_close(t));
  ASSERT_OK(sock_close(u));
  return 0;
}
