/* Connection errors: peer reset, peer gone, shutdown. Every one must come
 * back as a status - never as SIGPIPE (which would kill this process: the
 * runner leaves SIGPIPE at its default action and reports the signal). */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <sys/socket.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

static void assert_reset_or_shutdown(sock_status s) {
  ASSERT_MSG(s == SOCK_CONNECTION_RESET || s == SOCK_SHUTDOWN,
             "expected SOCK_CONNECTION_RESET or SOCK_SHUTDOWN, got %s (%d)", status_name(s), (int)s);
}

TEST_IMPL(reset_before_send) {
  const size_t len = 64 * MiB;
  int pfd;
  assert_sigpipe_default();
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  uint8_t *buf = pattern_alloc(len);
  peer_reset(pfd);
  sleep_ms(20);
  size_t sent = UNWRITTEN;
  assert_reset_or_shutdown(sock_send(h, buf, len, SOCK_MSG_NONE, &sent));
  ASSERT_ULT(sent, len);
  /* again, and through the other send calls: still a status, no signal */
  for (int i = 0; i < 3; i++) {
    sent = UNWRITTEN;
    assert_reset_or_shutdown(sock_send(h, buf, 1000, SOCK_MSG_NONE, &sent));
    ASSERT_UEQ(sent, 0);
    sock_buf b[2] = {{buf, 10}, {buf, 10}};
    sent = UNWRITTEN;
    assert_reset_or_shutdown(sock_sendv(h, b, 2, SOCK_MSG_NONE, &sent));
    ASSERT_UEQ(sent, 0);
  }
  ASSERT_OK(sock_close(h));
  free(buf);
  return 0;
}

static void *read_then_reset(void *arg) {
  int fd = *(int *)arg;
  static uint8_t buf[MiB];
  peer_read_exact(fd, buf, sizeof buf);
  ASSERT_EQ(pattern_mismatch(buf, sizeof buf, 0), -1);
  peer_reset(fd);
  return NULL;
}

TEST_IMPL(reset_during_send) {
  const size_t len = 64 * MiB;
  int pfd;
  pthread_t t;
  assert_sigpipe_default();
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 65536, &pfd);
  uint8_t *buf = pattern_alloc(len);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 65536));
  ASSERT_EQ(pthread_create(&t, NULL, read_then_reset, &pfd), 0);
  size_t sent = UNWRITTEN;
  assert_reset_or_shutdown(sock_send(h, buf, len, SOCK_MSG_NONE, &sent));
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_UGE(sent, MiB); /* at least what the peer read went out */
  ASSERT_ULT(sent, len);
  sent = UNWRITTEN;
  assert_reset_or_shutdown(sock_send(h, buf, 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_close(h));
  free(buf);
  return 0;
}

/* A unix stream peer that is gone: write(2) would raise SIGPIPE (EPIPE). */
TEST_IMPL(unix_peer_gone_no_sigpipe) {
  int pfd;
  assert_sigpipe_default();
  sock_handle h = connect_pair(SOCK_FAMILY_UNIX, 0, &pfd);
  close(pfd);
  uint8_t buf[4096] = {0};
  for (int i = 0; i < 3; i++) {
    size_t sent = UNWRITTEN;
    assert_reset_or_shutdown(sock_send(h, buf, sizeof buf, SOCK_MSG_NONE, &sent));
    ASSERT_UEQ(sent, 0);
  }
  sock_buf b = {buf, 10};
  assert_reset_or_shutdown(sock_sendv(h, &b, 1, SOCK_MSG_NONE, NULL));
  ASSERT_OK(sock_close(h));
  return 0;
}

/* A TCP peer that closed normally: the first write draws a RST, the next
 * ones fail with EPIPE - which must not raise SIGPIPE. */
TEST_IMPL(tcp_peer_closed_no_sigpipe) {
  int pfd;
  assert_sigpipe_default();
  sock_handle h = connect_pair(SOCK_FAMILY_INET6, 0, &pfd);
  close(pfd);
  uint8_t buf[4096] = {0};
  sock_status s = SOCK_OK;
  for (int i = 0; i < 50 && s == SOCK_OK; i++) {
    s = sock_send(h, buf, sizeof buf, SOCK_MSG_NONE, NULL);
    if (s == SOCK_OK) sleep_ms(10); /* give the RST time to come back */
  }
  assert_reset_or_shutdown(s);
  for (int i = 0; i < 3; i++) assert_reset_or_shutdown(sock_send(h, buf, sizeof buf, SOCK_MSG_NONE, NULL));
  ASSERT_OK(sock_close(h));
  return 0;
}

TEST_IMPL(send_after_shutdown) {
  int pfd;
  char c;
  size_t sent;
  assert_sigpipe_default();
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_send(h, "a", 1, SOCK_MSG_NONE, NULL));
  ASSERT_OK(sock_shutdown(h, SOCK_SHUT_SEND));
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send(h, "x", 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf b = {"x", 1};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_sendv(h, &b, 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  /* the peer got the byte sent before, then end of stream */
  peer_read_exact(pfd, &c, 1);
  ASSERT_EQ(c, 'a');
  ASSERT(peer_readable(pfd, 5000));
  ASSERT_EQ(recv(pfd, &c, 1, 0), 0);
  /* receiving still works after SHUT_SEND */
  ASSERT_EQ(send(pfd, "r", 1, 0), 1);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  recv_exact(h, &c, 1);
  ASSERT_EQ(c, 'r');
  ASSERT_OK(sock_close(h));
  close(pfd);

  /* SHUT_BOTH: no sending; receiving reports end of stream at once */
  h = connect_pair(SOCK_FAMILY_UNIX, 0, &pfd);
  ASSERT_OK(sock_shutdown(h, SOCK_SHUT_BOTH));
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_SHUTDOWN, sock_send(h, "x", 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 2000));
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, &c, 1, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_OK(sock_close(h));
  close(pfd);

  /* SHUT_RECV alone: sending still works */
  h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_shutdown(h, SOCK_SHUT_RECV));
  ASSERT_OK(sock_send(h, "s", 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 1);
  peer_read_exact(pfd, &c, 1);
  ASSERT_EQ(c, 's');
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(shutdown_not_connected) {
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_shutdown(h, SOCK_SHUT_BOTH));
  ASSERT_OK(sock_close(h));
  return 0;
}
