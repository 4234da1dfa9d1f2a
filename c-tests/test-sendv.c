/* sock_sendv: many segments (more than IOV_MAX), partial writes in the
 * middle of the array, empty segments. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <sys/socket.h>
#include <unistd.h>

TEST_IMPL(sendv_2400_one_byte_segments) {
  enum { N = 2400 };
  static uint8_t bytes[N], got[N];
  static sock_buf segs[N];
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  for (size_t i = 0; i < N; i++) {
    bytes[i] = (uint8_t)((i * 7) & 0xff);
    segs[i].data = &bytes[i];
    segs[i].len = 1;
  }
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, segs, N, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, N);
  peer_read_exact(pfd, got, N);
  for (size_t i = 0; i < N; i++)
    ASSERT_MSG(got[i] == bytes[i], "byte %zu: got %u, want %u", i, got[i], bytes[i]);
  ASSERT_OK(sock_close(h));
  ASSERT(!peer_readable(pfd, 0) || recv(pfd, got, 1, 0) == 0); /* nothing extra */
  close(pfd);
  return 0;
}

/* 3000 segments of 4 KiB against a slow reader, so that the kernel takes a
 * part of the array, then a part of a segment, many times over. The
 * segments lie in memory in REVERSE order of the stream, so a library that
 * treated them as one contiguous block would scramble the pattern. */
TEST_IMPL(sendv_slow_reader_partial_writes) {
  enum { N = 3000, SEG = 4096 };
  const size_t len = (size_t)N * SEG;
  uint8_t *mem = malloc(len);
  sock_buf *segs = malloc(N * sizeof *segs);
  ASSERT(mem && segs);
  for (size_t i = 0; i < N; i++) {
    uint8_t *slot = mem + (size_t)(N - 1 - i) * SEG;
    pattern_fill(slot, SEG, (uint64_t)i * SEG);
    segs[i].data = slot;
    segs[i].len = SEG;
  }
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, 16384));
  reader_t r = {0};
  r.fd = pfd;
  r.expect = len;
  r.chunk = 16384;
  r.sleep_every = 32;
  r.check_pattern = 1;
  reader_start(&r);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, segs, N, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, len);
  reader_join(&r);
  ASSERT_EQ(r.err, 0);
  ASSERT_UEQ(r.got, len);
  ASSERT_MSG(r.mismatch == -1, "stream corrupt at offset %lld (segment %lld)", r.mismatch,
             r.mismatch / SEG);
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(segs);
  free(mem);
  return 0;
}

/* Segments of uneven sizes, empty ones among them, across IOV_MAX. */
TEST_IMPL(sendv_mixed_and_empty_segments) {
  enum { N = 1500 };
  sock_buf *segs = malloc(N * sizeof *segs);
  size_t total = 0;
  for (size_t i = 0; i < N; i++) total += i % 5 == 0 ? 0 : i % 97;
  uint8_t *mem = pattern_alloc(total);
  size_t off = 0;
  for (size_t i = 0; i < N; i++) {
    size_t l = i % 5 == 0 ? 0 : i % 97;
    segs[i].data = mem + off;
    segs[i].len = l;
    off += l;
  }
  int pfd;
  sock_handle h = connect_pair(SOCK_FAMILY_UNIX, 0, &pfd);
  size_t sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, segs, N, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, total);
  ASSERT_OK(sock_close(h));
  long long mm;
  ASSERT_UEQ(peer_drain(pfd, SIZE_MAX, 0, &mm), total);
  ASSERT_EQ(mm, -1);
  close(pfd);

  /* nothing at all: count 0 (bufs may then be NULL) and all-empty segments */
  h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, NULL, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, segs, 0, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  sock_buf empty[3] = {{mem, 0}, {mem, 0}, {mem, 0}};
  sent = UNWRITTEN;
  ASSERT_OK(sock_sendv(h, empty, 3, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  /* NULL array with a count is a fault, nothing sent */
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_sendv(h, NULL, 2, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  /* a segment with NULL data and a length is a fault, nothing sent */
  sock_buf holey[2] = {{mem, 4}, {NULL, 4}};
  sent = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_sendv(h, holey, 2, SOCK_MSG_NONE, &sent));
  ASSERT_UEQ(sent, 0);
  ASSERT(!peer_readable(pfd, 50));
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(mem);
  free(segs);
  return 0;
}
