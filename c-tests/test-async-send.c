/* sock_send_async / sock_sendv_async: the three-way return, pending sends
 * to slow readers, ordering of many queued operations, the options that
 * shape the async path, bad arguments, and blocking sends behind async ones. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <sys/socket.h>
#include <unistd.h>

static int64_t pending_bytes(sock_handle h) {
  int64_t v = -12345;
  ASSERT_OK(sock_get_option(h, SOCK_OPT_PENDING_SEND_BYTES, &v));
  ASSERT_GE(v, 0);
  return v;
}

/* The stream is closed by the caller and must end here: EOF, nothing more. */
static void peer_expect_eof(int pfd) {
  long long mm;
  ASSERT_UEQ(peer_drain(pfd, 1, 0, &mm), 0);
}

/* 1. A small send to an idle socket finishes inside the call: SOCK_OK,
 * *sent_now == len, and the callback never runs. */
TEST_IMPL(async_send_inline_no_callback) {
  int pfd;
  tracker t;
  uint8_t msg[150];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 2);
  pattern_fill(msg, sizeof msg, 0);

  ASSERT_OK(track_send(&t, 0, h, msg, 100));
  ASSERT_UEQ(t.ops[0].sent_now, 100);
  /* sent_now may be NULL */
  ASSERT_OK(sock_send_async(h, msg + 100, 50, SOCK_MSG_NONE, track_cb, tracker_op(&t, 1, h, 50),
                            NULL));
  ASSERT_EQ(pending_bytes(h), 0);
  peer_expect(pfd, msg, sizeof msg, "inline sends");
  tracker_settle(&t, 0, 300); /* no callback, not even late */
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* 2. A send larger than the buffers, to a slow reader: SOCK_IO_PENDING, then
 * one callback with SOCK_OK and the total, off the submitting thread. */
TEST_IMPL(async_send_pending_slow_reader) {
  const size_t len = 16 * MiB;
  int pfd;
  tracker t;
  sock_handle h = small_pair(65536, &pfd);
  uint8_t *buf = pattern_alloc(len);
  tracker_init(&t, 1);

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len));
  size_t now = t.ops[0].sent_now;
  ASSERT_ULT(now, len);
  /* the reader has not started: the rest cannot have left yet */
  int64_t p = pending_bytes(h);
  ASSERT_GT(p, 0);
  ASSERT_ULE((size_t)p, len - now);

  reader_t r = {0};
  r.fd = pfd;
  r.expect = len;
  r.chunk = 16384;
  r.sleep_every = 8;
  r.check_pattern = 1;
  reader_start(&r);
  tracker_wait(&t, 1, 30000);
  reader_join(&r);
  ASSERT_MSG(r.err == 0, "reader: %s", strerror(r.err));
  ASSERT_UEQ(r.got, len);
  ASSERT_EQ(r.mismatch, -1);
  ASSERT_UEQ(r.hash, fnv1a(FNV1A_INIT, buf, len));

  op_t *op = &t.ops[0];
  ASSERT_STATUS(SOCK_OK, op->status);
  ASSERT_UEQ(op->bytes, len); /* the total, inline part included */
  ASSERT_MSG(!pthread_equal(op->thread, pthread_self()),
             "callback ran on the submitting thread (default engine has its own)");
  ASSERT_EQ(pending_bytes(h), 0);
  tracker_settle(&t, 1, 100);
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* 3. Three outstanding 8 MiB sends: the stream is their concatenation, in
 * order (one pattern runs through all three), callbacks in order. */
TEST_IMPL(async_send_three_8mib_in_order) {
  const size_t len = 8 * MiB;
  int pfd;
  tracker t;
  sock_handle h = small_pair(65536, &pfd);
  uint8_t *buf = pattern_alloc(3 * len);
  tracker_init(&t, 3);

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len));
  for (size_t i = 1; i < 3; i++) {
    ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, i, h, buf + i * len, len));
    /* queued behind a pending send: any byte sent now would interleave */
    ASSERT_UEQ(t.ops[i].sent_now, 0);
  }
  reader_t r = {0};
  r.fd = pfd;
  r.expect = 3 * len;
  r.check_pattern = 1;
  reader_start(&r);
  tracker_wait(&t, 3, 30000);
  reader_join(&r);
  ASSERT_MSG(r.err == 0, "reader: %s", strerror(r.err));
  ASSERT_UEQ(r.got, 3 * len);
  ASSERT_MSG(r.mismatch == -1, "stream differs at offset %lld (op %lld)", r.mismatch,
             r.mismatch / (long long)len);
  for (size_t i = 0; i < 3; i++) {
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, len);
    ASSERT_UEQ(t.order[i], i);
  }
  tracker_settle(&t, 3, 100);
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* 4. 10,000 queued 100-byte operations behind a large one: each record
 * carries its index; records arrive in order, callbacks in order, each once. */
enum { NREC = 10000, RECLEN = 100 };

static uint8_t rec_byte(uint32_t k, size_t j) {
  return (uint8_t)(pattern_byte((uint64_t)k * RECLEN + j) ^ (k * 7u));
}

TEST_IMPL(async_send_10000_queued_ops_in_order) {
  const size_t big = 4 * MiB;
  int pfd;
  tracker t;
  sock_handle h = small_pair(65536, &pfd);
  uint8_t *first = pattern_alloc(big);
  uint8_t *recs = malloc((size_t)NREC * RECLEN);
  ASSERT(recs != NULL);
  for (uint32_t k = 0; k < NREC; k++) {
    uint8_t *r = recs + (size_t)k * RECLEN;
    for (size_t j = 4; j < RECLEN; j++) r[j] = rec_byte(k, j);
    memcpy(r, &k, 4);
  }
  tracker_init(&t, NREC + 1);

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, first, big));
  for (uint32_t k = 0; k < NREC; k++) {
    sock_status s = track_send(&t, k + 1, h, recs + (size_t)k * RECLEN, RECLEN);
    ASSERT_MSG(s == SOCK_IO_PENDING, "record %u: %s", k, status_name(s));
    ASSERT_UEQ(t.ops[k + 1].sent_now, 0);
  }
  collector_t c = {0};
  c.fd = pfd;
  c.expect = big + (size_t)NREC * RECLEN;
  collector_start(&c);
  tracker_wait(&t, NREC + 1, 30000);
  collector_join(&c);
  ASSERT_UEQ(c.got, c.expect);
  long long m = pattern_mismatch(c.buf, big, 0);
  ASSERT_MSG(m == -1, "large op differs at offset %lld", m);
  for (uint32_t k = 0; k < NREC; k++) {
    const uint8_t *r = c.buf + big + (size_t)k * RECLEN;
    uint32_t idx;
    memcpy(&idx, r, 4);
    ASSERT_MSG(idx == k, "record %u arrived carrying index %u: out of order", k, idx);
    for (size_t j = 4; j < RECLEN; j++)
      ASSERT_MSG(r[j] == rec_byte(k, j), "record %u: byte %zu corrupt", k, j);
  }
  tracker_settle(&t, NREC + 1, 100);
  for (size_t i = 0; i <= NREC; i++) {
    op_t *op = &t.ops[i];
    ASSERT_MSG(t.order[i] == i, "callback %zu was op %zu's: callbacks out of order", i,
               t.order[i]);
    ASSERT_MSG(op->status == SOCK_OK && op->bytes == op->len, "op %zu: %s with %zu of %zu bytes",
               i, status_name(op->status), op->bytes, op->len);
  }
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  collector_free(&c);
  free(first);
  free(recs);
  tracker_free(&t);
  return 0;
}

/* 9. A NULL callback is SOCK_FAULT: nothing sent, nothing queued. */
TEST_IMPL(async_null_callback_faults) {
  int pfd;
  char c;
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  size_t n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_send_async(h, "nothing", 7, SOCK_MSG_NONE, NULL, NULL, &n));
  ASSERT_UEQ(n, 0);
  sock_buf b = {"nothing", 7};
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_sendv_async(h, &b, 1, SOCK_MSG_NONE, NULL, NULL, &n));
  ASSERT_UEQ(n, 0);
  char rb[8];
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_FAULT, sock_recv_async(h, rb, sizeof rb, SOCK_MSG_NONE, NULL, NULL, &n));
  ASSERT_UEQ(n, 0);
  ASSERT(!peer_readable(pfd, 200)); /* the peer got nothing */
  /* and the stream is intact: the next byte is the first to arrive */
  tracker t;
  tracker_init(&t, 1);
  ASSERT_OK(track_send(&t, 0, h, "Q", 1));
  peer_read_exact(pfd, &c, 1);
  ASSERT_EQ(c, 'Q');
  /* the recv_async above consumed nothing either */
  ASSERT_SYS(send(pfd, "R", 1, 0));
  recv_exact(h, &c, 1);
  ASSERT_EQ(c, 'R');
  tracker_settle(&t, 0, 100);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* Every bad argument fails synchronously, writes *sent_now = 0, never calls
 * back, and queues nothing: the stream holds only the good operations. */
static tracker g_bad;

static void expect_send_fails(sock_status want, sock_handle h, const void *buf, size_t len,
                              int32_t flags, const char *what) {
  size_t n = UNWRITTEN;
  sock_status s = sock_send_async(h, buf, len, flags, track_cb, &g_bad.ops[0], &n);
  ASSERT_MSG(s == want, "send_async %s: expected %s, got %s", what, status_name(want),
             status_name(s));
  ASSERT_MSG(n == 0, "send_async %s: *sent_now %zu", what, n);
}

static void expect_sendv_fails(sock_status want, sock_handle h, const sock_buf *bufs,
                               size_t count, int32_t flags, const char *what) {
  size_t n = UNWRITTEN;
  sock_status s = sock_sendv_async(h, bufs, count, flags, track_cb, &g_bad.ops[0], &n);
  ASSERT_MSG(s == want, "sendv_async %s: expected %s, got %s", what, status_name(want),
             status_name(s));
  ASSERT_MSG(n == 0, "sendv_async %s: *sent_now %zu", what, n);
}

static void expect_recv_fails(sock_status want, sock_handle h, void *buf, size_t cap,
                              int32_t flags, const char *what) {
  size_t n = UNWRITTEN;
  sock_status s = sock_recv_async(h, buf, cap, flags, track_cb, &g_bad.ops[0], &n);
  ASSERT_MSG(s == want, "recv_async %s: expected %s, got %s", what, status_name(want),
             status_name(s));
  ASSERT_MSG(n == 0, "recv_async %s: *received_now %zu", what, n);
}

TEST_IMPL(async_bad_arguments) {
  static const int32_t bad_send_flags[] = {SOCK_MSG_PEEK, 8, 16, 0x100, -1, INT32_MIN,
                                           SOCK_MSG_OOB | 8};
  static const int32_t bad_recv_flags[] = {SOCK_MSG_DONT_ROUTE, 8, 0x100, -1, INT32_MIN,
                                           SOCK_MSG_PEEK | 8};
  const size_t huge = SIZE_MAX / 2 + 1;
  const size_t big = 2 * MiB;
  char addr[SOCK_ADDRESS_MAX_LEN], rb[8];
  int pfd;
  tracker t;
  tracker_init(&g_bad, 1);
  tracker_init(&t, 2);
  sock_handle h = small_pair(16384, &pfd);
  uint8_t *buf = pattern_alloc(big + 16);

  /* a pending send: the bad calls below must not slip in behind it */
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, big));
  tracker_op(&g_bad, 0, h, 0);

  expect_send_fails(SOCK_FAULT, h, NULL, 5, 0, "buf NULL");
  expect_send_fails(SOCK_FAULT, h, NULL, 0, 0, "buf NULL, len 0");
  expect_send_fails(SOCK_INVALID_ARGUMENT, h, buf, huge, 0, "len > PTRDIFF_MAX");
  for (size_t i = 0; i < sizeof bad_send_flags / sizeof bad_send_flags[0]; i++) {
    char what[64];
    snprintf(what, sizeof what, "flags 0x%x", (unsigned)bad_send_flags[i]);
    expect_send_fails(SOCK_INVALID_ARGUMENT, h, buf, 5, bad_send_flags[i], what);
    sock_buf b = {buf, 5};
    expect_sendv_fails(SOCK_INVALID_ARGUMENT, h, &b, 1, bad_send_flags[i], what);
  }
  expect_sendv_fails(SOCK_FAULT, h, NULL, 1, 0, "bufs NULL, count 1");
  sock_buf nulldata[2] = {{buf, 3}, {NULL, 4}};
  expect_sendv_fails(SOCK_FAULT, h, nulldata, 2, 0, "segment NULL with len 4");
  sock_buf hugev[2] = {{buf, huge}, {buf, huge}};
  expect_sendv_fails(SOCK_INVALID_ARGUMENT, h, hugev, 2, 0, "lengths past PTRDIFF_MAX");

  expect_recv_fails(SOCK_FAULT, h, NULL, 8, 0, "buf NULL");
  expect_recv_fails(SOCK_INVALID_ARGUMENT, h, rb, huge, 0, "cap > PTRDIFF_MAX");
  for (size_t i = 0; i < sizeof bad_recv_flags / sizeof bad_recv_flags[0]; i++) {
    char what[64];
    snprintf(what, sizeof what, "flags 0x%x", (unsigned)bad_recv_flags[i]);
    expect_recv_fails(SOCK_INVALID_ARGUMENT, h, rb, sizeof rb, bad_recv_flags[i], what);
  }

  /* handles: 0, never issued, closed, and sockets that cannot send */
  sock_buf one = {"x", 1};
  sock_handle stale = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_close(stale));
  sock_handle bad_handles[] = {SOCK_INVALID_HANDLE, NEVER_ISSUED_HANDLE, stale};
  for (size_t i = 0; i < 3; i++) {
    expect_send_fails(SOCK_NOT_SOCKET, bad_handles[i], "x", 1, 0, "bad handle");
    expect_sendv_fails(SOCK_NOT_SOCKET, bad_handles[i], &one, 1, 0, "bad handle");
    expect_recv_fails(SOCK_NOT_SOCKET, bad_handles[i], rb, sizeof rb, 0, "bad handle");
    ASSERT_STATUS(SOCK_NOT_SOCKET, sock_cancel_sends(bad_handles[i]));
  }
  sock_handle unconnected = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  expect_send_fails(SOCK_NOT_CONNECTED, unconnected, "x", 1, 0, "unconnected stream");
  expect_sendv_fails(SOCK_NOT_CONNECTED, unconnected, &one, 1, 0, "unconnected stream");
  expect_recv_fails(SOCK_NOT_CONNECTED, unconnected, rb, sizeof rb, 0, "unconnected stream");
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", addr);
  expect_send_fails(SOCK_NOT_CONNECTED, l, "x", 1, 0, "listener");
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  expect_send_fails(SOCK_DESTINATION_ADDRESS_REQUIRED, u, "x", 1, 0, "unconnected datagram");

  /* the good operation after all that follows the first directly */
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, buf + big, 16));
  collector_t c = {0};
  c.fd = pfd;
  collector_start(&c);
  tracker_wait(&t, 2, 20000);
  ASSERT_OK(sock_close(h));
  collector_join(&c);
  ASSERT_MSG(c.got == big + 16, "peer got %zu bytes, expected %zu: a failed call queued bytes",
             c.got, big + 16);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  for (size_t i = 0; i < 2; i++) {
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, t.ops[i].len);
  }
  tracker_settle(&t, 2, 50);
  tracker_settle(&g_bad, 0, 0); /* no failed call ever called back */
  ASSERT_OK(sock_close(unconnected));
  ASSERT_OK(sock_close(l));
  ASSERT_OK(sock_close(u));
  close(pfd);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
  tracker_free(&g_bad);
  return 0;
}

/* sendv_async with thousands of small (and empty) segments behind a large
 * one: the sock_buf array is overwritten and freed right after the call. */
TEST_IMPL(async_sendv_many_segments_array_reused) {
  const size_t nseg = 3001;
  int pfd;
  tracker t;
  sock_handle h = small_pair(65536, &pfd);
  size_t total = 2 * MiB;
  for (size_t i = 1; i < nseg; i++) total += (i * 7) % 23; /* 0..22, some empty */
  uint8_t *data = pattern_alloc(total + 64);
  tracker_init(&t, 2);

  sock_buf *segs = malloc(nseg * sizeof *segs);
  ASSERT(segs != NULL);
  segs[0].data = data;
  segs[0].len = 2 * MiB;
  size_t off = 2 * MiB;
  for (size_t i = 1; i < nseg; i++) {
    segs[i].len = (i * 7) % 23;
    segs[i].data = segs[i].len ? data + off : NULL;
    off += segs[i].len;
  }
  ASSERT_UEQ(off, total);
  op_t *op = tracker_op(&t, 0, h, total);
  size_t now = UNWRITTEN;
  ASSERT_STATUS(SOCK_IO_PENDING,
                sock_sendv_async(h, segs, nseg, SOCK_MSG_NONE, track_cb, op, &now));
  ASSERT_ULT(now, total);
  /* the array is the caller's again at once */
  static const uint8_t junk[64] = {0};
  for (size_t i = 0; i < nseg; i++) {
    segs[i].data = junk;
    segs[i].len = sizeof junk;
  }
  free(segs);

  /* a small gather list behind it */
  sock_buf tail[3] = {{data + total, 10}, {NULL, 0}, {data + total + 10, 54}};
  op_t *op2 = tracker_op(&t, 1, h, 64);
  ASSERT_STATUS(SOCK_IO_PENDING, sock_sendv_async(h, tail, 3, SOCK_MSG_NONE, track_cb, op2, &now));
  ASSERT_UEQ(now, 0);
  memset(tail, 0, sizeof tail);

  collector_t c = {0};
  c.fd = pfd;
  c.expect = total + 64;
  collector_start(&c);
  tracker_wait(&t, 2, 20000);
  collector_join(&c);
  ASSERT_UEQ(c.got, total + 64);
  long long m = pattern_mismatch(c.buf, c.got, 0);
  ASSERT_MSG(m == -1, "stream differs at offset %lld", m);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, total);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 64);
  ASSERT_UEQ(t.order[0], 0);

  /* idle socket: a gather send completes inline */
  sock_buf small[2] = {{"ab", 2}, {"cde", 3}};
  now = UNWRITTEN;
  ASSERT_OK(sock_sendv_async(h, small, 2, SOCK_MSG_NONE, track_cb, op, &now));
  ASSERT_UEQ(now, 5);
  peer_expect(pfd, "abcde", 5, "inline sendv_async");
  tracker_settle(&t, 2, 100);
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  collector_free(&c);
  free(data);
  tracker_free(&t);
  return 0;
}

/* ASYNC_INLINE_COMPLETION = 0: what would finish inline reports through
 * its callback instead (SOCK_IO_PENDING), for sends and receives. */
TEST_IMPL(async_inline_completion_off) {
  int pfd;
  int64_t v = -1;
  tracker t;
  char rb[16];
  sock_handle h = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  tracker_init(&t, 4);
  ASSERT_OK(sock_get_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, &v));
  ASSERT_EQ(v, 1);
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 2));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, -1));
  ASSERT_OK(sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  ASSERT_OK(sock_get_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, &v));
  ASSERT_EQ(v, 0);

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, "hello", 5));
  tracker_wait(&t, 1, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, 5);
  ASSERT_MSG(!pthread_equal(t.ops[0].thread, pthread_self()), "callback on the submitter");
  peer_expect(pfd, "hello", 5, "inline-off send");

  sock_buf b[2] = {{"wor", 3}, {"ld", 2}};
  op_t *op = tracker_op(&t, 1, h, 5);
  ASSERT_STATUS(SOCK_IO_PENDING, sock_sendv_async(h, b, 2, SOCK_MSG_NONE, track_cb, op, NULL));
  tracker_wait(&t, 2, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  ASSERT_UEQ(t.ops[1].bytes, 5);
  peer_expect(pfd, "world", 5, "inline-off sendv");

  /* data already there: the receive still reports through the callback */
  ASSERT_SYS(send(pfd, "ping", 4, 0));
  int hfd = handle_fd(h);
  ASSERT(peer_readable(hfd, 5000));
  ASSERT_STATUS(SOCK_IO_PENDING, track_recv(&t, 2, h, rb, sizeof rb));
  tracker_wait(&t, 3, 10000);
  ASSERT_STATUS(SOCK_OK, t.ops[2].status);
  ASSERT_UGE(t.ops[2].bytes, 1);
  ASSERT_ULE(t.ops[2].bytes, 4);
  ASSERT(memcmp(rb, "ping", t.ops[2].bytes) == 0);

  /* back on: inline again */
  ASSERT_OK(sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 1));
  ASSERT_OK(track_send(&t, 3, h, "!", 1));
  peer_expect(pfd, "!", 1, "inline-on send");
  tracker_settle(&t, 3, 100);
  ASSERT_OK(sock_close(h));
  close(pfd);
  tracker_free(&t);
  return 0;
}

/* PENDING_SEND_BYTES: read-only; 0 idle; what is queued while pending; 0
 * after completion. */
TEST_IMPL(async_pending_send_bytes) {
  int pfd;
  tracker t;
  sock_handle h = small_pair(16384, &pfd);
  const size_t len0 = 4 * MiB, len1 = 1 * MiB;
  uint8_t *buf = pattern_alloc(len0 + len1);
  tracker_init(&t, 2);
  ASSERT_EQ(pending_bytes(h), 0);
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(h, SOCK_OPT_PENDING_SEND_BYTES, 0));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_set_option(h, SOCK_OPT_PENDING_SEND_BYTES, 5));

  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, len0));
  int64_t p0 = pending_bytes(h);
  ASSERT_GT(p0, 0);
  ASSERT_ULE((size_t)p0, len0 - t.ops[0].sent_now);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, buf + len0, len1));
  int64_t p1 = pending_bytes(h);
  /* all of op 1 is queued; op 0 cannot have finished (nobody reads) */
  ASSERT_UGT((size_t)p1, len1);
  ASSERT_ULE((size_t)p1, len0 + len1 - t.ops[0].sent_now);

  reader_t r = {0};
  r.fd = pfd;
  r.expect = len0 + len1;
  r.check_pattern = 1;
  reader_start(&r);
  tracker_wait(&t, 2, 20000);
  reader_join(&r);
  ASSERT_UEQ(r.got, len0 + len1);
  ASSERT_EQ(r.mismatch, -1);
  ASSERT_EQ(pending_bytes(h), 0);
  ASSERT_STATUS(SOCK_OK, t.ops[1].status);
  tracker_settle(&t, 2, 50);
  ASSERT_OK(sock_close(h));
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* 14. A blocking sock_send from another thread while async sends pend:
 * it waits behind them, and its bytes arrive after theirs. */
typedef struct {
  sock_handle h;
  const uint8_t *buf;
  size_t len;
  sock_status status;
  size_t sent;
  volatile int done;
} blocking_arg;

static void *blocking_sender(void *p) {
  blocking_arg *a = p;
  a->sent = UNWRITTEN;
  a->status = sock_send(a->h, a->buf, a->len, SOCK_MSG_NONE, &a->sent);
  __atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

TEST_IMPL(async_blocking_send_queues_behind) {
  const size_t alen = 4 * MiB, blen = 1 * MiB;
  int pfd;
  tracker t;
  pthread_t th;
  sock_handle h = small_pair(16384, &pfd);
  uint8_t *buf = pattern_alloc(2 * alen + blen); /* one pattern: async, async, blocking */
  tracker_init(&t, 2);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, alen));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 1, h, buf + alen, alen));

  blocking_arg a = {h, buf + 2 * alen, blen, -1, 0, 0};
  ASSERT_EQ(pthread_create(&th, NULL, blocking_sender, &a), 0);
  sleep_ms(200);
  /* nobody reads: it cannot be done, whatever the scheduling */
  ASSERT_MSG(!__atomic_load_n(&a.done, __ATOMIC_SEQ_CST),
             "blocking send returned (%s) while async sends ahead of it are stuck",
             status_name(a.status));
  ASSERT_EQ(tracker_calls(&t), 0);

  reader_t r = {0};
  r.fd = pfd;
  r.expect = 2 * alen + blen;
  r.check_pattern = 1;
  reader_start(&r);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  tracker_wait(&t, 2, 20000);
  reader_join(&r);
  ASSERT_STATUS(SOCK_OK, a.status);
  ASSERT_UEQ(a.sent, blen);
  ASSERT_UEQ(r.got, 2 * alen + blen);
  ASSERT_MSG(r.mismatch == -1, "stream differs at offset %lld (async ops end at %zu)",
             r.mismatch, 2 * alen);
  for (size_t i = 0; i < 2; i++) {
    ASSERT_STATUS(SOCK_OK, t.ops[i].status);
    ASSERT_UEQ(t.ops[i].bytes, alen);
  }
  tracker_settle(&t, 2, 50);
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* 14b. Non-blocking mode: sock_send while async sends pend would have to
 * wait behind them, so it is SOCK_WOULD_BLOCK with nothing sent. */
TEST_IMPL(async_nonblocking_send_would_block_behind) {
  const size_t alen = 4 * MiB;
  int pfd;
  tracker t;
  size_t n;
  sock_handle h = small_pair(16384, &pfd);
  uint8_t *buf = pattern_alloc(alen + 8);
  tracker_init(&t, 1);
  ASSERT_OK(sock_set_option(h, SOCK_OPT_BLOCKING, 0));
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, h, buf, alen));
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_send(h, buf + alen, 8, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 0);
  sock_buf b = {buf + alen, 8};
  n = UNWRITTEN;
  ASSERT_STATUS(SOCK_WOULD_BLOCK, sock_sendv(h, &b, 1, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 0);

  collector_t c = {0};
  c.fd = pfd;
  c.expect = alen + 8;
  collector_start(&c);
  tracker_wait(&t, 1, 20000);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, alen);
  /* nothing pending any more: the non-blocking send goes through */
  n = UNWRITTEN;
  ASSERT_OK(sock_send(h, buf + alen, 8, SOCK_MSG_NONE, &n));
  ASSERT_UEQ(n, 8);
  collector_join(&c);
  ASSERT_UEQ(c.got, alen + 8);
  ASSERT_EQ(pattern_mismatch(c.buf, c.got, 0), -1);
  tracker_settle(&t, 1, 50);
  ASSERT_OK(sock_close(h));
  close(pfd);
  collector_free(&c);
  free(buf);
  tracker_free(&t);
  return 0;
}

/* Two threads submitting records to one socket at once: records never
 * interleave, and each thread's records (and callbacks) keep its order. */
enum { TT_RECORDS = 100, TT_RECLEN = 32 * 1024 };

typedef struct {
  sock_handle h;
  uint32_t id;
  uint8_t *recs;
  tracker *t;
  pthread_barrier_t *start;
} tt_arg;

static uint8_t tt_byte(uint32_t id, uint32_t seq, size_t i) {
  return (uint8_t)(pattern_byte(i) ^ (id * 91u) ^ (seq * 13u));
}

static void *tt_submitter(void *p) {
  tt_arg *a = p;
  pthread_barrier_wait(a->start);
  for (uint32_t s = 0; s < TT_RECORDS; s++) {
    sock_status st = track_send(a->t, s, a->h, a->recs + (size_t)s * TT_RECLEN, TT_RECLEN);
    ASSERT_MSG(st == SOCK_OK || st == SOCK_IO_PENDING, "thread %u record %u: %s", a->id, s,
               status_name(st));
  }
  return NULL;
}

TEST_IMPL(async_two_threads_whole_records) {
  int pfd;
  tracker t[2];
  tt_arg args[2];
  pthread_t th[2];
  pthread_barrier_t start;
  uint32_t next[2] = {0, 0};
  sock_handle h = small_pair(16384, &pfd);
  ASSERT_EQ(pthread_barrier_init(&start, NULL, 2), 0);
  for (uint32_t id = 0; id < 2; id++) {
    tracker_init(&t[id], TT_RECORDS);
    args[id].h = h;
    args[id].id = id;
    args[id].t = &t[id];
    args[id].start = &start;
    args[id].recs = malloc((size_t)TT_RECORDS * TT_RECLEN);
    ASSERT(args[id].recs != NULL);
    for (uint32_t s = 0; s < TT_RECORDS; s++) {
      uint8_t *r = args[id].recs + (size_t)s * TT_RECLEN;
      for (size_t i = 8; i < TT_RECLEN; i++) r[i] = tt_byte(id, s, i);
      memcpy(r, &id, 4);
      memcpy(r + 4, &s, 4);
    }
  }
  for (uint32_t id = 0; id < 2; id++)
    ASSERT_EQ(pthread_create(&th[id], NULL, tt_submitter, &args[id]), 0);
  uint8_t *rec = malloc(TT_RECLEN);
  ASSERT(rec != NULL);
  for (size_t k = 0; k < 2 * TT_RECORDS; k++) {
    uint32_t id, s;
    peer_read_exact(pfd, rec, TT_RECLEN);
    memcpy(&id, rec, 4);
    memcpy(&s, rec + 4, 4);
    ASSERT_MSG(id < 2, "record %zu: bad header (thread %u): interleaved", k, id);
    ASSERT_MSG(s == next[id], "record %zu: thread %u seq %u, expected %u", k, id, s, next[id]);
    for (size_t i = 8; i < TT_RECLEN; i++)
      ASSERT_MSG(rec[i] == tt_byte(id, s, i), "record %zu (thread %u seq %u): byte %zu corrupt",
                 k, id, s, i);
    next[id]++;
  }
  for (uint32_t id = 0; id < 2; id++) ASSERT_EQ(pthread_join(th[id], NULL), 0);
  for (uint32_t id = 0; id < 2; id++) {
    size_t pend = 0;
    for (size_t s = 0; s < TT_RECORDS; s++) pend += t[id].ops[s].submit_status == SOCK_IO_PENDING;
    tracker_wait(&t[id], pend, 20000);
    tracker_settle(&t[id], pend, 50);
    /* callbacks in submission order, each OK with the whole record */
    size_t prev = 0;
    for (size_t k = 0; k < pend; k++) {
      op_t *op = &t[id].ops[t[id].order[k]];
      ASSERT_MSG(k == 0 || op->index > prev, "thread %u: callbacks out of order", id);
      prev = op->index;
      ASSERT_STATUS(SOCK_OK, op->status);
      ASSERT_UEQ(op->bytes, TT_RECLEN);
    }
  }
  ASSERT_OK(sock_close(h));
  peer_expect_eof(pfd);
  close(pfd);
  free(rec);
  for (uint32_t id = 0; id < 2; id++) {
    free(args[id].recs);
    tracker_free(&t[id]);
  }
  pthread_barrier_destroy(&start);
  return 0;
}
