/* Bad-input matrix: every exported function with every kind of bad argument
 * — NULL for each pointer, dead / stale / made-up handles, unknown values of
 * each integer parameter, lengths near SIZE_MAX, the wrong socket type or
 * state, dead engines — each with the status sock.h documents. Then it
 * checks that nothing happened: no callback ran, no byte reached a peer, no
 * byte was consumed, the live sockets kept their state.
 *
 * Coverage is checked, not promised: the Makefile extracts every prototype
 * of sock.h into build/exports.h, and from each parameter list the test
 * derives the cells it needs (sock_handle -> the bad-handle sweep; each
 * pointer -> a NULL cell named after the parameter; a sock_engine pointer
 * -> a dead-engine cell; size_t -> a length cell; other integers -> an
 * unknown-value cell). A new export, or a new parameter, without its cells
 * fails the test with the missing names. */
#define _GNU_SOURCE
#include "test-async-helpers.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the exports of sock.h ------------------------------------------- */

typedef struct {
  const char *name;
  const char *params;
} export_t;

static const export_t g_exports[] = {
#define EXPORT(fn, params) {#fn, params},
#include "exports.h"
#undef EXPORT
};
#define NEXPORTS (sizeof g_exports / sizeof g_exports[0])

/* ---- cells ------------------------------------------------------------ */

typedef struct {
  const char *fn;
  char tag[48];
} hit_t;

static hit_t g_hits[1024];
static size_t g_nhits, g_cells;
static char g_ctx[128] = "";

static void record(const char *fn, const char *tag) {
  g_cells++;
  for (size_t i = 0; i < g_nhits; i++)
    if (strcmp(g_hits[i].fn, fn) == 0 && strcmp(g_hits[i].tag, tag) == 0) return;
  ASSERT_ULT(g_nhits, sizeof g_hits / sizeof g_hits[0]);
  g_hits[g_nhits].fn = fn;
  snprintf(g_hits[g_nhits].tag, sizeof g_hits[g_nhits].tag, "%s", tag);
  g_nhits++;
}

static int was_hit(const char *fn, const char *tag) {
  for (size_t i = 0; i < g_nhits; i++)
    if (strcmp(g_hits[i].fn, fn) == 0 && strcmp(g_hits[i].tag, tag) == 0) return 1;
  return 0;
}

static void ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctx(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
  va_end(ap);
}

/* One cell: calls fn(...) once, records (fn, tag), checks the status. */
#define CELL(tag, exp, fn, ...)                                                 \
  do {                                                                          \
    sock_status s_ = fn(__VA_ARGS__);                                           \
    sock_status e_ = (exp);                                                     \
    record(#fn, tag);                                                           \
    if (s_ != e_)                                                               \
      FAIL("[%s] %s(%s) {%s}: expected %s (%d), got %s (%d; os errno %d)",      \
           g_ctx, #fn, #__VA_ARGS__, tag, status_name(e_), (int)e_,             \
           status_name(s_), (int)s_, (int)sock_os_error());                     \
  } while (0)

/* A cell whose status may be either of two (the OS or the header leaves
 * the choice open); the status seen is stored in `out`. */
#define CELL_ANY2(tag, out, e1, e2, fn, ...)                                    \
  do {                                                                          \
    sock_status s_ = fn(__VA_ARGS__);                                           \
    sock_status e1_ = (e1), e2_ = (e2);                                         \
    record(#fn, tag);                                                           \
    (out) = s_;                                                                 \
    if (s_ != e1_ && s_ != e2_)                                                 \
      FAIL("[%s] %s(%s) {%s}: expected %s or %s, got %s (%d; os errno %d)",     \
           g_ctx, #fn, #__VA_ARGS__, tag, status_name(e1_), status_name(e2_),   \
           status_name(s_), (int)s_, (int)sock_os_error());                     \
  } while (0)

/* A cell of a function that returns no status. */
#define CELL_TRUE(tag, fn, cond)                                                \
  do {                                                                          \
    record(#fn, tag);                                                           \
    if (!(cond)) FAIL("[%s] %s {%s}: %s is false", g_ctx, #fn, tag, #cond);     \
  } while (0)

/* ---- the world the cells run in -------------------------------------- */

static struct {
  sock_handle h;      /* INET stream connected to POSIX peer pfd */
  int pfd;
  sock_handle lst;    /* INET listener */
  char lst_addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle unc;    /* INET stream, never connected */
  sock_handle unc2;   /* another one, for the sock_shutdown cells */
  sock_handle udp;    /* bound, unconnected datagram socket */
  char udp_addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle udpc;   /* datagram socket connected to upeer */
  int upeer;
  char upeer_addr[SOCK_ADDRESS_MAX_LEN];
  sock_handle shut;   /* INET stream after sock_shutdown(SEND), peer spfd */
  int spfd;
  sock_engine *man, *thr;
  tracker never;      /* op 0: the user_data of every call that must fail */
  /* what the good cells sent to pfd, in order */
  char expect[256];
  size_t nexpect;
} W;

static op_t *never(void) {
  return &W.never.ops[0];
}

static void expect_at_peer(const char *bytes, size_t n) {
  ASSERT_ULE(W.nexpect + n, sizeof W.expect);
  memcpy(W.expect + W.nexpect, bytes, n);
  W.nexpect += n;
}

/* A datagram from a POSIX socket to 127.0.0.1:port. */
static void udp_to_port(int fd, int port, const char *msg, size_t len) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_MSG(sendto(fd, msg, len, 0, (struct sockaddr *)&a, sizeof a) == (ssize_t)len,
             "sendto: %s", strerror(errno));
}

static void wait_readable(int fd) {
  ASSERT_MSG(peer_readable(fd, 5000), "fd %d not readable within 5 s", fd);
}

/* A callback that must be given user_data NULL. */
static atomic_int g_null_ud_calls, g_null_ud_bad;
static void null_ud_cb(sock_handle h, sock_status s, size_t n, void *ud) {
  (void)h;
  if (ud != NULL || s != SOCK_OK || n != 1) atomic_fetch_add(&g_null_ud_bad, 1);
  atomic_fetch_add(&g_null_ud_calls, 1);
}

static void wait_atomic(atomic_int *v, int want) {
  uint64_t t0 = now_ms();
  while (atomic_load(v) < want) {
    ASSERT_MSG(now_ms() - t0 < 10000, "callback did not run within 10 s");
    sleep_ms(1);
  }
}

/* The trace callback is set with user_data NULL: it must get NULL back. */
static atomic_int g_trace_lines, g_trace_bad_ud;
static int g_trace_ud;
static void trace_cb(const char *line, void *ud) {
  if (line == NULL || ud != NULL) atomic_fetch_add(&g_trace_bad_ud, 1);
  atomic_fetch_add(&g_trace_lines, 1);
}

static void setup(void) {
  int port;
  memset(&W, 0, sizeof W);
  tracker_init(&W.never, 1);
  tracker_op(&W.never, 0, SOCK_INVALID_HANDLE, 0);

  W.h = connect_pair(SOCK_FAMILY_INET, 0, &W.pfd);
  W.shut = connect_pair(SOCK_FAMILY_INET, 0, &W.spfd);
  ASSERT_OK(sock_shutdown(W.shut, SOCK_SHUT_SEND));
  W.lst = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", W.lst_addr);
  W.unc = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  W.unc2 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  W.udp = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(W.udp, "127.0.0.1:0"));
  local_addr(W.udp, W.udp_addr);
  W.upeer = peer_udp(AF_INET, &port);
  addr_text(W.upeer_addr, sizeof W.upeer_addr, AF_INET, port);
  W.udpc = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_connect(W.udpc, W.upeer_addr));
  /* a bug must not hang the test: no call below may wait long */
  sock_handle all[] = {W.h, W.shut, W.lst, W.unc, W.unc2, W.udp, W.udpc};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ASSERT_OK(sock_set_option(all[i], SOCK_OPT_RECV_TIMEOUT_MS, 200));
  ASSERT_OK(sock_engine_new(0, &W.man));
  ASSERT_OK(sock_engine_new(1, &W.thr));
}

/* ---- functions without a socket -------------------------------------- */

static void cells_library(void) {
  static const sock_status unknown[] = {1, -2, 996, 998, 10000, 10005, 99999, INT32_MIN, INT32_MAX};
  char want[32];
  ctx("library");
  const char *v = sock_version();
  snprintf(want, sizeof want, "%d.%d.%d", SOCK_VERSION_MAJOR, SOCK_VERSION_MINOR,
           SOCK_VERSION_PATCH);
  CELL_TRUE("call", sock_version, v != NULL && strcmp(v, want) == 0);
  CELL_TRUE("call", sock_version_number, sock_version_number() == SOCK_VERSION_HEX);
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = sock_strerror(unknown[i]);
    ctx("sock_strerror(%d)", (int)unknown[i]);
    CELL_TRUE("enum:status", sock_strerror, s != NULL && strcmp(s, "unknown status code") == 0);
  }
  ctx("library");
  CELL_TRUE("call", sock_strerror, sock_strerror(SOCK_OK) != NULL);
  /* after a call that failed before any OS call, a plain int, never negative */
  CELL("null:out", SOCK_FAULT, sock_socket, SOCK_FAMILY_INET, SOCK_TYPE_STREAM, NULL);
  CELL_TRUE("call", sock_os_error, sock_os_error() >= 0);
  /* after a failed OS call, its errno (connect refused) */
  char refused[SOCK_ADDRESS_MAX_LEN];
  int bfd = peer_bound_not_listening(refused, sizeof refused);
  sock_handle r = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_STATUS(SOCK_CONNECTION_REFUSED, sock_connect(r, refused));
  CELL_TRUE("call", sock_os_error, sock_os_error() == ECONNREFUSED);
  ASSERT_OK(sock_close(r));
  close(bfd);

  /* tracing: NULL turns it off whatever user_data says; a NULL user_data
   * is passed back as NULL */
  atomic_store(&g_trace_lines, 0);
  CELL("null:cb", SOCK_OK, sock_set_trace, NULL, &g_trace_ud);
  CELL("null:user_data", SOCK_OK, sock_set_trace, trace_cb, NULL);
  ASSERT_OK(sock_get_option(W.h, SOCK_OPT_BLOCKING, &(int64_t){0}));
  sock_handle t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_close(t));
  CELL("null:cb", SOCK_OK, sock_set_trace, NULL, NULL);
  int lines = atomic_load(&g_trace_lines);
  ASSERT_MSG(lines > 0, "no trace line while a callback was set");
  t = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_close(t));
  ASSERT_MSG(atomic_load(&g_trace_lines) == lines, "trace lines after sock_set_trace(NULL)");
  ASSERT_EQ(atomic_load(&g_trace_bad_ud), 0);
}

/* ---- sock_socket ------------------------------------------------------ */

static void cells_socket(void) {
  static const int32_t bad_family[] = {0, 4, 5, -1, 10, 100, INT32_MAX, INT32_MIN};
  static const int32_t bad_type[] = {0, 3, -1, 5, 0x80001, INT32_MAX, INT32_MIN};
  sock_handle out;
  ctx("sock_socket");
  for (size_t i = 0; i < sizeof bad_family / sizeof bad_family[0]; i++) {
    ctx("family %d", (int)bad_family[i]);
    out = UNWRITTEN_HANDLE;
    CELL("enum:family", SOCK_INVALID_ARGUMENT, sock_socket, bad_family[i], SOCK_TYPE_STREAM, &out);
    ASSERT(out == SOCK_INVALID_HANDLE);
  }
  for (size_t i = 0; i < sizeof bad_type / sizeof bad_type[0]; i++) {
    ctx("type %d", (int)bad_type[i]);
    out = UNWRITTEN_HANDLE;
    CELL("enum:type", SOCK_INVALID_ARGUMENT, sock_socket, SOCK_FAMILY_INET, bad_type[i], &out);
    ASSERT(out == SOCK_INVALID_HANDLE);
  }
  ctx("sock_socket both bad");
  out = UNWRITTEN_HANDLE;
  CELL("enum:family", SOCK_INVALID_ARGUMENT, sock_socket, -7, -7, &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  CELL("null:out", SOCK_FAULT, sock_socket, SOCK_FAMILY_UNIX, SOCK_TYPE_DGRAM, NULL);
}

/* ---- optional pointers: NULL is legal and the call works --------------- */

static void cells_null_ok(void) {
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  ctx("optional outputs NULL");
  CELL("null:sent", SOCK_OK, sock_send, W.h, "a", 1, 0, NULL);
  expect_at_peer("a", 1);
  sock_buf b = {"b", 1};
  CELL("null:sent", SOCK_OK, sock_sendv, W.h, &b, 1, 0, NULL);
  expect_at_peer("b", 1);
  /* a connected stream: the address is checked, then ignored */
  CELL("null:sent", SOCK_OK, sock_send_to, W.h, "c", 1, 0, W.udp_addr, NULL);
  expect_at_peer("c", 1);
  /* an empty gather list and an empty NULL segment are legal */
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_OK, sock_sendv, W.h, NULL, 0, 0, &n);
  ASSERT_UEQ(n, 0);
  sock_buf empty = {NULL, 0};
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_OK, sock_sendv, W.h, &empty, 1, 0, &n);
  ASSERT_UEQ(n, 0);

  /* async: sent_now NULL (inline completion: no callback) */
  sock_status s;
  CELL_ANY2("null:sent_now", s, SOCK_OK, SOCK_IO_PENDING, sock_send_async, W.h, "d", 1, 0,
            null_ud_cb, NULL, NULL);
  expect_at_peer("d", 1);
  int want_cb = s == SOCK_IO_PENDING;
  sock_buf e = {"e", 1};
  CELL_ANY2("null:sent_now", s, SOCK_OK, SOCK_IO_PENDING, sock_sendv_async, W.h, &e, 1, 0,
            null_ud_cb, NULL, NULL);
  expect_at_peer("e", 1);
  want_cb += s == SOCK_IO_PENDING;
  /* user_data NULL goes back as NULL: force the callback with inline off */
  ASSERT_OK(sock_set_option(W.h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  n = UNWRITTEN;
  CELL("null:user_data", SOCK_IO_PENDING, sock_send_async, W.h, "f", 1, 0, null_ud_cb, NULL, &n);
  expect_at_peer("f", 1);
  want_cb++;
  n = UNWRITTEN;
  sock_buf g = {"g", 1};
  CELL("null:user_data", SOCK_IO_PENDING, sock_sendv_async, W.h, &g, 1, 0, null_ud_cb, NULL, &n);
  expect_at_peer("g", 1);
  want_cb++;
  wait_atomic(&g_null_ud_calls, want_cb);
  /* a receive that has to wait: received_now NULL, user_data NULL */
  CELL("null:received_now", SOCK_IO_PENDING, sock_recv_async, W.h, buf, 1, 0, null_ud_cb, NULL,
       NULL);
  ASSERT_SYS(send(W.pfd, "R", 1, 0));
  want_cb++;
  wait_atomic(&g_null_ud_calls, want_cb);
  ASSERT_EQ(buf[0], 'R');
  ASSERT_OK(sock_set_option(W.h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 1));
  CELL("null:user_data", SOCK_IO_PENDING, sock_recv_async, W.h, buf, 1, 0, null_ud_cb, NULL, NULL);
  ASSERT_SYS(send(W.pfd, "S", 1, 0));
  want_cb++;
  wait_atomic(&g_null_ud_calls, want_cb);
  ASSERT_EQ(buf[0], 'S');
  sleep_ms(50);
  ASSERT_EQ(atomic_load(&g_null_ud_calls), want_cb);
  ASSERT_EQ(atomic_load(&g_null_ud_bad), 0);

  /* blocking receives with received NULL; recv_from with address NULL */
  ASSERT_SYS(send(W.pfd, "TU", 2, 0));
  wait_readable(handle_fd(W.h));
  CELL("null:received", SOCK_OK, sock_recv, W.h, buf, 1, 0, NULL);
  ASSERT_EQ(buf[0], 'T');
  CELL("null:address", SOCK_OK, sock_recv_from, W.h, buf, 1, 0, NULL, 0, NULL);
  ASSERT_EQ(buf[0], 'U');
  CELL("null:received", SOCK_OK, sock_recv_from, W.h, buf, 0, 0, addr, sizeof addr, NULL);

  /* addresses: len NULL; buf NULL with cap 0 asks for the size */
  CELL("null:len", SOCK_OK, sock_local_address, W.h, addr, sizeof addr, NULL);
  size_t need = strlen(addr) + 1;
  n = UNWRITTEN;
  CELL("null:buf", SOCK_NO_BUFFER_SPACE, sock_local_address, W.h, NULL, 0, &n);
  ASSERT_UEQ(n, need);
  CELL("null:len", SOCK_OK, sock_peer_address, W.h, addr, sizeof addr, NULL);
  need = strlen(addr) + 1;
  n = UNWRITTEN;
  CELL("null:buf", SOCK_NO_BUFFER_SPACE, sock_peer_address, W.h, NULL, 0, &n);
  ASSERT_UEQ(n, need);

  /* engines: completed NULL; attach to NULL means the default engine */
  CELL("null:completed", SOCK_OK, sock_engine_poll, W.man, 0, NULL);
  sock_handle a = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  CELL("null:e", SOCK_OK, sock_attach, a, NULL);
  ASSERT_OK(sock_close(a));
}

/* ---- required pointers: NULL is SOCK_FAULT and nothing happens ---------- */

static void cells_null_fault(void) {
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int32_t fd;
  ctx("required pointer NULL");

  CELL("null:address", SOCK_FAULT, sock_bind, W.unc, NULL);
  CELL("null:address", SOCK_FAULT, sock_connect, W.unc, NULL);
  CELL("null:out", SOCK_FAULT, sock_accept, W.lst, NULL);
  CELL("null:buf", SOCK_FAULT, sock_local_address, W.h, NULL, 16, &n);
  CELL("null:buf", SOCK_FAULT, sock_peer_address, W.h, NULL, 16, &n);
  CELL("null:value", SOCK_FAULT, sock_get_option, W.h, SOCK_OPT_BLOCKING, NULL);
  CELL("null:fd", SOCK_FAULT, sock_fd, W.h, NULL);

  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_send, W.h, NULL, 4, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_send, W.h, NULL, 0, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_send_to, W.udp, NULL, 4, 0, W.upeer_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:address", SOCK_FAULT, sock_send_to, W.udp, "abcd", 4, 0, NULL, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:address", SOCK_FAULT, sock_send_to, W.h, "abcd", 4, 0, NULL, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_FAULT, sock_sendv, W.h, NULL, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  sock_buf nulseg[2] = {{"ab", 2}, {NULL, 3}};
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_FAULT, sock_sendv, W.h, nulseg, 2, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_FAULT, sock_sendv, W.udpc, nulseg, 2, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_recv, W.h, NULL, 4, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_recv_from, W.udp, NULL, 4, 0, addr, sizeof addr, &n);
  ASSERT_UEQ(n, 0);

  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_send_async, W.h, NULL, 4, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:on_done", SOCK_FAULT, sock_send_async, W.h, "abcd", 4, 0, NULL, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_FAULT, sock_sendv_async, W.h, NULL, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:bufs", SOCK_FAULT, sock_sendv_async, W.h, nulseg, 2, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  sock_buf one = {"x", 1};
  n = UNWRITTEN;
  CELL("null:on_done", SOCK_FAULT, sock_sendv_async, W.h, &one, 1, 0, NULL, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_recv_async, W.h, NULL, 4, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:on_done", SOCK_FAULT, sock_recv_async, W.h, buf, 4, 0, NULL, never(), &n);
  ASSERT_UEQ(n, 0);

  CELL("null:out", SOCK_FAULT, sock_engine_new, 0, NULL);
  CELL("null:out", SOCK_FAULT, sock_engine_new, 1, NULL);
  CELL("null:e", SOCK_FAULT, sock_engine_free, NULL);
  CELL("null:e", SOCK_FAULT, sock_engine_poll, NULL, 0, &n);
  CELL("null:e", SOCK_FAULT, sock_engine_poll, NULL, -1, NULL);
  CELL("null:e", SOCK_FAULT, sock_engine_fd, NULL, &fd);
  CELL("null:fd", SOCK_FAULT, sock_engine_fd, W.man, NULL);
}

/* ---- unknown integer values ------------------------------------------- */

static const int32_t bad_send_flags[] = {SOCK_MSG_PEEK, 8, 16, 0x100, 0x4000, -1, INT32_MIN,
                                         INT32_MAX, SOCK_MSG_OOB | 8};
static const int32_t bad_recv_flags[] = {SOCK_MSG_DONT_ROUTE, 8, 0x100, 0x40, -1, INT32_MIN,
                                         INT32_MAX, SOCK_MSG_PEEK | 8};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void cells_enum(void) {
  static const int32_t bad_how[] = {3, 4, -1, 100, INT32_MAX, INT32_MIN};
  static const int32_t bad_backlog[] = {-1, -100, INT32_MIN};
  static const int32_t bad_option[] = {0, 13, 14, 100, -1, INT32_MAX, INT32_MIN};
  static const int32_t bad_timeout[] = {-2, -100, INT32_MIN};
  static const uint32_t bad_threads[] = {SOCK_ENGINE_MAX_THREADS + 1, 1000, 0x80000000u,
                                         UINT32_MAX};
  struct {
    int32_t opt;
    int64_t value;
  } bad_value[] = {
      {SOCK_OPT_BLOCKING, 2},           {SOCK_OPT_BLOCKING, -1},
      {SOCK_OPT_BLOCKING, INT64_MIN},   {SOCK_OPT_SEND_TIMEOUT_MS, -1},
      {SOCK_OPT_SEND_TIMEOUT_MS, (int64_t)INT32_MAX + 1},
      {SOCK_OPT_RECV_TIMEOUT_MS, -1},   {SOCK_OPT_RECV_TIMEOUT_MS, INT64_MAX},
      {SOCK_OPT_NO_DELAY, 2},           {SOCK_OPT_NO_DELAY, -1},
      {SOCK_OPT_SEND_BUFFER_SIZE, 0},   {SOCK_OPT_SEND_BUFFER_SIZE, -1},
      {SOCK_OPT_SEND_BUFFER_SIZE, (int64_t)INT32_MAX + 1},
      {SOCK_OPT_RECV_BUFFER_SIZE, 0},   {SOCK_OPT_RECV_BUFFER_SIZE, INT64_MIN},
      {SOCK_OPT_REUSE_ADDRESS, 2},      {SOCK_OPT_KEEP_ALIVE, -1},
      {SOCK_OPT_LINGER_MS, -2},         {SOCK_OPT_LINGER_MS, SOCK_LINGER_MS_MAX + 1},
      {SOCK_OPT_ASYNC_INLINE_COMPLETION, 2}, {SOCK_OPT_ASYNC_INLINE_COMPLETION, -1},
      {SOCK_OPT_PENDING_SEND_BYTES, 0}, /* read-only */
  };
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int64_t v;

  for (size_t i = 0; i < COUNT(bad_how); i++) {
    ctx("how %d", (int)bad_how[i]);
    CELL("enum:how", SOCK_INVALID_ARGUMENT, sock_shutdown, W.h, bad_how[i]);
    CELL("enum:how", SOCK_INVALID_ARGUMENT, sock_shutdown, W.unc2, bad_how[i]);
  }
  for (size_t i = 0; i < COUNT(bad_backlog); i++) {
    ctx("backlog %d", (int)bad_backlog[i]);
    CELL("enum:backlog", SOCK_INVALID_ARGUMENT, sock_listen, W.unc, bad_backlog[i]);
  }
  for (size_t i = 0; i < COUNT(bad_option); i++) {
    ctx("option %d", (int)bad_option[i]);
    CELL("enum:option", SOCK_INVALID_ARGUMENT, sock_set_option, W.h, bad_option[i], 1);
    CELL("enum:option", SOCK_INVALID_ARGUMENT, sock_set_option, W.h, bad_option[i], 0);
    CELL("enum:option", SOCK_INVALID_ARGUMENT, sock_get_option, W.h, bad_option[i], &v);
  }
  for (size_t i = 0; i < COUNT(bad_value); i++) {
    ctx("option %d = %lld", (int)bad_value[i].opt, (long long)bad_value[i].value);
    int64_t before = -12345, after = -12345;
    ASSERT_OK(sock_get_option(W.h, bad_value[i].opt, &before));
    CELL("enum:value", SOCK_INVALID_ARGUMENT, sock_set_option, W.h, bad_value[i].opt,
         bad_value[i].value);
    ASSERT_OK(sock_get_option(W.h, bad_value[i].opt, &after));
    ASSERT_MSG(before == after, "option %d changed from %lld to %lld by a refused value",
               (int)bad_value[i].opt, (long long)before, (long long)after);
  }
  for (size_t i = 0; i < COUNT(bad_send_flags); i++) {
    int32_t f = bad_send_flags[i];
    sock_buf b = {"x", 1};
    ctx("send flags 0x%x", (unsigned)f);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_send, W.h, "x", 1, f, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_sendv, W.h, &b, 1, f, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_send_to, W.udp, "x", 1, f, W.upeer_addr, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_send_async, W.h, "x", 1, f, track_cb, never(),
         &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_sendv_async, W.h, &b, 1, f, track_cb, never(),
         &n);
    ASSERT_UEQ(n, 0);
  }
  for (size_t i = 0; i < COUNT(bad_recv_flags); i++) {
    int32_t f = bad_recv_flags[i];
    ctx("recv flags 0x%x", (unsigned)f);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_recv, W.h, buf, sizeof buf, f, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_recv_from, W.udp, buf, sizeof buf, f, addr,
         sizeof addr, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_recv_async, W.h, buf, sizeof buf, f, track_cb,
         never(), &n);
    ASSERT_UEQ(n, 0);
  }
  for (size_t i = 0; i < COUNT(bad_timeout); i++) {
    ctx("poll timeout %d", (int)bad_timeout[i]);
    CELL("enum:timeout_ms", SOCK_INVALID_ARGUMENT, sock_engine_poll, W.man, bad_timeout[i], &n);
  }
  for (size_t i = 0; i < COUNT(bad_threads); i++) {
    sock_engine *e = (sock_engine *)&n; /* must be overwritten with NULL */
    ctx("threads %u", (unsigned)bad_threads[i]);
    CELL("enum:threads", SOCK_INVALID_ARGUMENT, sock_engine_new, bad_threads[i], &e);
    ASSERT(e == NULL);
  }
}

/* ---- lengths near SIZE_MAX -------------------------------------------- */

static void cells_len(void) {
  const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX / 2 + 1, (size_t)PTRDIFF_MAX + 1};
  const size_t huge_count[] = {SIZE_MAX, (size_t)PTRDIFF_MAX / sizeof(sock_buf) + 1,
                               SIZE_MAX / 2 + 1};
  char buf[64], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  sock_status s;

  for (size_t i = 0; i < COUNT(huge); i++) {
    size_t L = huge[i];
    ctx("length %zu", L);
    n = UNWRITTEN;
    CELL("len:len", SOCK_INVALID_ARGUMENT, sock_send, W.h, buf, L, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:len", SOCK_INVALID_ARGUMENT, sock_send, W.udpc, buf, L, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:len", SOCK_INVALID_ARGUMENT, sock_send_to, W.udp, buf, L, 0, W.upeer_addr, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:len", SOCK_INVALID_ARGUMENT, sock_send_async, W.h, buf, L, 0, track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:cap", SOCK_INVALID_ARGUMENT, sock_recv, W.h, buf, L, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:cap", SOCK_INVALID_ARGUMENT, sock_recv_from, W.udp, buf, L, 0, addr, sizeof addr, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:cap", SOCK_INVALID_ARGUMENT, sock_recv_async, W.h, buf, L, 0, track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
    /* one segment too long, or segments that add up past PTRDIFF_MAX */
    sock_buf one[1] = {{buf, L}};
    sock_buf two[2] = {{buf, (size_t)PTRDIFF_MAX}, {buf, L - (size_t)PTRDIFF_MAX + 1}};
    if (L - (size_t)PTRDIFF_MAX + 1 == 0) two[1].len = 2;
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv, W.h, one, 1, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv, W.h, two, 2, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv, W.udpc, two, 2, 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv_async, W.h, one, 1, 0, track_cb, never(),
         &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv_async, W.h, two, 2, 0, track_cb, never(),
         &n);
    ASSERT_UEQ(n, 0);
  }
  /* a count no array can have: the library must not read the array */
  for (size_t i = 0; i < COUNT(huge_count); i++) {
    sock_buf one[1] = {{"x", 1}};
    ctx("count %zu", huge_count[i]);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv, W.h, one, huge_count[i], 0, &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:count", SOCK_INVALID_ARGUMENT, sock_sendv_async, W.h, one, huge_count[i], 0, track_cb,
         never(), &n);
    ASSERT_UEQ(n, 0);
  }

  /* address buffers: too small -> SOCK_NO_BUFFER_SPACE, size needed in
   * *len, nothing written; a cap beyond any object is either refused or
   * (the text fits) honoured */
  char want[SOCK_ADDRESS_MAX_LEN];
  local_addr(W.h, want);
  size_t need = strlen(want) + 1;
  const size_t small[] = {0, 1, need - 1};
  for (size_t i = 0; i < COUNT(small); i++) {
    ctx("address cap %zu (needs %zu)", small[i], need);
    memset(addr, '#', sizeof addr);
    n = UNWRITTEN;
    CELL("len:cap", SOCK_NO_BUFFER_SPACE, sock_local_address, W.h, addr, small[i], &n);
    ASSERT_UEQ(n, need);
    ASSERT_MSG(addr[0] == '#' && addr[need - 2] == '#', "address text written though cap too small");
    n = UNWRITTEN;
    CELL("len:cap", SOCK_NO_BUFFER_SPACE, sock_peer_address, W.h, addr, small[i], &n);
    ASSERT_UGE(n, 2);
    ASSERT_MSG(addr[0] == '#', "peer address written though cap too small");
  }
  for (size_t i = 0; i < 2; i++) {
    ctx("address cap %zu", huge[i]);
    memset(addr, '#', sizeof addr);
    n = UNWRITTEN;
    CELL_ANY2("len:cap", s, SOCK_OK, SOCK_INVALID_ARGUMENT, sock_local_address, W.h, addr, huge[i],
              &n);
    if (s == SOCK_OK) ASSERT_STR_EQ(addr, want);
    n = UNWRITTEN;
    CELL_ANY2("len:cap", s, SOCK_OK, SOCK_INVALID_ARGUMENT, sock_peer_address, W.h, addr, huge[i],
              &n);
    if (s == SOCK_OK) ASSERT_UEQ(n, strlen(addr) + 1);
  }

  /* recv_from: an address buffer that cannot hold the family's longest
   * address is refused before anything is received (the datagram queued
   * on W.udp stays there) */
  const size_t small_acap[] = {0, 1, 10, 21};
  for (size_t i = 0; i < COUNT(small_acap); i++) {
    ctx("recv_from address_cap %zu", small_acap[i]);
    n = UNWRITTEN;
    CELL("len:address_cap", SOCK_NO_BUFFER_SPACE, sock_recv_from, W.udp, buf, sizeof buf, 0, addr,
         small_acap[i], &n);
    ASSERT_UEQ(n, 0);
  }
}

/* ---- the wrong socket type or state ----------------------------------- */

static void cells_state(void) {
  char buf[8], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  sock_handle out;
  sock_status s;
  sock_buf one = {"x", 1};

  ctx("datagram socket");
  out = UNWRITTEN_HANDLE;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_accept, W.udp, &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_listen, W.udp, 4);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_listen, W.udpc, 4);
  /* unconnected datagram socket: sock_send needs a destination */
  n = UNWRITTEN;
  CELL("state", SOCK_DESTINATION_ADDRESS_REQUIRED, sock_send, W.udp, "x", 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_DESTINATION_ADDRESS_REQUIRED, sock_sendv, W.udp, &one, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_DESTINATION_ADDRESS_REQUIRED, sock_send_async, W.udp, "x", 1, 0, track_cb,
       never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_DESTINATION_ADDRESS_REQUIRED, sock_sendv_async, W.udp, &one, 1, 0, track_cb,
       never(), &n);
  ASSERT_UEQ(n, 0);
  /* oversized datagrams: nothing sent */
  static uint8_t big[65508];
  n = UNWRITTEN;
  CELL("state", SOCK_MESSAGE_SIZE, sock_send_to, W.udp, big, sizeof big, 0, W.upeer_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_MESSAGE_SIZE, sock_send, W.udpc, big, sizeof big, 0, &n);
  ASSERT_UEQ(n, 0);
  static sock_buf segs[1025];
  for (size_t i = 0; i < COUNT(segs); i++) segs[i] = (sock_buf){"s", 1};
  n = UNWRITTEN;
  CELL("state", SOCK_MESSAGE_SIZE, sock_sendv, W.udpc, segs, COUNT(segs), 0, &n);
  ASSERT_UEQ(n, 0);

  ctx("listening socket");
  out = UNWRITTEN_HANDLE;
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send, W.lst, "x", 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_sendv, W.lst, &one, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send_to, W.lst, "x", 1, 0, W.udp_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send_async, W.lst, "x", 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_sendv_async, W.lst, &one, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_recv, W.lst, buf, sizeof buf, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_recv_from, W.lst, buf, sizeof buf, 0, addr, sizeof addr,
       &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_recv_async, W.lst, buf, sizeof buf, 0, track_cb, never(),
       &n);
  ASSERT_UEQ(n, 0);
  CELL("state", SOCK_NOT_CONNECTED, sock_peer_address, W.lst, addr, sizeof addr, &n);
  /* connect on a listener: Linux says EISCONN; either way it must fail */
  CELL_ANY2("state", s, SOCK_IS_CONNECTED, SOCK_INVALID_ARGUMENT, sock_connect, W.lst, W.lst_addr);
  (void)s;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_bind, W.lst, "127.0.0.1:0"); /* bound already */

  ctx("unconnected stream socket");
  out = UNWRITTEN_HANDLE;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_accept, W.unc, &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  for (int32_t how = SOCK_SHUT_RECV; how <= SOCK_SHUT_BOTH; how++)
    CELL("state", SOCK_NOT_CONNECTED, sock_shutdown, W.unc2, how);
  CELL("state", SOCK_NOT_CONNECTED, sock_peer_address, W.unc, addr, sizeof addr, &n);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send, W.unc, "x", 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_sendv, W.unc, &one, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send_to, W.unc, "x", 1, 0, W.lst_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_send_async, W.unc, "x", 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_sendv_async, W.unc, &one, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_recv, W.unc, buf, sizeof buf, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_NOT_CONNECTED, sock_recv_async, W.unc, buf, sizeof buf, 0, track_cb, never(),
       &n);
  ASSERT_UEQ(n, 0);

  ctx("connected stream socket");
  CELL("state", SOCK_INVALID_ARGUMENT, sock_listen, W.h, 4);
  out = UNWRITTEN_HANDLE;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_accept, W.h, &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  CELL("state", SOCK_IS_CONNECTED, sock_connect, W.h, W.lst_addr);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_bind, W.h, "127.0.0.1:0");
  /* malformed or foreign address text */
  CELL("state", SOCK_INVALID_ARGUMENT, sock_bind, W.unc, "127.0.0.1");
  CELL("state", SOCK_INVALID_ARGUMENT, sock_bind, W.unc, "not an address");
  CELL("state", SOCK_INVALID_ARGUMENT, sock_connect, W.unc, "127.0.0.1:99999");
  CELL("state", SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, sock_bind, W.unc, "[::1]:0");
  n = UNWRITTEN;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_send_to, W.h, "x", 1, 0, ":80", &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_INVALID_ARGUMENT, sock_send_to, W.udp, "x", 1, 0, "1.2.3:4", &n);
  ASSERT_UEQ(n, 0);
  CELL("state", SOCK_PROTOCOL_OPTION, sock_set_option, W.udp, SOCK_OPT_NO_DELAY, 1);

  ctx("after sock_shutdown(SEND)");
  n = UNWRITTEN;
  CELL("state", SOCK_SHUTDOWN, sock_send, W.shut, "x", 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_SHUTDOWN, sock_sendv, W.shut, &one, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_SHUTDOWN, sock_send_to, W.shut, "x", 1, 0, W.lst_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_SHUTDOWN, sock_send_async, W.shut, "x", 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_SHUTDOWN, sock_sendv_async, W.shut, &one, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
}

/* ---- engines ------------------------------------------------------------ */

static void cells_engine(void) {
  int32_t fd = 4242;
  size_t n;
  char rb[8];
  int pfd;
  sock_engine *dead = NULL, *bogus = (sock_engine *)&fd;
  sock_buf one = {"x", 1};

  ctx("threaded engine");
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_poll, W.thr, 0, &n);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_poll, W.thr, -1, NULL);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_fd, W.thr, &fd);

  ctx("queue engine");
  CELL("null:out", SOCK_FAULT, sock_engine_new_queue, NULL);
  sock_engine *q = NULL;
  CELL("call", SOCK_OK, sock_engine_new_queue, &q);
  sock_completion entries[4];
  CELL("null:e", SOCK_FAULT, sock_engine_dequeue, NULL, entries, 4, 0, &n);
  n = UNWRITTEN;
  CELL("null:out", SOCK_FAULT, sock_engine_dequeue, q, NULL, 4, 0, &n);
  ASSERT_UEQ(n, 0);
  CELL("null:out", SOCK_OK, sock_engine_dequeue, q, NULL, 0, 0, &n); /* max 0: nothing to write */
  CELL("null:count", SOCK_OK, sock_engine_dequeue, q, entries, 4, 0, NULL);
  CELL("len:max", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, q, entries, SIZE_MAX, 0, &n);
  CELL("enum:timeout_ms", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, q, entries, 4, -2, &n);
  CELL("enum:timeout_ms", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, q, entries, 4, INT32_MIN,
       &n);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, W.man, entries, 4, 0, &n);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, W.thr, entries, 4, 0, &n);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_engine_poll, q, 0, &n);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, bogus, entries, 4, 0, &n);
  ASSERT_OK(sock_engine_free(q));
  /* freed with nothing queued: gone at once */
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_dequeue, q, entries, 4, 0, &n);
  /* the default engine stopped and started again on next use */
  CELL_TRUE("call", sock_cleanup, sock_cleanup() == SOCK_OK);

  ctx("never-issued engine pointer");
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_free, bogus);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_poll, bogus, 0, &n);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_fd, bogus, &fd);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_attach, W.h, bogus);
  ASSERT_EQ(fd, 4242);

  ctx("freed engine pointer");
  ASSERT_OK(sock_engine_new(0, &dead));
  sock_handle a = connect_pair(SOCK_FAMILY_INET, 0, &pfd);
  ASSERT_OK(sock_attach(a, dead));
  ASSERT_OK(sock_engine_free(dead));
  /* no engine is created from here to the end of these cells, so the
   * freed address cannot have been handed out again */
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_free, dead);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_poll, dead, 0, &n);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_poll, dead, -1, NULL);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_engine_fd, dead, &fd);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_attach, W.h, dead);
  CELL("dead:e", SOCK_INVALID_ARGUMENT, sock_attach, a, dead);
  /* the socket of a freed engine refuses async calls until re-attached */
  ctx("socket of a freed engine");
  n = UNWRITTEN;
  CELL("state", SOCK_OPERATION_ABORTED, sock_send_async, a, "x", 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_OPERATION_ABORTED, sock_sendv_async, a, &one, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("state", SOCK_OPERATION_ABORTED, sock_recv_async, a, rb, sizeof rb, 0, track_cb, never(),
       &n);
  ASSERT_UEQ(n, 0);
  ASSERT(!peer_readable(pfd, 0));
  ASSERT_OK(sock_attach(a, NULL));
  ASSERT_OK(sock_send(a, "ok", 2, 0, NULL));
  peer_expect(pfd, "ok", 2, "socket re-attached after its engine was freed");
  ASSERT_OK(sock_close(a));
  close(pfd);

  /* attach with an operation pending: refused, and the operation goes on
   * on its engine to a normal end */
  ctx("attach with an operation pending");
  tracker t;
  tracker_init(&t, 1);
  sock_handle p = small_pair(65536, &pfd);
  const size_t len = 4 * MiB;
  uint8_t *buf = pattern_alloc(len);
  ASSERT_STATUS(SOCK_IO_PENDING, track_send(&t, 0, p, buf, len));
  CELL("state", SOCK_INVALID_ARGUMENT, sock_attach, p, W.man);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_attach, p, W.thr);
  CELL("state", SOCK_INVALID_ARGUMENT, sock_attach, p, NULL);
  reader_t r = {.fd = pfd, .expect = len, .check_pattern = 1};
  reader_start(&r);
  tracker_wait(&t, 1, 20000);
  reader_join(&r);
  tracker_settle(&t, 1, 0);
  ASSERT_STATUS(SOCK_OK, t.ops[0].status);
  ASSERT_UEQ(t.ops[0].bytes, len);
  ASSERT_UEQ(r.got, len);
  ASSERT_EQ(r.mismatch, -1);
  ASSERT_OK(sock_close(p));
  close(pfd);
  free(buf);
  tracker_free(&t);
}

/* ---- the async connection life cycle ---------------------------------- */

/* Callbacks of calls that must fail: any call fails the test. */
static void never_status_cb(sock_handle h, sock_status s, void *ud) {
  (void)ud;
  FAIL("status callback ran for a refused call (h 0x%" PRIx64 ", %s)", h, status_name(s));
}
static void never_accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  (void)a;
  (void)ud;
  FAIL("accept callback ran for a refused call (h 0x%" PRIx64 ", %s)", l, status_name(s));
}

/* Callbacks that must get user_data NULL back. */
static atomic_int g_null_status_calls, g_null_status_bad;
static void null_ud_status_cb(sock_handle h, sock_status s, void *ud) {
  (void)h;
  if (ud != NULL || s != SOCK_OK) atomic_fetch_add(&g_null_status_bad, 1);
  atomic_fetch_add(&g_null_status_calls, 1);
}
static atomic_int g_null_accept_calls, g_null_accept_bad;
static sock_handle g_null_accepted;
static void null_ud_accept_cb(sock_handle l, sock_status s, sock_handle a, void *ud) {
  (void)l;
  if (ud != NULL || s != SOCK_OK || a == SOCK_INVALID_HANDLE) atomic_fetch_add(&g_null_accept_bad, 1);
  g_null_accepted = a;
  atomic_fetch_add(&g_null_accept_calls, 1);
}

/* Every pointer, integer and length of the five calls of the async
 * connection life cycle, refused before anything happens; and the NULLs
 * that are allowed (user_data, the out-parameters), which work. */
static void cells_connection(void) {
  char buf[16], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  sock_handle out;
  ctx("connection life cycle");
  CELL("null:address", SOCK_FAULT, sock_connect_async, W.unc, NULL, never_status_cb, never());
  CELL("null:on_done", SOCK_FAULT, sock_connect_async, W.unc, W.lst_addr, NULL, never());
  out = UNWRITTEN_HANDLE;
  CELL("null:on_done", SOCK_FAULT, sock_accept_async, W.lst, NULL, never(), &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  CELL("null:on_done", SOCK_FAULT, sock_shutdown_async, W.h, NULL, never());
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_send_to_async, W.udp, NULL, 1, 0, W.upeer_addr, track_cb,
       never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:address", SOCK_FAULT, sock_send_to_async, W.udp, "x", 1, 0, NULL, track_cb, never(),
       &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:on_done", SOCK_FAULT, sock_send_to_async, W.udp, "x", 1, 0, W.upeer_addr, NULL,
       never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:buf", SOCK_FAULT, sock_recv_from_async, W.udp, NULL, 4, 0, addr, sizeof addr,
       track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  CELL("null:on_done", SOCK_FAULT, sock_recv_from_async, W.udp, buf, 4, 0, addr, sizeof addr, NULL,
       never(), &n);
  ASSERT_UEQ(n, 0);
  for (int bit = 3; bit < 32; bit++) {
    int32_t f = (int32_t)(1u << bit);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_send_to_async, W.udp, "x", 1, f, W.upeer_addr,
         track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("enum:flags", SOCK_INVALID_ARGUMENT, sock_recv_from_async, W.udp, buf, sizeof buf, f,
         addr, sizeof addr, track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
  }
  const size_t huge[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1};
  for (size_t i = 0; i < COUNT(huge); i++) {
    n = UNWRITTEN;
    CELL("len:len", SOCK_INVALID_ARGUMENT, sock_send_to_async, W.udp, buf, huge[i], 0,
         W.upeer_addr, track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:cap", SOCK_INVALID_ARGUMENT, sock_recv_from_async, W.udp, buf, huge[i], 0, addr,
         sizeof addr, track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
    n = UNWRITTEN;
    CELL("len:address_cap", SOCK_INVALID_ARGUMENT, sock_recv_from_async, W.udp, buf, sizeof buf,
         0, addr, huge[i], track_cb, never(), &n);
    ASSERT_UEQ(n, 0);
  }
  /* a receive of nothing could not be told from end of stream */
  n = UNWRITTEN;
  CELL("len:cap", SOCK_INVALID_ARGUMENT, sock_recv_from_async, W.udp, buf, 0, 0, addr, sizeof addr,
       track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  /* an address buffer too small for the family's longest text */
  n = UNWRITTEN;
  CELL("len:address_cap", SOCK_NO_BUFFER_SPACE, sock_recv_from_async, W.udp, buf, sizeof buf, 0,
       addr, 8, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  /* malformed address text */
  CELL("null:address", SOCK_INVALID_ARGUMENT, sock_connect_async, W.unc, "no port",
       never_status_cb, never());
  n = UNWRITTEN;
  CELL("null:address", SOCK_INVALID_ARGUMENT, sock_send_to_async, W.udp, "x", 1, 0, "no port",
       track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  /* state: accept on a socket that does not listen, shutdown of one not
   * connected, connect of one that is */
  CELL("state", SOCK_INVALID_ARGUMENT, sock_accept_async, W.unc, never_accept_cb, never(), &out);
  CELL("state", SOCK_NOT_CONNECTED, sock_shutdown_async, W.unc, never_status_cb, never());
  CELL("state", SOCK_IS_CONNECTED, sock_connect_async, W.h, W.lst_addr, never_status_cb, never());
  CELL("state", SOCK_INVALID_ARGUMENT, sock_connect_async, W.lst, W.lst_addr, never_status_cb,
       never());

  /* the NULLs that are allowed: user_data comes back NULL, outputs may be NULL */
  sock_handle c = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  sock_status s;
  CELL_ANY2("null:user_data", s, SOCK_OK, SOCK_IO_PENDING, sock_connect_async, c, W.lst_addr,
            null_ud_status_cb, NULL);
  if (s == SOCK_IO_PENDING) wait_atomic(&g_null_status_calls, 1);
  CELL_ANY2("null:user_data", s, SOCK_OK, SOCK_IO_PENDING, sock_accept_async, W.lst,
            null_ud_accept_cb, NULL, &out);
  if (s == SOCK_IO_PENDING) {
    wait_atomic(&g_null_accept_calls, 1);
    out = g_null_accepted;
  }
  ASSERT(out != SOCK_INVALID_HANDLE);
  ASSERT_OK(sock_close(out));
  /* an accepted handle has nowhere to go without accepted_now */
  CELL("null:accepted_now", SOCK_FAULT, sock_accept_async, W.lst, never_accept_cb, never(), NULL);
  ASSERT_OK(sock_set_option(c, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  int before = atomic_load(&g_null_status_calls);
  CELL("null:user_data", SOCK_IO_PENDING, sock_shutdown_async, c, null_ud_status_cb, NULL);
  wait_atomic(&g_null_status_calls, before + 1);
  n = UNWRITTEN;
  CELL_ANY2("null:sent_now", s, SOCK_OK, SOCK_IO_PENDING, sock_send_to_async, W.udp, "u", 1, 0,
            W.upeer_addr, null_ud_cb, NULL, NULL);
  int ud_calls = atomic_load(&g_null_ud_calls);
  ASSERT_OK(sock_set_option(W.udp, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0));
  CELL("null:user_data", SOCK_IO_PENDING, sock_send_to_async, W.udp, "v", 1, 0, W.upeer_addr,
       null_ud_cb, NULL, &n);
  wait_atomic(&g_null_ud_calls, ud_calls + 1);
  ASSERT_OK(sock_set_option(W.udp, SOCK_OPT_ASYNC_INLINE_COMPLETION, 1));
  char got[4];
  for (int k = 0; k < 2; k++) {
    wait_readable(W.upeer);
    ASSERT_EQ(recv(W.upeer, got, sizeof got, 0), 1);
  }
  /* a receive with no address wanted, then with user_data and
   * received_now NULL, on a fresh datagram socket */
  sock_handle u = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_bind(u, "127.0.0.1:0"));
  char uaddr[SOCK_ADDRESS_MAX_LEN];
  local_addr(u, uaddr);
  n = UNWRITTEN;
  CELL("null:address", SOCK_IO_PENDING, sock_recv_from_async, u, buf, 1, 0, NULL, 0, null_ud_cb,
       NULL, &n);
  ASSERT_UEQ(n, 0);
  CELL("null:received_now", SOCK_IO_PENDING, sock_recv_from_async, u, buf + 1, 1, 0, NULL, 0,
       null_ud_cb, NULL, NULL);
  CELL("null:user_data", SOCK_IO_PENDING, sock_recv_from_async, u, buf + 2, 1, 0, addr,
       sizeof addr, null_ud_cb, NULL, NULL);
  ud_calls = atomic_load(&g_null_ud_calls);
  for (int k = 0; k < 3; k++) udp_to_port(W.upeer, addr_port(uaddr), "w", 1);
  wait_atomic(&g_null_ud_calls, ud_calls + 3);
  ASSERT_EQ(buf[0], 'w');
  ASSERT_EQ(buf[2], 'w');
  ASSERT_MSG(strcmp(addr, W.upeer_addr) == 0, "sender %s, expected %s", addr, W.upeer_addr);
  ASSERT_OK(sock_close(u));
  ASSERT_EQ(atomic_load(&g_null_status_bad), 0);
  ASSERT_EQ(atomic_load(&g_null_accept_bad), 0);
  ASSERT_OK(sock_close(c));
}

/* ---- bad handles: every handle-taking export -------------------------- */

/* With otherwise valid arguments, each call returns SOCK_NOT_SOCKET, writes
 * its documented outputs and calls no callback. */
static void sweep_bad_handle(sock_handle h, const char *kind) {
  char buf[16], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  int64_t v;
  int32_t fd;
  sock_handle out;
  sock_buf b = {"x", 1};
  ctx("%s handle 0x%" PRIx64, kind, h);
#define NS(fn, ...) CELL("handle", SOCK_NOT_SOCKET, fn, __VA_ARGS__)
  NS(sock_bind, h, "127.0.0.1:0");
  NS(sock_listen, h, 4);
  out = UNWRITTEN_HANDLE;
  NS(sock_accept, h, &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  NS(sock_connect, h, W.lst_addr);
  NS(sock_shutdown, h, SOCK_SHUT_BOTH);
  NS(sock_local_address, h, addr, sizeof addr, &n);
  NS(sock_peer_address, h, addr, sizeof addr, &n);
  NS(sock_set_option, h, SOCK_OPT_BLOCKING, 0);
  NS(sock_set_option, h, SOCK_OPT_LINGER_MS, 0);
  NS(sock_get_option, h, SOCK_OPT_BLOCKING, &v);
  NS(sock_fd, h, &fd);
  n = UNWRITTEN;
  NS(sock_send, h, "x", 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_send_to, h, "x", 1, 0, W.upeer_addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_sendv, h, &b, 1, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv, h, buf, sizeof buf, 0, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv_from, h, buf, sizeof buf, 0, addr, sizeof addr, &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_send_async, h, "x", 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_sendv_async, h, &b, 1, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv_async, h, buf, sizeof buf, 0, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  NS(sock_connect_async, h, W.lst_addr, never_status_cb, never());
  out = UNWRITTEN_HANDLE;
  NS(sock_accept_async, h, never_accept_cb, never(), &out);
  ASSERT(out == SOCK_INVALID_HANDLE);
  NS(sock_shutdown_async, h, never_status_cb, never());
  n = UNWRITTEN;
  NS(sock_send_to_async, h, "x", 1, 0, W.upeer_addr, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  n = UNWRITTEN;
  NS(sock_recv_from_async, h, buf, sizeof buf, 0, addr, sizeof addr, track_cb, never(), &n);
  ASSERT_UEQ(n, 0);
  NS(sock_cancel_sends, h);
  NS(sock_attach, h, NULL);
  NS(sock_attach, h, W.man);
  NS(sock_close, h);
#undef NS
}

static int is_live(sock_handle x, const sock_handle *live, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (live[i] == x) return 1;
  return 0;
}

/* The stale case: h1 closed, a new socket took its descriptor, and that
 * socket is connected with data waiting. Nothing done through h1 may touch
 * it. */
static void cells_stale(void) {
  char buf[8];
  int port;
  int lfd = peer_listen(AF_INET, 0, &port);
  char addr[SOCK_ADDRESS_MAX_LEN];
  addr_text(addr, sizeof addr, AF_INET, port);
  sock_handle h1 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  int fd1 = handle_fd(h1);
  ASSERT_OK(sock_close(h1));
  sock_handle h2 = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_MSG(handle_fd(h2) == fd1, "the new socket got fd %d, not %d: no stale case to test",
             handle_fd(h2), fd1);
  ASSERT(h2 != h1);
  ASSERT_OK(sock_connect(h2, addr));
  int p2 = peer_accept(lfd);
  close(lfd);
  ASSERT_SYS(send(p2, "data2", 5, 0));
  wait_readable(fd1);

  sweep_bad_handle(h1, "stale (fd reused by a connected socket)");

  /* h2: still open, blocking, connected, its data unread */
  int64_t v = -1;
  ASSERT_OK(sock_get_option(h2, SOCK_OPT_BLOCKING, &v));
  ASSERT_EQ(v, 1);
  ASSERT_OK(sock_get_option(h2, SOCK_OPT_LINGER_MS, &v));
  ASSERT_EQ(v, -1);
  ASSERT_EQ(handle_fd(h2), fd1);
  ASSERT_OK(sock_set_option(h2, SOCK_OPT_RECV_TIMEOUT_MS, 2000));
  recv_exact(h2, buf, 5);
  ASSERT(memcmp(buf, "data2", 5) == 0);
  ASSERT(!peer_readable(p2, 50)); /* nothing reached its peer */
  ASSERT_OK(sock_send(h2, "END2", 4, 0, NULL));
  peer_expect(p2, "END2", 4, "first bytes at the stale fd's new peer");
  ASSERT_OK(sock_close(h2));
  long long mm;
  ASSERT_UEQ(peer_drain(p2, 16, 0, &mm), 0); /* EOF, not RST, nothing more */
  close(p2);
}

static void cells_handles(void) {
  /* never issued */
  sock_handle live[] = {W.h, W.shut, W.lst, W.unc, W.unc2, W.udp, W.udpc};
  sweep_bad_handle(SOCK_INVALID_HANDLE, "zero");
  sweep_bad_handle(NEVER_ISSUED_HANDLE, "never-issued");
  sweep_bad_handle(UINT64_MAX, "never-issued");
  sweep_bad_handle(1, "never-issued");
  /* a live handle with bits flipped: another generation or slot */
  static const int bits[] = {63, 48, 32, 24};
  for (size_t i = 0; i < COUNT(bits); i++) {
    sock_handle f = W.h ^ ((sock_handle)1 << bits[i]);
    if (is_live(f, live, COUNT(live))) continue;
    sweep_bad_handle(f, "forged (live handle, one bit flipped)");
  }
  /* closed: a stream, a datagram socket, an accepted socket, a listener */
  sock_handle c = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_close(c));
  sweep_bad_handle(c, "closed stream");
  c = new_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM);
  ASSERT_OK(sock_close(c));
  sweep_bad_handle(c, "closed datagram");
  int cfd = peer_connect(AF_INET, addr_port(W.lst_addr));
  sock_handle acc = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_accept(W.lst, &acc));
  ASSERT_OK(sock_close(acc));
  sweep_bad_handle(acc, "closed accepted");
  close(cfd);
  sock_handle l = new_listener(SOCK_FAMILY_INET, "127.0.0.1:0", NULL);
  ASSERT_OK(sock_close(l));
  sweep_bad_handle(l, "closed listener");
  cells_stale();
}

/* ---- nothing happened --------------------------------------------------- */

static void verify_nothing_happened(void) {
  char buf[16], addr[SOCK_ADDRESS_MAX_LEN];
  size_t n;
  ctx("afterwards");
  /* the connected pair: its unread data is intact, and its peer got only
   * what the good cells sent, then the end marker */
  recv_exact(W.h, buf, 4);
  ASSERT(memcmp(buf, "data", 4) == 0);
  ASSERT_OK(sock_send(W.h, "END", 3, 0, NULL));
  expect_at_peer("END", 3);
  peer_expect(W.pfd, W.expect, W.nexpect, "bytes at the peer of the connected socket");
  ASSERT(!peer_readable(W.pfd, 100));
  /* shut: its peer saw end of stream and nothing else */
  long long mm;
  ASSERT_UEQ(peer_drain(W.spfd, 16, 0, &mm), 0);
  /* udp: the queued datagram is the first and only one */
  n = UNWRITTEN;
  ASSERT_OK(sock_recv_from(W.udp, buf, sizeof buf, 0, addr, sizeof addr, &n));
  ASSERT_UEQ(n, 5);
  ASSERT(memcmp(buf, "dgram", 5) == 0);
  ASSERT_STATUS(SOCK_TIMED_OUT, sock_recv(W.udp, buf, sizeof buf, 0, &n));
  /* upeer: nothing arrived but the marker */
  ASSERT_OK(sock_send(W.udpc, "mark", 4, 0, NULL));
  ASSERT(peer_readable(W.upeer, 5000));
  ssize_t r = recv(W.upeer, buf, sizeof buf, 0);
  ASSERT_MSG(r == 4 && memcmp(buf, "mark", 4) == 0, "a refused datagram reached the peer");
  ASSERT(!peer_readable(W.upeer, 50));
  /* the listener still listens, the unconnected socket still is one */
  int cfd = peer_connect(AF_INET, addr_port(W.lst_addr));
  sock_handle acc = UNWRITTEN_HANDLE;
  ASSERT_OK(sock_accept(W.lst, &acc));
  ASSERT_OK(sock_close(acc));
  close(cfd);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_peer_address(W.unc, addr, sizeof addr, &n));
  ASSERT_STATUS(SOCK_INVALID_ARGUMENT, sock_accept(W.unc, &acc)); /* bad backlogs: not listening */
  ASSERT_OK(sock_bind(W.unc, "127.0.0.1:0"));                    /* bad binds left it unbound */
  /* no callback of a refused call ran, on any engine */
  size_t done = UNWRITTEN;
  ASSERT_OK(sock_engine_poll(W.man, 50, &done));
  ASSERT_UEQ(done, 0);
  tracker_settle(&W.never, 0, 200);
}

/* A refused sock_shutdown left the socket as it was: still not connected
 * for receiving and sending. (Linux marks the socket shut down even as
 * shutdown(2) fails with ENOTCONN; the library must not let that show.) */
static void verify_refused_shutdown_had_no_effect(void) {
  char buf[8];
  size_t n = UNWRITTEN;
  ctx("after the refused sock_shutdown cells");
  sock_status s = sock_recv(W.unc2, buf, sizeof buf, 0, &n);
  ASSERT_MSG(s == SOCK_NOT_CONNECTED,
             "sock_recv on an unconnected socket after a refused sock_shutdown: expected "
             "SOCK_NOT_CONNECTED, got %s with %zu bytes (the failed shutdown had an effect)",
             status_name(s), n);
  ASSERT_STATUS(SOCK_NOT_CONNECTED, sock_send(W.unc2, "x", 1, 0, &n));
}

static void check_coverage(void) {
  char missing[4096] = "";
  size_t nmissing = 0;
  for (size_t i = 0; i < NEXPORTS; i++) {
    const char *fn = g_exports[i].name;
    char params[512];
    int any = 0;
    for (size_t k = 0; k < g_nhits; k++) any |= strcmp(g_hits[k].fn, fn) == 0;
    if (!any) {
      snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "\n  %s: no cell at all",
               fn);
      nmissing++;
      continue;
    }
    snprintf(params, sizeof params, "%s", g_exports[i].params);
    for (char *save = NULL, *p = strtok_r(params, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
      while (isspace((unsigned char)*p)) p++;
      if (strcmp(p, "void") == 0 || *p == '\0') continue;
      /* name: the last identifier; type: everything before it */
      char *end = p + strlen(p);
      while (end > p && isspace((unsigned char)end[-1])) *--end = '\0';
      char *name = end;
      while (name > p && (isalnum((unsigned char)name[-1]) || name[-1] == '_')) name--;
      char type[128];
      snprintf(type, sizeof type, "%.*s", (int)(name - p), p);
      char need[2][64];
      int nneed = 0;
      int is_ptr = strchr(type, '*') != NULL || strstr(type, "_callback") != NULL;
      if (is_ptr) {
        snprintf(need[nneed++], sizeof need[0], "null:%s", name);
        if (strstr(type, "sock_engine") && !strstr(type, "**"))
          snprintf(need[nneed++], sizeof need[0], "dead:%s", name);
      } else if (strstr(type, "sock_handle")) {
        snprintf(need[nneed++], sizeof need[0], "handle");
      } else if (strncmp(type, "size_t", 6) == 0) {
        snprintf(need[nneed++], sizeof need[0], "len:%s", name);
      } else {
        snprintf(need[nneed++], sizeof need[0], "enum:%s", name);
      }
      for (int k = 0; k < nneed; k++) {
        if (was_hit(fn, need[k])) continue;
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing),
                 "\n  %s: no '%s' cell (parameter '%s%s')", fn, need[k], type, name);
        nmissing++;
      }
    }
  }
  /* and no cell names a function sock.h does not declare */
  for (size_t k = 0; k < g_nhits; k++) {
    int known = 0;
    for (size_t i = 0; i < NEXPORTS; i++) known |= strcmp(g_hits[k].fn, g_exports[i].name) == 0;
    ASSERT_MSG(known, "cell for %s, which exports.h does not list", g_hits[k].fn);
  }
  ASSERT_MSG(nmissing == 0, "%zu exports or parameters are not covered by the matrix:%s", nmissing,
             missing);
}

TEST_IMPL(bad_input_matrix) {
  ASSERT_MSG(NEXPORTS >= 30, "exports.h lists only %zu functions: is the generator broken?",
             NEXPORTS);
  setup();
  cells_library();
  cells_socket();
  cells_null_ok();
  /* data waiting to be (not) consumed by the refused calls below */
  ASSERT_SYS(send(W.pfd, "data", 4, 0));
  wait_readable(handle_fd(W.h));
  udp_to_port(W.upeer, addr_port(W.udp_addr), "dgram", 5);
  wait_readable(handle_fd(W.udp));
  cells_null_fault();
  cells_enum();
  cells_len();
  cells_state();
  cells_engine();
  cells_connection();
  cells_handles();
  verify_nothing_happened();
  check_coverage();
  printf("# matrix: %zu cells (%zu distinct function/kind pairs, %zu exports)\n", g_cells, g_nhits,
         NEXPORTS);
  verify_refused_shutdown_had_no_effect();

  ASSERT_OK(sock_close(W.h));
  ASSERT_OK(sock_close(W.shut));
  ASSERT_OK(sock_close(W.lst));
  ASSERT_OK(sock_close(W.unc));
  ASSERT_OK(sock_close(W.unc2));
  ASSERT_OK(sock_close(W.udp));
  ASSERT_OK(sock_close(W.udpc));
  ASSERT_OK(sock_engine_free(W.man));
  ASSERT_OK(sock_engine_free(W.thr));
  close(W.pfd);
  close(W.spfd);
  close(W.upeer);
  tracker_free(&W.never);
  return 0;
}
