/* sock_recv_async: inline when data is there, pending until the peer
 * writes, end of stream, close, timeout, reset; datagrams. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

TEST_IMPL(async_recv_inline_when_data_ready) {
  int pfd;
  tracker t;
  char rb[64];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 1);
  ASSERT_SYS(send(pfd, "hello", 5, 0));
  ASSERT(peer_readable(handle_fd(h), 5000));
  ASSERT_OK(track_recv(&t, 0, h, rb, sizeof rb));
  ASSERT_UGE(t.ops[0].sent_now, 1);
  ASSERT_ULE(t.ops[0].sent_now, 5);
  ASSERT(memcmp(rb, "hello", t.ops[0].sent_now) == 0);
  tracker_settle(&t, 0, 200);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* Pending receives complete when the peer writes, in submission order: the
 * first gets the first bytes. */
TEST_IMPL(async_recv_pending_then_data) {
  int pfd;
  tracker t;
  char a[3], b[64];
  static const char msg[] = "0123456789";
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 2);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, a, sizeof a));
  ASSERT_UEQ(t.ops[0].sent_now, 0);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, h, b, sizeof b));
  sleep_ms(100);
  ASSERT_EQ(tracker_calls(&t), 0); /* nothing arrived: nothing completes */
  ASSERT_SYS(send(pfd, msg, 10, 0));
  tracker_wait(&t, 1, 10000);
  ASSERT_UEQ(t.order[0], 0);
  op_t *oa = &t.ops[0], *ob = &t.ops[1];
  ASSERT_STATUS(SOCK_OK, oa->status);
  ASSERT_UGE(oa->bytes, 1);
  ASSERT_ULE(oa->bytes, sizeof a);
  ASSERT(memcmp(a, msg, oa->bytes) == 0);
  ASSERT_MSG(!pthread_equal(oa->thread, pthread_self()), "callback on the submitting thread");
  /* the second receive takes what follows (send more if the first took all
   * of what had arrived when it completed) */
  if (tracker_calls(&t) < 2) ASSERT_SYS(send(pfd, "ABC", 3, 0));
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_OK, ob->status);
  ASSERT_UGE(ob->bytes, 1);
  char all[16];
  memcpy(all, msg, 10);
  memcpy(all + 10, "ABC", 3);
  ASSERT_ULE(oa->bytes + ob->bytes, 13);
  ASSERT_MSG(memcmp(b, all + oa->bytes, ob->bytes) == 0, "second receive got the wrong bytes");
  tracker_settle(&t, 2, 100);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* End of stream: a pending receive completes with SOCK_OK and 0 bytes; a
 * later one finishes inline with 0. */
TEST_IMPL(async_recv_eof) {
  int pfd;
  tracker t;
  char rb[8];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 2);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, rb, sizeof rb));
  ASSERT_SYS(shutdown(pfd, SHUT_WR));
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 0);
  ASSERT_OK(track_recv(&t, 1, h, rb, sizeof rb));
  ASSERT_UEQ(t.ops[1].sent_now, 0);
  tracker_settle(&t, 1, 100);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* sock_close with receives pending: each ABORTED once, 0 bytes. */
TEST_IMPL(async_recv_close_aborts) {
  int pfd;
  tracker t;
  char r0[8], r1[8];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 2);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, r0, sizeof r0));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, h, r1, sizeof r1));
  ASSERT_OK(sock_close(h));
  tracker_wait(&t, 2, 10000);
  tracker_settle(&t, 2, 100);
  for (size_t i = 0; i < 2; i++) {
    ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, 0);
    ASSERT_UEQ(t.order[i], i);
  }
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* RECV_TIMEOUT_MS bounds a pending receive: SOCK_TIMED_OUT, 0 bytes, not
 * (much) early; the next receive works. */
TEST_IMPL(async_recv_timeout) {
  const unsigned timeout = 200;
  int pfd;
  tracker t;
  char rb[8];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 2);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, timeout));
  uint64_t t0 = now_ms();
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, rb, sizeof rb));
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_TIMED_OUT, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 0);
  ASSERT_UGE(t.ops[0].at_ms - t0, timeout * 3 / 4);
  ASSERT_ULT(t.ops[0].at_ms - t0, 20000);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, h, rb, sizeof rb));
  ASSERT_SYS(send(pfd, "m", 1, 0));
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 1);
  ASSERT_EQ(rb[0], 'm');
  tracker_settle(&t, 2, 50);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

TEST_IMPL(async_recv_peer_reset) {
  int pfd;
  tracker t;
  char rb[8];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 1);
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 0, h, rb, sizeof rb));
  peer_reset(pfd);
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_CONNECTION_RESET, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 0);
  tracker_settle(&t, 1, 50);
  ASSERT_OK(sock_close(h));
  tracker_free(&t);
  return 0;
}

/* Datagrams: an async send is one datagram; a pending receive gets one
 * datagram, cut to its buffer with SOCK_MESSAGE_SIZE. */
TEST_IMPL(async_udp_send_and_recv) {
  int port;
  char addr[SOCK_ADDRESS_MAX_LEN], rb[64], small[4], got[64];
  tracker t;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_connect(u, addr));
  tracker_init(&t, 3);

  ASSERT_OK(track_send(&t, 0, u, "datagram", 8));
  ASSERT_UEQ(t.ops[0].sent_now, 8);
  ASSERT(peer_readable(pfd, 5000));
  struct sockaddr_storage from;
  socklen_t fl = sizeof from;
  ASSERT_EQ(recvfrom(pfd, got, sizeof got, 0, (struct sockaddr *)&from, &fl), 8);
  ASSERT(memcmp(got, "datagram", 8) == 0);

  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, u, rb, sizeof rb));
  ASSERT_EQ(sendto(pfd, "0123456789", 10, 0, (struct sockaddr *)&from, fl), 10);
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 10);
  ASSERT(memcmp(rb, "0123456789", 10) == 0);

  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 2, u, small, sizeof small));
  ASSERT_EQ(sendto(pfd, "abcdefgh", 8, 0, (struct sockaddr *)&from, fl), 8);
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, t.ops[2].status);
  ASSERT_UEQ(t.ops[2].bytes, sizeof small);
  ASSERT(memcmp(small, "abcd", 4) == 0);
  tracker_settle(&t, 2, 50);
  ASSERT_OK(sock_close(u));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* An untimed blocking sock_recv on a connected stream waits inside recv(2),
 * as a raw blocking socket does: it makes the descriptor blocking (as
 * sock_fd documents). Every call that must not wait still returns at once
 * afterwards: non-blocking mode, receive and send timeouts, async sends
 * into a full buffer and async receives with nothing to read. (A call that
 * waited would hang the test until the runner's timeout.) */
TEST_IMPL(untimed_blocking_recv_then_calls_that_must_not_wait) {
  static uint8_t big[1 << 20];
  int pfd;
  tracker t;
  char buf[64], rb[64];
  size_t n = UNWRITTEN, sent;
  sock_status s = SOCK_OK;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 4096, &pfd); /* the peer never reads */
  int fd = handle_fd(h);
  ASSERT_SYS(send(pfd, "ping", 4, 0));
  recv_exact(h, buf, 4);
  ASSERT(memcmp(buf, "ping", 4) == 0);
  ASSERT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);

  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, 0);
  for (int i = 0; i < 1000 && s == SOCK_OK; i++) s = sock_send(h, big, sizeof big, 0, &sent);
  ASSERT_STATUS(SOCK_WOULD_BLOCK, s); /* the send buffer is full */
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 1));

  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 50));
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_recv(h, buf, sizeof buf, 0, &n));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 50));
  /* The full buffer can take more later (with a 1.5 s pause after the
   * fill, 4096 more bytes went in every time): each timed send either
   * fits at once or times out, and within a few the buffer is full again.
   * Neither may wait in the kernel (the test would hang). */
  for (int i = 0; i < 100 && (s = sock_send(h, big, 4096, 0, &sent)) == SOCK_OK; i++)
    ASSERT_UEQ(sent, 4096);
  ASSERT_STATUS(SOCK_TIMED_OUT, s);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 0));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_TIMEOUT_MS, 0));

  tracker_init(&t, 2);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, big, 4096));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 1, h, rb, sizeof rb));
  ASSERT_SYS(send(pfd, "pong", 4, 0));
  tracker_wait(&t, 1, 10000);
  ASSERT_UEQ(t.order[0], 1); /* the receive; the send is still stuck */
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UGE(t.ops[1].bytes, 1);
  ASSERT(memcmp(rb, "pong", t.ops[1].bytes) == 0);
  ASSERT_OK(sock_close(h));
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_OPERATION_ABORTED, t.ops[0].status);
  tracker_settle(&t, 2, 50);
  close(pfd);
  tracker_free(&t);
  return 0;
}
