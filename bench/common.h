/*
 * Shared helpers of the libsock benchmarks: clocks, the data pattern,
 * loopback set-up (raw POSIX and libsock, as a user writes it), result
 * lines, a futex notifier for the default engine's callbacks, statistics.
 *
 * Every program prints its measurements as lines
 *     R <case> <contender> <rep> <metric> <value>
 * on stdout; report.py turns them into results/latest.md.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sock.h"

/* The byte stream of every connection is this table repeated; every
 * message size of the suite divides the period, so message k of size S
 * is the contiguous slice pattern_at(k * S). */
#define PATTERN_PERIOD (1u << 20)

void pattern_init(void);
/* Bytes at stream offset `off` (valid for up to PATTERN_PERIOD bytes). */
const unsigned char *pattern_at(uint64_t off);

uint64_t now_ns(void);
double now_s(void);

/* Raises RLIMIT_NOFILE's soft limit to the hard one; returns the new limit. */
long raise_fd_limit(void);
/* User + system CPU time of this process (all its threads, not its
 * children), in seconds. */
double cpu_seconds(void);
/* Resident set size of this process, in bytes (from /proc/self/statm). */
long rss_bytes(void);

_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void die_errno(const char *what);
/* Waits for child `pid` and aborts unless it exited with status 0;
 * `what` names it in the message. */
void reap_child(pid_t pid, const char *what);
/* Aborts with the libsock status text unless s == SOCK_OK. */
void check_sock(const char *what, sock_status s);

/* A listening TCP socket on 127.0.0.1, ephemeral port. rcvbuf > 0 sets
 * SO_RCVBUF, which accepted sockets inherit. */
int make_listener(int rcvbuf, uint16_t *port);

/* Connected raw TCP socket: blocking connect, then the options. */
int raw_connect(uint16_t port, int sndbuf, int nodelay, int nonblock);
/* The same with libsock, as its header documents. */
sock_handle ls_connect(uint16_t port, int sndbuf, int nodelay);

void set_nonblock(int fd);

/* One result line on stdout. */
void emit(const char *case_id, const char *contender, int rep, const char *metric, double value);

/* Command line shared by all programs:
 *   --reps N      repetitions (default 5)
 *   --quick       small sizes, for the smoke test (implies --shorter 20)
 *   --shorter D   throughput trials send 1/D of their full message count
 *   --only SUB    run only cases whose id contains SUB */
struct opts {
    int reps;
    int quick;
    int shorter;
    const char *only;
};
void parse_opts(int argc, char **argv, struct opts *o);
int case_selected(const struct opts *o, const char *case_id);

/* Which of `n` contenders runs at position `j` (0..n-1) of repetition
 * `rep`: the rows of a balanced Latin square (Williams design). Over n
 * repetitions (2n when n is odd) every contender runs equally often at each
 * position and right after each other contender, so neither its place in a
 * repetition nor the contender that ran just before it (and what that one
 * left behind: a busy CPU, sockets closing) favours one of them. For two
 * contenders: A B, B A. */
int run_order(int rep, int j, int n);

/* Statistics (sorts `v` in place). */
double median(double *v, size_t n);
double percentile(double *v, size_t n, double p);

/* A sequence number with a futex, so callbacks on the default engine's
 * thread can wake the main thread only when it sleeps. */
struct notifier {
    _Atomic uint32_t seq;
    _Atomic uint32_t sleepers;
};
void notifier_signal(struct notifier *n);
uint32_t notifier_snapshot(struct notifier *n);
/* Sleeps until seq differs from `seen` (returns at once if it already does). */
void notifier_wait(struct notifier *n, uint32_t seen);

/* Writes all of buf to a blocking descriptor (send with MSG_NOSIGNAL). */
void send_all_raw(int fd, const void *buf, size_t len);

#endif
