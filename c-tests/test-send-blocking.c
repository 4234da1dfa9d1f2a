/* Blocking sock_send: send-all, the timeout with its partial count, and
 * the edge cases of the length and state. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

/* One sock_send of `len` bytes to a slow reader arrives intact. */
static void send_all_to_slow_reader(int32_t family, size_t len) {
  int pfd;
  sock_handle h = connect_pair(family, 0, &pfd);
  uint8_t *buf = pattern_alloc(len);
  reader_t r = {0};
  r.fd = pfd;
  r.expect = len;
  r.chunk = 65536;
  r.sleep_every = 16; /* slow enough to force many partial writes */
  r.check_pattern = 1;
  reader_start(&r);

  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_send(h, buf, len, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, len);

  reader_join(&r);
  ASSERT_MSG(r.err == 0, "reader: %s", strerror(r.err));
  ASSERT_UEQ(r.got, len);
  ASSERT_EQ(r.mismatch, -1);
  ASSERT_UEQ(r.hash, fnv1a(FNV1A_INIT, buf, len));
  /* and nothing more than that */
  ASSERT_OK(sock_close(h));
  long long mm;
  ASSERT_UEQ(peer_drain(pfd, 1, 0, &mm), 0);
  close(pfd);
  free(buf);
}

TEST_IMPL(send_64mib_tcp4_slow_reader) {
  send_all_to_slow_reader(SOCK_FAMILY_INET, 64 * MiB);
  return 0;
}

TEST_IMPL(send_8mib_tcp6_slow_reader) {
  send_all_to_slow_reader(SOCK_FAMILY_INET6, 8 * MiB);
  return 0;
}

TEST_IMPL(send_8mib_unix_slow_reader) {
  send_all_to_slow_reader(SOCK_FAMILY_UNIX, 8 * MiB);
  return 0;
}

/* A peer that never reads: the send times out and reports exactly the bytes
 * that went out, which the peer then receives - no more, no fewer. */
TEST_IMPL(send_timeout_reports_partial_count) {
  const size_t len = 64 * MiB;
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 4096, &pfd);
  uint8_t *buf = pattern_alloc(len);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 4096));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 200));

  size_t sent = UNWRITTEN;
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_send(h, buf, len, SOCK_MSG_NONE, &sent));
  uint64_t dt = now_ms() - t0;
  ASSERT_UGT(sent, 0);
  ASSERT_ULT(sent, len);
  ASSERT_UGE(dt, 150);   /* the timeout did not fire (much) early */
  ASSERT_ULT(dt, 20000); /* sanity only */

  /* A second call continues where the first stopped and times out too. */
  size_t sent2 = UNWRITTEN;
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_send(h, buf + sent, len - sent, SOCK_MSG_NONE, &sent2));
  ASSERT_ULT(sent2, len - sent); /* may be 0: the buffers are full */

  ASSERT_OK(sock_close(h)); /* queued bytes are still delivered, then EOF */
  long long mm;
  size_t got = peer_drain(pfd, SIZE_MAX, 0, &mm);
  ASSERT_UEQ(got, sent + sent2);
  ASSERT_EQ(mm, -1);
  close(pfd);
  free(buf);
  return 0;
}

TEST_IMPL(send_zero_length_stream) {
  int pfd;
  char c;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  char buf[4] = "abc";
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_send(h, buf, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 100)); /* nothing arrives */
  ASSERT_OK(sock_send(h, buf, 0, SOCK_MSG_NONE, NULL));
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send(h, NULL, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send(h, NULL, 5, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  /* the stream is intact: the next real byte is the first to arrive */
  ASSERT_OK(sock_send(h, "Q", 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 1);
  peer_read_exact(pfd, &c, 1);
  ASSERT_EQ(c, 'Q');
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(send_not_connected) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  size_t sent = UNWRITTEN;
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_send(h, "x", 1, 0, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf b = {"x", 1};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_sendv(h, &b, 1, 0, &sent));
  ASSERT_UEQ(sent, 0);
  /* a listening socket is not connected either */
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_send(l, "x", 1, 0, &sent));
  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_close(h));
  return 0;
}

TEST_IMPL(send_oob_byte) {
  int pfd;
  char c = 0;
  size_t sent = UNWRITTEN;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_send(h, "ab", 2, SOCK_MSG_NONE, NULL));
  ASSERT_OK(sock_send(h, "!", 1, SOCK_MSG_OOB, &sent));
  ASSERT_UEQ(sent, 1);
  ASSERT(peer_readable(pfd, 5000));
  struct pollfd p = {pfd, POLLPRI, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  ASSERT_EQ(recv(pfd, &c, 1, MSG_OOB), 1);
  ASSERT_EQ(c, '!');
  char two[2];
  peer_read_exact(pfd, two, 2);
  ASSERT(memcmp(two, "ab", 2) == 0);
  ASSERT_OK(sock_send(h, "r", 1, SOCK_MSG_DONT_ROUTE, &sent));
  ASSERT_UEQ(sent, 1);
  peer_read_exact(pfd, &c, 1);
  ASSERT_EQ(c, 'r');
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}
