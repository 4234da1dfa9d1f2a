/*
 * The receiving side, shared by every contender: plain POSIX code in a
 * forked process, so sender and receiver are separate processes as a
 * user's would be.
 *
 * A sink accepts `nconns` connections on 127.0.0.1, receives until every
 * one reaches end of stream, counts the bytes and checks each
 * connection's stream against the pattern (common.h), then reports to the
 * parent through a pipe. sink_finish() makes the benchmark exit non-zero
 * when the count or the content is wrong, or the receiver crashed, so a
 * broken library cannot post a number.
 */
#ifndef BENCH_RECEIVER_H
#define BENCH_RECEIVER_H

#include <stdint.h>
#include <sys/types.h>

struct sink_cfg {
    int nconns;
    /* phase_us == 0: fast receiver (recv into 256 KiB as soon as data is
     * there). phase_us > 0: lagging receiver. Connection i belongs to group
     * i % groups (groups >= 2); in each phase of phase_us microseconds one
     * group is read as the fast receiver reads, the others are not read at
     * all, and the next phase moves on to the next group. So every
     * connection reads in bursts and pauses ((groups - 1) * phase_us), its
     * sender's buffers fill and its sends go pending, while the receiver
     * as a whole stays busy (with one connection it sleeps in the pauses). */
    int phase_us;
    int groups;
    int chunk;  /* recv size, 0 = 256 KiB */
    int rcvbuf; /* SO_RCVBUF of the accepted sockets, 0 = kernel default */
    int hold;   /* read nothing until peer_go() */
};

struct peer {
    pid_t pid;
    int report_fd;
    int go_fd;
    uint16_t port;
};

void sink_start(struct peer *p, const struct sink_cfg *cfg);
/* Lets a holding sink start reading. */
void peer_go(struct peer *p);
/* Waits for the sink's report; dies unless it received exactly `expected`
 * bytes, all of them the pattern, and exited cleanly. */
void sink_finish(struct peer *p, uint64_t expected);

/* Echo server for ping-pong: one connection, TCP_NODELAY, returns every
 * `msg` bytes as soon as they are complete, until end of stream. */
void echo_start(struct peer *p, int msg);
void echo_finish(struct peer *p);

#endif
