/* Options: defaults, round trips (checked against the kernel), bad values. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int64_t get_opt(sock_handle h, int32_t opt) {
  int64_t v = -424242;
  ASSERT_OK(sock_get_option(h, opt, &v));
  return v;
}

static void set_get(sock_handle h, int32_t opt, int64_t set, int64_t want) {
  sock_status s = sock_set_option(h, opt, set);
  ASSERT_MSG(s == SOCK_OK, "set_option(%d, %lld): %s", (int)opt, (long long)set, status_name(s));
  int64_t got = get_opt(h, opt);
  ASSERT_MSG(got == want, "option %d: set %lld, got %lld, want %lld", (int)opt, (long long)set,
             (long long)got, (long long)want);
}

static void kernel_linger(int fd, int *onoff, int *secs) {
  struct linger l;
  socklen_t sl = sizeof l;
  ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &sl));
  *onoff = l.l_onoff;
  *secs = l.l_linger;
}

TEST_IMPL(options_defaults) {
  sock_handle t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_handle u = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM);
  int onoff, secs;
  ASSERT_EQ(get_opt(t, SOCK_OPT_BLOCKING), 1);
  ASSERT_EQ(get_opt(t, SOCK_OPT_SEND_TIMEOUT_MS), 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_RECV_TIMEOUT_MS), 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_LINGER_MS), -1);
  ASSERT_EQ(get_opt(u, SOCK_OPT_BLOCKING), 1);
  ASSERT_EQ(get_opt(u, SOCK_OPT_SEND_TIMEOUT_MS), 0);
  ASSERT_EQ(get_opt(u, SOCK_OPT_RECV_TIMEOUT_MS), 0);
  /* kernel-backed options read what the kernel says */
  int fd = handle_fd(t);
  kernel_linger(fd, &onoff, &secs);
  ASSERT_EQ(onoff, 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_NO_DELAY), kernel_int_opt(fd, IPPROTO_TCP, TCP_NODELAY) != 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_KEEP_ALIVE), kernel_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE) != 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_REUSE_ADDRESS), kernel_int_opt(fd, SOL_SOCKET, SO_REUSEADDR) != 0);
  ASSERT_EQ(get_opt(t, SOCK_OPT_SEND_BUFFER_SIZE), kernel_int_opt(fd, SOL_SOCKET, SO_SNDBUF));
  ASSERT_EQ(get_opt(t, SOCK_OPT_RECV_BUFFER_SIZE), kernel_int_opt(fd, SOL_SOCKET, SO_RCVBUF));
  ASSERT_EQ(get_opt(u, SOCK_OPT_BROADCAST), kernel_int_opt(handle_fd(u), SOL_SOCKET, SO_BROADCAST) != 0);
  ASSERT_OK(sock_close(t));
  ASSERT_OK(sock_close(u));
  return 0;
}

static void round_trip_bool(sock_handle h, int32_t opt, int level, int kopt) {
  int fd = handle_fd(h);
  set_get(h, opt, 1, 1);
  ASSERT_MSG(kernel_int_opt(fd, level, kopt) != 0, "option %d = 1 did not reach the kernel", (int)opt);
  set_get(h, opt, 0, 0);
  ASSERT_MSG(kernel_int_opt(fd, level, kopt) == 0, "option %d = 0 did not reach the kernel", (int)opt);
  set_get(h, opt, 1, 1);
}

static void round_trip_buffer(sock_handle h, int32_t opt, int kopt) {
  static const int64_t sizes[] = {8192, 65536, 200000};
  for (size_t i = 0; i < 3; i++) {
    ASSERT_OK(sock_set_option(h, opt, sizes[i]));
    int64_t got = get_opt(h, opt);
    ASSERT_EQ(got, kernel_int_opt(handle_fd(h), SOL_SOCKET, kopt));
    ASSERT_MSG(got >= sizes[i], "buffer option %d: set %lld, kernel reports only %lld", (int)opt,
               (long long)sizes[i], (long long)got);
  }
}

static void round_trip_common(sock_handle h) {
  set_get(h, SOCK_OPT_BLOCKING, 0, 0);
  set_get(h, SOCK_OPT_BLOCKING, 1, 1);
  set_get(h, SOCK_OPT_SEND_TIMEOUT_MS, 1234, 1234);
  set_get(h, SOCK_OPT_SEND_TIMEOUT_MS, INT32_MAX, INT32_MAX);
  set_get(h, SOCK_OPT_SEND_TIMEOUT_MS, 0, 0);
  set_get(h, SOCK_OPT_RECV_TIMEOUT_MS, 4321, 4321);
  set_get(h, SOCK_OPT_RECV_TIMEOUT_MS, INT32_MAX, INT32_MAX);
  set_get(h, SOCK_OPT_RECV_TIMEOUT_MS, 0, 0);
  round_trip_buffer(h, SOCK_OPT_SEND_BUFFER_SIZE, SO_SNDBUF);
  round_trip_buffer(h, SOCK_OPT_RECV_BUFFER_SIZE, SO_RCVBUF);
  round_trip_bool(h, SOCK_OPT_REUSE_ADDRESS, SOL_SOCKET, SO_REUSEADDR);
}

TEST_IMPL(options_round_trip_tcp) {
  int onoff, secs;
  sock_handle t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  int fd = handle_fd(t);
  round_trip_common(t);
  round_trip_bool(t, SOCK_OPT_NO_DELAY, IPPROTO_TCP, TCP_NODELAY);
  round_trip_bool(t, SOCK_OPT_KEEP_ALIVE, SOL_SOCKET, SO_KEEPALIVE);

  set_get(t, SOCK_OPT_LINGER_MS, 3000, 3000);
  kernel_linger(fd, &onoff, &secs);
  ASSERT_EQ(onoff, 1);
  ASSERT_EQ(secs, 3);
  set_get(t, SOCK_OPT_LINGER_MS, 1500, 2000); /* seconds, rounded up */
  kernel_linger(fd, &onoff, &secs);
  ASSERT_EQ(onoff, 1);
  ASSERT_EQ(secs, 2);
  set_get(t, SOCK_OPT_LINGER_MS, 1, 1000);
  set_get(t, SOCK_OPT_LINGER_MS, 0, 0); /* on, abortive close */
  kernel_linger(fd, &onoff, &secs);
  ASSERT_EQ(onoff, 1);
  ASSERT_EQ(secs, 0);
  set_get(t, SOCK_OPT_LINGER_MS, -1, -1);
  kernel_linger(fd, &onoff, &secs);
  ASSERT_EQ(onoff, 0);

  /* options survive connect and apply to the connection */
  ASSERT_OK(sock_close(t));
  int pfd;
  t = connect_pair(SOCK_FAMILY_INET6, 0, &pfd);
  round_trip_common(t);
  round_trip_bool(t, SOCK_OPT_NO_DELAY, IPPROTO_TCP, TCP_NODELAY);
  ASSERT_OK(sock_close(t));
  close(pfd);
  return 0;
}

TEST_IMPL(options_round_trip_udp) {
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  round_trip_common(u);
  round_trip_bool(u, SOCK_OPT_BROADCAST, SOL_SOCKET, SO_BROADCAST);
  /* TCP_NODELAY is no UDP option: the kernel says ENOPROTOOPT */
  ASSERT_STATUS(SOCK_PROTOCOL_OPTION, sock_set_option(u, SOCK_OPT_NO_DELAY, 1));
  ASSERT_OK(sock_close(u));
  return 0;
}

TEST_IMPL(options_round_trip_unix) {
  char path[108], addr[SOCK_ADDRESS_MAX_LEN];
  unix_path(path, sizeof path, "opts");
  snprintf(addr, sizeof addr, "unix:%s", path);
  unlink(path);
  sock_handle l = new_listener(SOCK_FAMILY_UNIX, addr, NULL);
  set_get(l, SOCK_OPT_BLOCKING, 0, 0);
  set_get(l, SOCK_OPT_RECV_TIMEOUT_MS, 50, 50);
  round_trip_buffer(l, SOCK_OPT_SEND_BUFFER_SIZE, SO_SNDBUF);
  ASSERT_OK(sock_close(l));
  unlink(path);
  return 0;
}

TEST_IMPL(options_invalid_values) {
  static const int32_t bools[] = {SOCK_OPT_BLOCKING, SOCK_OPT_NO_DELAY, SOCK_OPT_REUSE_ADDRESS,
                                  SOCK_OPT_KEEP_ALIVE};
  static const int64_t bad_bool[] = {2, -1, 256, INT64_MIN, INT64_MAX};
  static const int64_t bad_timeout[] = {-1, (int64_t)INT32_MAX + 1, INT64_MIN, INT64_MAX};
  static const int64_t bad_size[] = {0, -1, (int64_t)INT32_MAX + 1, INT64_MIN};
  static const int64_t bad_linger[] = {-2, INT64_MIN};
  static const int32_t unknown[] = {0, -1, 1000, INT32_MAX, INT32_MIN};
  sock_handle t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  int64_t v;

  for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
    int64_t before = get_opt(t, bools[i]);
    for (size_t j = 0; j < sizeof bad_bool / sizeof bad_bool[0]; j++) {
      sock_status s = sock_set_option(t, bools[i], bad_bool[j]);
      ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "bool option %d = %lld: %s", (int)bools[i],
                 (long long)bad_bool[j], status_name(s));
    }
    ASSERT_EQ(get_opt(t, bools[i]), before); /* a refused set changes nothing */
  }
  for (size_t j = 0; j < sizeof bad_bool / sizeof bad_bool[0]; j++)
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(u, SOCK_OPT_BROADCAST, bad_bool[j]));

  ASSERT_OK(sock_set_option(t, SOCK_OPT_SEND_TIMEOUT_MS, 77));
  ASSERT_OK(sock_set_option(t, SOCK_OPT_RECV_TIMEOUT_MS, 88));
  for (size_t j = 0; j < sizeof bad_timeout / sizeof bad_timeout[0]; j++) {
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, SOCK_OPT_SEND_TIMEOUT_MS, bad_timeout[j]));
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, SOCK_OPT_RECV_TIMEOUT_MS, bad_timeout[j]));
  }
  ASSERT_EQ(get_opt(t, SOCK_OPT_SEND_TIMEOUT_MS), 77);
  ASSERT_EQ(get_opt(t, SOCK_OPT_RECV_TIMEOUT_MS), 88);

  for (size_t j = 0; j < sizeof bad_size / sizeof bad_size[0]; j++) {
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, SOCK_OPT_SEND_BUFFER_SIZE, bad_size[j]));
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, SOCK_OPT_RECV_BUFFER_SIZE, bad_size[j]));
  }
  for (size_t j = 0; j < sizeof bad_linger / sizeof bad_linger[0]; j++)
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, SOCK_OPT_LINGER_MS, bad_linger[j]));
  ASSERT_EQ(get_opt(t, SOCK_OPT_LINGER_MS), -1);

  for (size_t j = 0; j < sizeof unknown / sizeof unknown[0]; j++) {
    v = -424242;
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(t, unknown[j], 1));
    ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_get_option(t, unknown[j], &v));
  }
  ASSERT_OK(sock_close(t));
  ASSERT_OK(sock_close(u));
  return 0;
}
