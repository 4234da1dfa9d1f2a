/* Datagram sockets: connected and unconnected sends, sender addresses,
 * sizes (oversized, truncated, empty). */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* recvfrom on a POSIX peer with a 5 s deadline; returns the length and the
 * sender's port. */
static ssize_t peer_recvfrom(int fd, void *buf, size_t cap, int *from_port) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  ASSERT_MSG(peer_readable(fd, 5000), "no datagram within 5 s");
  ssize_t n = recvfrom(fd, buf, cap, MSG_TRUNC, (struct sockaddr *)&ss, &sl);
  ASSERT_SYS(n);
  if (from_port) {
    if (ss.ss_family == AF_INET) *from_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else *from_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  return n;
}

static void peer_sendto(int fd, const void *buf, size_t len, int af, int port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_addr = in6addr_loopback;
    sl = sizeof *a;
  }
  ASSERT_EQ(sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl), (ssize_t)len);
}

static sock_handle bound_udp(int32_t family, char *addr_out) {
  sock_handle h = new_socket(family, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(h, family == SOCK_FAMILY_INET ? "127.0.0.1:0" : "[::1]:0"));
  local_addr(h, addr_out);
  ASSERT_GT(addr_port(addr_out), 0);
  /* never hang a test on a lost datagram */
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  return h;
}

TEST_IMPL(udp_connected_send) {
  char addr[SOCK_ADDRESS_MAX_LEN], mine[SOCK_ADDRESS_MAX_LEN], buf[64];
  int port, from;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_connect(h, addr));
  peer_addr(h, buf);
  ASSERT_STR_EQ(buf, addr);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_send(h, "hello udp", 9, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 9);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, &from), 9);
  ASSERT(memcmp(buf, "hello udp", 9) == 0);
  local_addr(h, mine);
  ASSERT_EQ(from, addr_port(mine));
  /* and the answer comes back through sock_recv */
  ASSERT_OK(sock_set_option(h, SOCK_OPT_RECV_TIMEOUT_MS, 5000));
  peer_sendto(pfd, "back", 4, AF_INET, from);
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 4);
  ASSERT(memcmp(buf, "back", 4) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(udp_unconnected_send_needs_destination) {
  char addr[SOCK_ADDRESS_MAX_LEN];
  size_t sent = UNWRITTEN;
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_STATUS(SOCK_DESTINATION_ADDRESS_REQUIRED, sock_send(h, "x", 1, 0, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_close(h));
  h = bound_udp(SOCK_FAMILY_INET, addr); /* bound is not connected */
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_DESTINATION_ADDRESS_REQUIRED, sock_send(h, "x", 1, 0, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf b = {"x", 1};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_DESTINATION_ADDRESS_REQUIRED, sock_sendv(h, &b, 1, 0, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_close(h));
  return 0;
}

TEST_IMPL(udp_send_to_two_receivers) {
  char a1[SOCK_ADDRESS_MAX_LEN], a2[SOCK_ADDRESS_MAX_LEN], mine[SOCK_ADDRESS_MAX_LEN];
  char buf[16];
  int p1, p2, from;
  int f1 = peer_udp(AF_INET, &p1), f2 = peer_udp(AF_INET, &p2);
  addr_text(a1, sizeof a1, AF_INET, p1);
  addr_text(a2, sizeof a2, AF_INET, p2);
  /* never bound: the first send_to binds an ephemeral port */
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_send_to(h, "one", 3, SOCK_MSG_NONE, a1, &sent));
  ASSERT_UEQ(sent, 3);
  sent = UNWRITTEN;
  ASSERT_OK(sock_send_to(h, "second", 6, SOCK_MSG_NONE, a2, &sent));
  ASSERT_UEQ(sent, 6);
  ASSERT_OK(sock_send_to(h, "third", 5, SOCK_MSG_NONE, a1, NULL));
  local_addr(h, mine);
  ASSERT_GT(addr_port(mine), 0);

  ASSERT_EQ(peer_recvfrom(f1, buf, sizeof buf, &from), 3);
  ASSERT(memcmp(buf, "one", 3) == 0);
  ASSERT_EQ(from, addr_port(mine));
  ASSERT_EQ(peer_recvfrom(f1, buf, sizeof buf, &from), 5);
  ASSERT(memcmp(buf, "third", 5) == 0);
  ASSERT_EQ(peer_recvfrom(f2, buf, sizeof buf, &from), 6);
  ASSERT(memcmp(buf, "second", 6) == 0);
  ASSERT_EQ(from, addr_port(mine));
  ASSERT(!peer_readable(f2, 50));

  /* send_to also works on a connected datagram socket's own peer */
  ASSERT_OK(sock_connect(h, a2));
  ASSERT_OK(sock_send_to(h, "via", 3, SOCK_MSG_NONE, a2, &sent));
  ASSERT_EQ(peer_recvfrom(f2, buf, sizeof buf, &from), 3);
  ASSERT_OK(sock_close(h));
  close(f1);
  close(f2);
  return 0;
}

static void recv_from_reports_sender(int32_t family) {
  char ra[SOCK_ADDRESS_MAX_LEN], sa[SOCK_ADDRESS_MAX_LEN], from[SOCK_ADDRESS_MAX_LEN];
  char buf[32];
  sock_handle rx = bound_udp(family, ra);
  sock_handle tx = bound_udp(family, sa);
  ASSERT_OK(sock_send_to(tx, "from tx", 7, SOCK_MSG_NONE, ra, NULL));
  size_t n = UNWRITTEN;
  memset(from, 'Z', sizeof from);
  ASSERT_OK(sock_recv_from(rx, buf, sizeof buf, SOCK_MSG_NONE, from, sizeof from, &n));
  ASSERT_UEQ(n, 7);
  ASSERT(memcmp(buf, "from tx", 7) == 0);
  ASSERT_STR_EQ(from, sa);
  /* address may be NULL */
  ASSERT_OK(sock_send_to(tx, "again", 5, SOCK_MSG_NONE, ra, NULL));
  n = UNWRITTEN;
  ASSERT_OK(sock_recv_from(rx, buf, sizeof buf, SOCK_MSG_NONE, NULL, 0, &n));
  ASSERT_UEQ(n, 5);
  ASSERT(memcmp(buf, "again", 5) == 0);
  /* and a reply to the reported address reaches the sender */
  ASSERT_OK(sock_send_to(rx, "reply", 5, SOCK_MSG_NONE, from, NULL));
  n = UNWRITTEN;
  ASSERT_OK(sock_recv_from(tx, buf, sizeof buf, SOCK_MSG_NONE, from, sizeof from, &n));
  ASSERT_UEQ(n, 5);
  ASSERT(memcmp(buf, "reply", 5) == 0);
  ASSERT_STR_EQ(from, ra);
  ASSERT_OK(sock_close(rx));
  ASSERT_OK(sock_close(tx));
}

TEST_IMPL(udp_recv_from_reports_sender_ipv4) {
  recv_from_reports_sender(SOCK_FAMILY_INET);
  return 0;
}

TEST_IMPL(udp_recv_from_reports_sender_ipv6) {
  recv_from_reports_sender(SOCK_FAMILY_INET6);
  return 0;
}

TEST_IMPL(udp_oversized_message_size) {
  enum { BIG = 70000 };
  char addr[SOCK_ADDRESS_MAX_LEN];
  int port;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  uint8_t *big = pattern_alloc(BIG);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  size_t sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_send_to(h, big, BIG, SOCK_MSG_NONE, addr, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_connect(h, addr));
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_send(h, big, BIG, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf two[2] = {{big, BIG / 2}, {big + BIG / 2, BIG / 2}};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_sendv(h, two, 2, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50)); /* nothing was sent */
  /* the socket still works */
  ASSERT_OK(sock_send(h, big, 1000, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 1000);
  uint8_t got[1000];
  ASSERT_EQ(peer_recvfrom(pfd, got, sizeof got, NULL), 1000);
  ASSERT_EQ(pattern_mismatch(got, 1000, 0), -1);
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(big);
  return 0;
}

TEST_IMPL(udp_truncated_recv_message_size) {
  char addr[SOCK_ADDRESS_MAX_LEN], from[SOCK_ADDRESS_MAX_LEN];
  uint8_t dgram[100], buf[100];
  int port;
  pattern_fill(dgram, sizeof dgram, 0);
  sock_handle h = bound_udp(SOCK_FAMILY_INET, addr);
  int pfd = peer_udp(AF_INET, &port);
  peer_sendto(pfd, dgram, 100, AF_INET, addr_port(addr));
  peer_sendto(pfd, "next", 4, AF_INET, addr_port(addr));
  peer_sendto(pfd, dgram, 100, AF_INET, addr_port(addr));

  size_t n = UNWRITTEN;
  memset(buf, 0, sizeof buf);
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_recv(h, buf, 10, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 10);
  ASSERT(memcmp(buf, dgram, 10) == 0);
  ASSERT_EQ(buf[10], 0); /* not a byte past cap */
  /* the rest of that datagram is gone: the next one follows */
  n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 4);
  ASSERT(memcmp(buf, "next", 4) == 0);
  /* recv_from truncates the same way */
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_recv_from(h, buf, 33, SOCK_MSG_NONE, from, sizeof from, &n));
  ASSERT_UEQ(n, 33);
  ASSERT(memcmp(buf, dgram, 33) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(udp_zero_length_datagram_send) {
  char addr[SOCK_ADDRESS_MAX_LEN], buf[8];
  int port;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_send_to(h, buf, 0, SOCK_MSG_NONE, addr, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_send_to(h, "x", 1, SOCK_MSG_NONE, addr, &sent));
  /* the peer sees an empty datagram first (recvfrom returns 0), then "x" */
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 0);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 1);
  ASSERT_EQ(buf[0], 'x');
  /* the same through a connected sock_send and an empty sock_sendv */
  ASSERT_OK(sock_connect(h, addr));
  sent = UNWRITTEN;
  ASSERT_OK(sock_send(h, buf, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, NULL, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_send(h, "y", 1, SOCK_MSG_NONE, &sent));
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 0);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 0);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 1);
  ASSERT_EQ(buf[0], 'y');
  /* NULL buffer is a fault even for an empty datagram */
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send(h, NULL, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(udp_zero_length_datagram_recv) {
  char addr[SOCK_ADDRESS_MAX_LEN], from[SOCK_ADDRESS_MAX_LEN], buf[8];
  int port;
  sock_handle h = bound_udp(SOCK_FAMILY_INET, addr);
  int pfd = peer_udp(AF_INET, &port);
  peer_sendto(pfd, "", 0, AF_INET, addr_port(addr));
  peer_sendto(pfd, "x", 1, AF_INET, addr_port(addr));
  peer_sendto(pfd, "", 0, AF_INET, addr_port(addr));
  size_t n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  ASSERT_OK(sock_recv(h, buf, sizeof buf, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 1);
  ASSERT_EQ(buf[0], 'x');
  n = UNWRITTEN;
  ASSERT_OK(sock_recv_from(h, buf, sizeof buf, SOCK_MSG_NONE, from, sizeof from, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_EQ(addr_port(from), port);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(udp_recv_from_small_address_cap) {
  char addr[SOCK_ADDRESS_MAX_LEN], from[SOCK_ADDRESS_MAX_LEN], buf[8];
  int port;
  sock_handle h = bound_udp(SOCK_FAMILY_INET6, addr);
  int pfd = peer_udp(AF_INET6, &port);
  peer_sendto(pfd, "keep", 4, AF_INET6, addr_port(addr));
  ASSERT(peer_readable(handle_fd(h), 5000));
  size_t n = UNWRITTEN;
  memset(from, 'Z', sizeof from);
  ASSERT_STATUS(SOCK_NO_BUFFER_SPACE, sock_recv_from(h, buf, sizeof buf, SOCK_MSG_NONE, from, 8, &n));
  ASSERT_UEQ(n, 0);
  ASSERT_EQ(from[0], 'Z');
  /* nothing was received: the datagram is still there */
  n = UNWRITTEN;
  ASSERT_OK(sock_recv_from(h, buf, sizeof buf, SOCK_MSG_NONE, from, sizeof from, &n));
  ASSERT_UEQ(n, 4);
  ASSERT(memcmp(buf, "keep", 4) == 0);
  ASSERT_EQ(addr_port(from), port);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

/* An INET6 datagram socket reaches an IPv4 peer through a mapped address. */
TEST_IMPL(udp_ipv4_literal_on_inet6) {
  char addr[SOCK_ADDRESS_MAX_LEN], buf[8];
  int port;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_send_to(h, "map", 3, SOCK_MSG_NONE, addr, NULL));
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 3);
  ASSERT(memcmp(buf, "map", 3) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

TEST_IMPL(udp_sendv_gathers_one_datagram) {
  enum { MANY = 1025 }; /* IOV_MAX + 1 */
  char addr[SOCK_ADDRESS_MAX_LEN], buf[2048];
  int port;
  int pfd = peer_udp(AF_INET, &port);
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_connect(h, addr));
  sock_buf three[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, three, 3, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 5);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), 5);
  ASSERT(memcmp(buf, "abcde", 5) == 0);

  /* a datagram cannot be split: more segments than IOV_MAX is MESSAGE_SIZE */
  static sock_buf segs[MANY];
  static uint8_t bytes[MANY];
  for (size_t i = 0; i < MANY; i++) {
    bytes[i] = (uint8_t)i;
    segs[i].data = &bytes[i];
    segs[i].len = 1;
  }
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_MESSAGE_SIZE, sock_sendv(h, segs, MANY, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  /* IOV_MAX segments exactly is fine */
  sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, segs, MANY - 1, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, MANY - 1);
  ASSERT_EQ(peer_recvfrom(pfd, buf, sizeof buf, NULL), MANY - 1);
  ASSERT(memcmp(buf, bytes, MANY - 1) == 0);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}
