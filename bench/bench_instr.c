/*
 * The program run under `valgrind --tool=callgrind --toggle-collect=run_calls`
 * to count the user-space instructions of one 64-byte send:
 *
 *     bench_instr send|sock_send|sock_send_async N
 *
 * makes one connection (SO_SNDBUF 4 MiB, to a receiver process that drains
 * and checks everything), warms up with 100 calls, then makes N calls of
 * the chosen kind inside run_calls(), the only function whose instructions
 * are collected. (count(N) - count(0)) / N is the cost of one call,
 * including the few instructions of the loop (the same in every mode).
 * sock_send_async must complete inline (SOCK_OK) every time; the program
 * fails otherwise, since the count would then not be that of the inline path.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "receiver.h"

#define MSG 64
#define WARMUP 100
#define SNDBUF (4 << 20)

enum mode { M_SEND, M_SOCK_SEND, M_SOCK_SEND_ASYNC };

static int fd = -1;
static sock_handle h;
static uint64_t sent_msgs;

static void never_called(sock_handle hh, sock_status s, size_t n, void *ud) {
    (void)hh;
    (void)n;
    (void)ud;
    die("the callback ran (status %d): the send did not complete inline", (int)s);
}

/* One call of each kind. The mode is chosen once per loop, not per call,
 * so that every mode's loop costs the same few instructions around its
 * call (see run_calls). */
static inline void one_send(void) {
    const unsigned char *p = pattern_at(sent_msgs * MSG);
    sent_msgs++;
    if (send(fd, p, MSG, MSG_NOSIGNAL) != MSG)
        die_errno("send");
}

static inline void one_sock_send(void) {
    const unsigned char *p = pattern_at(sent_msgs * MSG);
    sent_msgs++;
    if (sock_send(h, p, MSG, SOCK_MSG_NONE, NULL) != SOCK_OK)
        die("sock_send failed");
}

static inline void one_sock_send_async(void) {
    const unsigned char *p = pattern_at(sent_msgs * MSG);
    sent_msgs++;
    sock_status s = sock_send_async(h, p, MSG, SOCK_MSG_NONE, never_called, NULL, NULL);
    if (s != SOCK_OK)
        die("sock_send_async returned %d, not SOCK_OK (inline)", (int)s);
}

/* n calls of the chosen kind: one loop per mode, each the same around its
 * call (counter, pattern_at, the call, the check of its result). */
static inline void calls(enum mode m, uint64_t n) {
    switch (m) {
    case M_SEND:
        for (uint64_t i = 0; i < n; i++)
            one_send();
        break;
    case M_SOCK_SEND:
        for (uint64_t i = 0; i < n; i++)
            one_sock_send();
        break;
    case M_SOCK_SEND_ASYNC:
        for (uint64_t i = 0; i < n; i++)
            one_sock_send_async();
        break;
    }
}

/* Not collected. */
__attribute__((noinline)) static void warm_up(enum mode m) { calls(m, WARMUP); }

/* The only function callgrind collects (--toggle-collect=run_calls). */
__attribute__((noinline)) static void run_calls(enum mode m, uint64_t n) { calls(m, n); }

int main(int argc, char **argv) {
    enum mode m;
    struct peer p;
    struct sink_cfg cfg = {.nconns = 1};
    if (argc != 3)
        die("usage: %s send|sock_send|sock_send_async N", argv[0]);
    if (strcmp(argv[1], "send") == 0)
        m = M_SEND;
    else if (strcmp(argv[1], "sock_send") == 0)
        m = M_SOCK_SEND;
    else if (strcmp(argv[1], "sock_send_async") == 0)
        m = M_SOCK_SEND_ASYNC;
    else
        die("unknown mode %s", argv[1]);
    uint64_t n = strtoull(argv[2], NULL, 10);
    pattern_init();
    sink_start(&p, &cfg);
    if (m == M_SEND)
        fd = raw_connect(p.port, SNDBUF, 0, 0);
    else
        h = ls_connect(p.port, SNDBUF, 0);
    warm_up(m);
    run_calls(m, n);
    if (m == M_SEND)
        close(fd);
    else
        check_sock("sock_close", sock_close(h));
    sink_finish(&p, sent_msgs * MSG);
    printf("%s: %llu calls measured, all bytes received intact\n", argv[1], (unsigned long long)n);
    return 0;
}
