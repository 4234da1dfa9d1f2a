/*
 * Helpers for the async tests: a completion tracker that records every
 * callback (how often, with what, on which thread, in which order) and a
 * plain-POSIX collector peer that keeps every byte it reads.
 */
#ifndef TEST_ASYNC_HELPERS_H
#define TEST_ASYNC_HELPERS_H

#include "test-helpers.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* ---- completion tracker ------------------------------------------------
 * One op_t per operation; its address is the operation's user_data and
 * track_cb its callback. The callback records under the tracker's lock:
 * how many times it ran for that op, the status, the bytes, the thread,
 * and its position among all callbacks of the tracker. */

typedef struct tracker tracker;

typedef struct {
  tracker *t;
  size_t index;
  sock_handle h;     /* the handle the callback must be given */
  size_t len;        /* the operation's length */
  sock_status submit_status; /* what the submitting call returned */
  size_t sent_now;   /* what it wrote to *sent_now / *received_now */
  /* written by the callback */
  int calls;
  sock_status status;
  size_t bytes;
  pthread_t thread;
  size_t position;   /* 0 for the first callback of the tracker, ... */
  uint64_t at_ms;    /* now_ms() when the callback ran */
} op_t;

/* Runs inside the callback after it was recorded (lock released). */
typedef void (*track_hook)(op_t *op, sock_handle h, sock_status s, size_t n);

struct tracker {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  op_t *ops;
  size_t nops;
  size_t calls;        /* callbacks that ran */
  size_t *order;       /* order[k] = index of the k-th callback's op */
  size_t wrong_handle; /* callbacks given another handle than the op's */
  size_t duplicates;   /* second and later callbacks of one op */
  track_hook hook;
};

void tracker_init(tracker *t, size_t nops);
void tracker_free(tracker *t);
/* Prepares op i (handle, length) and returns it, for use as user_data. */
op_t *tracker_op(tracker *t, size_t i, sock_handle h, size_t len);
/* The callback: records the completion of the op_t in user_data. */
void track_cb(sock_handle h, sock_status s, size_t n, void *user_data);
size_t tracker_calls(tracker *t);
/* Waits until at least n callbacks ran; fails the test after timeout_ms. */
void tracker_wait(tracker *t, size_t n, unsigned timeout_ms);
/* After a grace period: exactly `expected` callbacks ran, none twice, none
 * with a wrong handle. */
void tracker_settle(tracker *t, size_t expected, unsigned grace_ms);

/* sock_send_async of op i with track_cb; records submit_status/sent_now. */
sock_status track_send(tracker *t, size_t i, sock_handle h, const void *buf, size_t len);
/* sock_recv_async of op i with track_cb. */
sock_status track_recv(tracker *t, size_t i, sock_handle h, void *buf, size_t cap);

/* ---- collector peer (POSIX only) ---------------------------------------
 * A thread that reads fd until EOF, an error, or `expect` bytes (0: until
 * EOF), keeping everything in `buf` (grown as needed). */
typedef struct {
  int fd;
  size_t expect;
  unsigned sleep_every; /* pause every N reads (0 = never) */
  unsigned pause_ms;    /* for that long (default 1 ms) */
  size_t chunk;         /* read size, default 64 KiB */
  /* results */
  uint8_t *buf;
  size_t got, cap;
  int eof, err;
  int allow_reset;   /* set before start: ECONNRESET ends the stream (reset = 1) */
  int reset;
  pthread_t tid;
} collector_t;

void collector_start(collector_t *c);
void collector_join(collector_t *c); /* fails the test on a read error */
void collector_free(collector_t *c);

/* A TCP pair whose buffers hold only a few KiB in flight: the peer's
 * SO_RCVBUF and the client's SEND_BUFFER_SIZE set to `bufsize`. */
sock_handle small_pair(int bufsize, int *peer_fd);

/* Reads exactly len bytes and checks they equal `expect` (reports the first
 * differing offset). */
void peer_expect(int fd, const void *expect, size_t len, const char *what);

/* Soft RLIMIT_NOFILE raised to the hard limit; returns the new soft limit. */
long raise_fd_limit(void);

#endif /* TEST_ASYNC_HELPERS_H */
