/* Address text: parsing, families, and the caller's buffer protocol. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

TEST_IMPL(address_malformed) {
  static const char *bad[] = {
      "127.0.0.1",      /* no port */
      "1.2.3.4:99999",  /* port out of range */
      "1.2.3.4:-1",     /* negative port */
      "127.0.0.1:",     /* empty port */
      "127.0.0.1:80x",  /* junk after the port */
      "[::1",           /* unclosed bracket */
      "[::1]",          /* no port */
      "",               /* nothing */
      "localhost",      /* name without port */
  };
  sock_handle t4 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_handle t6 = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_STREAM);
  sock_handle u4 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t sent = UNWRITTEN;
    sock_status s = sock_bind(t4, bad[i]);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "bind(\"%s\") on INET: %s", bad[i], status_name(s));
    s = sock_bind(t6, bad[i]);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "bind(\"%s\") on INET6: %s", bad[i], status_name(s));
    s = sock_connect(t4, bad[i]);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "connect(\"%s\"): %s", bad[i], status_name(s));
    s = sock_send_to(u4, "x", 1, 0, bad[i], &sent);
    ASSERT_MSG(s == SOCK_INVALID_ARGUMENT, "send_to(\"%s\"): %s", bad[i], status_name(s));
    ASSERT_UEQ(sent, 0);
  }
  /* The sockets were left unharmed: they still bind. */
  ASSERT_OK(sock_bind(t4, "127.0.0.1:0"));
  ASSERT_OK(sock_bind(t6, "[::1]:0"));
  ASSERT_OK(sock_close(t4));
  ASSERT_OK(sock_close(t6));
  ASSERT_OK(sock_close(u4));
  return 0;
}

TEST_IMPL(address_family_mismatch) {
  char addr[SOCK_ADDRESS_MAX_LEN], want[SOCK_ADDRESS_MAX_LEN], buf[8];
  size_t sent = UNWRITTEN;
  sock_handle t4 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, sock_bind(t4, "[::1]:0"));
  ASSERT_STATUS(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, sock_connect(t4, "[::1]:9"));
  sock_handle u4 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_STATUS(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, sock_send_to(u4, "x", 1, 0, "[::1]:9", &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT_OK(sock_close(u4));

  /* An IPv4 literal on an INET6 socket is mapped to ::ffff:a.b.c.d. */
  sock_handle l6 = new_listener(SOCK_FAMILY_INET6, "127.0.0.1:0", addr);
  snprintf(want, sizeof want, "[::ffff:127.0.0.1]:%d", addr_port(addr));
  ASSERT_STR_EQ(addr, want);
  /* ... and an IPv4 client reaches it. */
  snprintf(addr, sizeof addr, "127.0.0.1:%d", addr_port(want));
  ASSERT_OK(sock_connect(t4, addr));
  sock_handle a;
  ASSERT_OK(sock_accept(l6, &a));
  ASSERT_OK(sock_send(t4, "v4", 2, 0, NULL));
  recv_exact(a, buf, 2);
  ASSERT(memcmp(buf, "v4", 2) == 0);
  ASSERT_OK(sock_close(a));
  ASSERT_OK(sock_close(l6));
  ASSERT_OK(sock_close(t4));
  return 0;
}

/* The buffer protocol of sock_local_address / sock_peer_address. */
static void check_buffer_protocol(sock_handle h, int peer) {
  sock_status (*fn)(sock_handle, char *, size_t, size_t *) =
      peer ? sock_peer_address : sock_local_address;
  char full[SOCK_ADDRESS_MAX_LEN], small[SOCK_ADDRESS_MAX_LEN];
  size_t len = UNWRITTEN, need;

  ASSERT_OK(fn(h, full, sizeof full, &len));
  need = strlen(full) + 1;
  ASSERT_UEQ(len, need); /* length includes the NUL */
  ASSERT_ULE(need, SOCK_ADDRESS_MAX_LEN);

  /* size query */
  len = UNWRITTEN;
  ASSERT_STATUS(SOCK_NO_BUFFER_SPACE, fn(h, NULL, 0, &len));
  ASSERT_UEQ(len, need);

  /* one byte short (the NUL does not fit), and much too short: nothing cut */
  for (size_t cap = need - 1;; cap = cap > 4 ? 4 : 1) {
    memset(small, 'Z', sizeof small);
    len = UNWRITTEN;
    ASSERT_STATUS(SOCK_NO_BUFFER_SPACE, fn(h, small, cap, &len));
    ASSERT_UEQ(len, need);
    for (size_t i = 0; i < sizeof small; i++)
      ASSERT_MSG(small[i] == 'Z', "buffer written at %zu despite NO_BUFFER_SPACE (cap %zu)", i, cap);
    if (cap == 1) break;
  }

  /* exactly enough */
  memset(small, 'Z', sizeof small);
  len = UNWRITTEN;
  ASSERT_OK(fn(h, small, need, &len));
  ASSERT_UEQ(len, need);
  ASSERT_STR_EQ(small, full);

  /* len may be NULL */
  memset(small, 'Z', sizeof small);
  ASSERT_OK(fn(h, small, sizeof small, NULL));
  ASSERT_STR_EQ(small, full);
  ASSERT_STATUS(SOCK_NO_BUFFER_SPACE, fn(h, small, 1, NULL));

  /* NULL buffer with a capacity is a fault */
  ASSERT_STATUS(SOCK_FAULT, fn(h, NULL, 16, &len));
}

TEST_IMPL(address_buffer_protocol) {
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  check_buffer_protocol(h, 0);
  check_buffer_protocol(h, 1);
  ASSERT_OK(sock_close(h));
  close(pfd);
  h = connect_pair(SOCK_FAMILY_INET6, 0, &pfd);
  check_buffer_protocol(h, 0);
  check_buffer_protocol(h, 1);
  ASSERT_OK(sock_close(h));
  close(pfd);
  return 0;
}

/* A long unix path still fits SOCK_ADDRESS_MAX_LEN and round-trips. */
TEST_IMPL(address_long_unix_path) {
  char path[108], addr[SOCK_ADDRESS_MAX_LEN], got[SOCK_ADDRESS_MAX_LEN];
  int n = snprintf(path, sizeof path, "/tmp/libsock-test-%ld-", (long)getpid());
  while (n < 104) path[n++] = 'p'; /* 104 chars + NUL: near sun_path's 108 */
  path[n] = '\0';
  unlink(path);
  snprintf(addr, sizeof addr, "unix:%s", path);
  sock_handle l = new_listener(SOCK_FAMILY_UNIX, addr, got);
  ASSERT_STR_EQ(got, addr);
  check_buffer_protocol(l, 0);
  ASSERT_OK(sock_close(l));
  ASSERT_SYS(unlink(path));
  return 0;
}

TEST_IMPL(address_unconnected_peer) {
  char buf[SOCK_ADDRESS_MAX_LEN];
  size_t len = UNWRITTEN;
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_peer_address(h, buf, sizeof buf, &len));
  ASSERT_OK(sock_bind(h, "127.0.0.1:0"));
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_peer_address(h, buf, sizeof buf, &len));
  ASSERT_OK(sock_close(h));
  return 0;
}
