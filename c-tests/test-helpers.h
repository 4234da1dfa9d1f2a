/*
 * Helpers for the libsock C tests: assertion macros, a byte pattern with a
 * checksum, and helper peers written with plain POSIX calls only (the peer
 * never depends on libsock, so a library bug cannot hide itself on both ends).
 */
#ifndef TEST_HELPERS_H
#define TEST_HELPERS_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"

#define TEST_IMPL(name) int run_test_##name(void)

/* ---- assertions --------------------------------------------------------
 * On failure: print file:line, what was expected and what was seen, then
 * end the test process with exit code 1 (the runner reports it). */

void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* "SOCK_TIMED_OUT" for 10060; "?" for unknown values. */
const char *status_name(sock_status s);

#define FAIL(...) test_fail(__FILE__, __LINE__, __VA_ARGS__)

#define ASSERT(cond)                                                   \
  do {                                                                 \
    if (!(cond)) FAIL("assertion failed: %s", #cond);                  \
  } while (0)

#define ASSERT_MSG(cond, ...)                                          \
  do {                                                                 \
    if (!(cond)) FAIL(__VA_ARGS__);                                    \
  } while (0)

#define ASSERT_INT_OP_(a, op, b)                                       \
  do {                                                                 \
    long long a_ = (long long)(a);                                     \
    long long b_ = (long long)(b);                                     \
    if (!(a_ op b_))                                                   \
      FAIL("expected %s %s %s, got %lld vs %lld", #a, #op, #b, a_, b_);\
  } while (0)

#define ASSERT_UINT_OP_(a, op, b)                                      \
  do {                                                                 \
    unsigned long long a_ = (unsigned long long)(a);                   \
    unsigned long long b_ = (unsigned long long)(b);                   \
    if (!(a_ op b_))                                                   \
      FAIL("expected %s %s %s, got %llu vs %llu", #a, #op, #b, a_, b_);\
  } while (0)

#define ASSERT_EQ(a, b) ASSERT_INT_OP_(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP_(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP_(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP_(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP_(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP_(a, >=, b)
/* Unsigned comparisons, for size_t / uint64_t values (hashes, counts). */
#define ASSERT_UEQ(a, b) ASSERT_UINT_OP_(a, ==, b)
#define ASSERT_ULT(a, b) ASSERT_UINT_OP_(a, <, b)
#define ASSERT_ULE(a, b) ASSERT_UINT_OP_(a, <=, b)
#define ASSERT_UGT(a, b) ASSERT_UINT_OP_(a, >, b)
#define ASSERT_UGE(a, b) ASSERT_UINT_OP_(a, >=, b)

/* A libsock status: prints both names and sock_strerror of what was seen. */
#define ASSERT_STATUS(expected, expr)                                  \
  do {                                                                 \
    sock_status e_ = (expected);                                       \
    sock_status s_ = (expr);                                           \
    if (s_ != e_)                                                      \
      FAIL("%s: expected %s (%d), got %s (%d: %s; os errno %d)",       \
           #expr, status_name(e_), (int)e_, status_name(s_), (int)s_,  \
           sock_strerror(s_), (int)sock_os_error());                   \
  } while (0)

#define ASSERT_OK(expr) ASSERT_STATUS(SOCK_OK, expr)

/* The status must be one of two. */
#define ASSERT_STATUS2(exp1, exp2, expr)                               \
  do {                                                                 \
    sock_status e1_ = (exp1), e2_ = (exp2);                            \
    sock_status s_ = (expr);                                           \
    if (s_ != e1_ && s_ != e2_)                                        \
      FAIL("%s: expected %s or %s, got %s (%d: %s; os errno %d)",      \
           #expr, status_name(e1_), status_name(e2_), status_name(s_), \
           (int)s_, sock_strerror(s_), (int)sock_os_error());          \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                            \
  do {                                                                 \
    const char *a_ = (a);                                              \
    const char *b_ = (b);                                              \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)               \
      FAIL("expected %s == %s, got \"%s\" vs \"%s\"", #a, #b,          \
           a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
  } while (0)

/* A POSIX call returning -1 on error. */
#define ASSERT_SYS(expr)                                               \
  do {                                                                 \
    if ((expr) == -1) FAIL("%s failed: %s", #expr, strerror(errno));   \
  } while (0)

/* A value no call ever writes, to prove an output was written. */
#define UNWRITTEN ((size_t)0x5A5A5A5A)
#define UNWRITTEN_HANDLE ((sock_handle)0x5A5A5A5A5A5A5A5AULL)
#define NEVER_ISSUED_HANDLE ((sock_handle)0xdeadbeef00000001ULL)

/* ---- patterns and checksums ------------------------------------------- */

/* The byte at stream offset `off` of the test pattern (period 2^32, so a
 * shifted, dropped or repeated range never lines up by accident). */
uint8_t pattern_byte(uint64_t off);
void pattern_fill(void *buf, size_t len, uint64_t start_off);
/* Offset (relative to buf) of the first byte that differs, or -1. */
long long pattern_mismatch(const void *buf, size_t len, uint64_t start_off);
/* Malloc'd buffer holding the pattern from offset 0 (never NULL). */
uint8_t *pattern_alloc(size_t len);

#define FNV1A_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *buf, size_t len);

/* ---- time ------------------------------------------------------------- */
uint64_t now_ms(void);
void sleep_ms(unsigned ms);
/* A bound on how long something that must happen may take (a callback, a
 * peer's data, an accept), scaled by SOCK_TEST_WAIT_SCALE (a whole number,
 * default 1). Under valgrind a test runs 20-50x slower and `make
 * test-valgrind` sets the scale; the bound is a liveness check, never a
 * speed assertion. */
unsigned wait_bound_ms(unsigned ms);

/* ---- helper peers (POSIX only) ---------------------------------------- */

/* AF_INET / AF_INET6 TCP listener on 127.0.0.1 / ::1 port 0. `rcvbuf` > 0
 * sets SO_RCVBUF on the listener (inherited by accepted sockets). Writes the
 * port; returns the fd. */
int peer_listen(int af, int rcvbuf, int *port);
/* AF_UNIX stream listener at `path` (unlinked first). */
int peer_listen_unix(const char *path, int rcvbuf);
/* accept() with a 10 s deadline; fails the test on error/timeout. */
int peer_accept(int lfd);
/* Plain blocking TCP connect to 127.0.0.1/::1:port. */
int peer_connect(int af, int port);
/* A TCP socket bound to 127.0.0.1 port 0 that never listens: connecting to
 * the address text it writes is refused. Returns the fd (keep it open). */
int peer_bound_not_listening(char *addr, size_t cap);
/* UDP socket bound to 127.0.0.1/::1 port 0. */
int peer_udp(int af, int *port);
/* Address text for libsock: "127.0.0.1:P", "[::1]:P". */
void addr_text(char *buf, size_t cap, int af, int port);
/* Unique path /tmp/libsock-test-<pid>-<tag>.sock */
void unix_path(char *buf, size_t cap, const char *tag);
/* Abortive close: SO_LINGER {1,0} then close -> RST. */
void peer_reset(int fd);
/* Reads until EOF (or error), up to `max` bytes; verifies the pattern from
 * `start_off`. Returns the byte count; *mismatch = first bad offset or -1. */
size_t peer_drain(int fd, size_t max, uint64_t start_off, long long *mismatch);
/* A close that discards unsent data resets the connection: reads what the
 * peer receives until the end, checking it is the pattern from
 * `start_off`; *reset says it ended with ECONNRESET (0: a clean EOF). */
size_t peer_drain_until_end(int fd, uint64_t start_off, long long *mismatch, int *reset);
/* Reads exactly len bytes (fails the test on EOF/error/10 s of silence). */
void peer_read_exact(int fd, void *buf, size_t len);
/* True if fd becomes readable within ms. */
int peer_readable(int fd, int ms);
/* Entries of a /proc/self directory: open descriptors ("fd"), threads
 * ("task"); each count includes what the count itself opens. */
int proc_self_entries(const char *dir);

/* A libsock stream client connected to a POSIX peer. family is
 * SOCK_FAMILY_INET/INET6/UNIX; peer_rcvbuf > 0 shrinks the peer's receive
 * buffer. Returns the client handle; *peer_fd = the accepted POSIX socket. */
sock_handle connect_pair(int32_t family, int peer_rcvbuf, int *peer_fd);

/* ---- small libsock wrappers (assert success) ------------------------- */

sock_handle new_socket(int32_t family, int32_t type);
/* A TCP/unix listener bound to `address` ("127.0.0.1:0", "unix:/p", ...);
 * writes its local address text into addr_out (SOCK_ADDRESS_MAX_LEN). */
sock_handle new_listener(int32_t family, const char *address, char *addr_out);
int handle_fd(sock_handle h);
void local_addr(sock_handle h, char *buf); /* buf: SOCK_ADDRESS_MAX_LEN */
void peer_addr(sock_handle h, char *buf);
/* Port of "a.b.c.d:P" / "[v6]:P" text, or -1. */
int addr_port(const char *text);
/* sock_recv until n bytes arrived (fails on error / EOF). */
void recv_exact(sock_handle h, void *buf, size_t n);
/* getsockopt(fd, level, opt) as an int. */
int kernel_int_opt(int fd, int level, int opt);
/* SIGPIPE must have its default action and be unblocked, else a test about
 * "no SIGPIPE" could pass vacuously. */
void assert_sigpipe_default(void);

/* A reader thread: reads until `expect` bytes or EOF, hashing what arrived
 * and checking the pattern (from offset 0) unless check_pattern is 0. */
typedef struct {
  int fd;
  size_t expect;        /* stop after this many bytes (0 = until EOF) */
  size_t chunk;         /* read size, default 64 KiB */
  unsigned sleep_every; /* sleep 1 ms every N reads (0 = never) */
  int check_pattern;
  /* results */
  size_t got;
  uint64_t hash;
  long long mismatch; /* first bad offset, -1 if none */
  int err;            /* errno of a failed read, 0 if none */
  int eof;
  pthread_t tid;
} reader_t;

void reader_start(reader_t *r);
void reader_join(reader_t *r);

/* 1 in a build with AddressSanitizer (gcc or clang), else 0: for checks
 * that its quarantine or its allocator's fork behaviour would distort. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#endif /* TEST_HELPERS_H */
