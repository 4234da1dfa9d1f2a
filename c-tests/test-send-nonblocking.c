/* Non-blocking mode: partial sends, SOCK_WOULD_BLOCK with *sent == 0, and
 * every byte reported as sent arrives, in order. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (256u * 1024u)
#define TOTAL (32u * 1024u * 1024u)

TEST_IMPL(send_nonblocking_partial_then_would_block) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 4096, &pfd); /* peer never reads (yet) */
  uint8_t *buf = pattern_alloc(TOTAL);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 4096));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));

  size_t off = 0;
  int partials = 0, blocked = 0;
  while (!blocked) {
    ASSERT_MSG(off + CHUNK <= TOTAL, "sent %zu bytes to a peer that never reads without blocking", off);
    size_t sent = UNWRITTEN;
    sock_status s = sock_send(h, buf + off, CHUNK, SOCK_MSG_NONE, &sent);
    if (s == SOCK_OK) {
      ASSERT_UGT(sent, 0); /* nothing fits is WOULD_BLOCK, never OK with 0 */
      ASSERT_ULE(sent, CHUNK);
      if (sent < CHUNK) partials++;
      off += sent;
    } else {
      ASSERT_STATUS(SOCK_WOULD_BLOCK, s);
      ASSERT_UEQ(sent, 0);
      ASSERT_MSG(partials > 0, "WOULD_BLOCK before any partial send (after %zu bytes)", off);
      blocked = 1;
    }
  }
  /* still blocked, still reports 0; and NULL `sent` is fine */
  size_t sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_send(h, buf + off, CHUNK, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_send(h, buf + off, 1, SOCK_MSG_NONE, NULL));
  /* a send of nothing is SOCK_OK with 0 even on a full socket */
  sent = UNWRITTEN;
  ASSERT_OK(sock_send(h, buf + off, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf b[2] = {{buf + off, 10}, {buf + off + 10, 10}};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_sendv(h, b, 2, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);

  /* The peer drains: it receives exactly the reported bytes, in order. */
  reader_t r = {0};
  r.fd = pfd;
  r.expect = 0; /* until EOF */
  r.check_pattern = 1;
  reader_start(&r);
  /* meanwhile, finish the job non-blockingly, polling for writability */
  size_t target = off + 4 * CHUNK;
  int fd = handle_fd(h);
  while (off < target) {
    sent = UNWRITTEN;
    sock_status s = sock_send(h, buf + off, target - off, SOCK_MSG_NONE, &sent);
    if (s == SOCK_WOULD_BLOCK) {
      ASSERT_UEQ(sent, 0);
      struct pollfd p = {fd, POLLOUT, 0};
      ASSERT_EQ(poll(&p, 1, 10000), 1);
      continue;
    }
    ASSERT_OK(s);
    ASSERT_UGT(sent, 0);
    off += sent;
  }
  ASSERT_OK(sock_shutdown(h, SOCK_SHUT_SEND));
  reader_join(&r);
  ASSERT_EQ(r.err, 0);
  ASSERT(r.eof);
  ASSERT_UEQ(r.got, off);
  ASSERT_EQ(r.mismatch, -1);
  ASSERT_UEQ(r.hash, fnv1a(FNV1A_INIT, buf, off));
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(buf);
  return 0;
}

TEST_IMPL(recv_nonblocking_would_block) {
  int pfd;
  char buf[8];
  size_t n = UNWRITTEN;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_EQ(send(pfd, "hey", 3, 0), 3);
  ASSERT(peer_readable(handle_fd(h), 5000));
  ASSERT_OK(sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 3);
  ASSERT(memcmp(buf, "hey", 3) == 0);
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

/* Non-blocking send of nothing: SOCK_OK with 0, nothing arrives. */
TEST_IMPL(send_nonblocking_zero_length) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  ASSERT_OK(sock_send(h, "x", 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}
