/*
 * Blocking throughput, one connection: sock_send (libsock, blocking mode,
 * send-all) against send(2) with MSG_NOSIGNAL in a send-all loop, at
 * 64 B, 1 KiB, 16 KiB, 256 KiB and 1 MiB messages. Default socket options
 * (Nagle on) on both. Time runs from the first send until the receiver
 * (another process) has counted and checked every byte. Also reported: the
 * sending process's CPU time (user + system) per message.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "receiver.h"

struct size_case {
    const char *id;
    size_t size;
    uint64_t msgs;  /* per full-length trial; --shorter D sends 1/D */
};

static const struct size_case cases[] = {
    {"blocking-64B", 64, 1000000},
    {"blocking-1KiB", 1024, 400000},
    {"blocking-16KiB", 16384, 80000},
    {"blocking-256KiB", 262144, 6000},
    {"blocking-1MiB", 1048576, 1500},
};

static double run_raw(size_t size, uint64_t msgs) {
    struct peer p;
    struct sink_cfg cfg = {.nconns = 1};
    sink_start(&p, &cfg);
    int fd = raw_connect(p.port, 0, 0, 0);
    uint64_t t0 = now_ns();
    for (uint64_t k = 0; k < msgs; k++)
        send_all_raw(fd, pattern_at(k * size), size);
    close(fd);
    sink_finish(&p, msgs * size);
    return (double)(now_ns() - t0) / 1e9;
}

static double run_libsock(size_t size, uint64_t msgs) {
    struct peer p;
    struct sink_cfg cfg = {.nconns = 1};
    sink_start(&p, &cfg);
    sock_handle h = ls_connect(p.port, 0, 0);
    uint64_t t0 = now_ns();
    for (uint64_t k = 0; k < msgs; k++) {
        size_t sent;
        sock_status s = sock_send(h, pattern_at(k * size), size, SOCK_MSG_NONE, &sent);
        if (s != SOCK_OK || sent != size)
            die("sock_send: %s, %zu of %zu bytes", sock_strerror(s), sent, size);
    }
    check_sock("sock_close", sock_close(h));
    sink_finish(&p, msgs * size);
    return (double)(now_ns() - t0) / 1e9;
}

int main(int argc, char **argv) {
    struct opts o;
    parse_opts(argc, argv, &o);
    pattern_init();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct size_case *c = &cases[i];
        uint64_t msgs = c->msgs / (uint64_t)o.shorter;
        if (!case_selected(&o, c->id))
            continue;
        for (int rep = 0; rep < o.reps; rep++) {
            /* A B, then B A (run_order): neither always first. */
            for (int j = 0; j < 2; j++) {
                int libsock = run_order(rep, j, 2) == 0;
                double cpu0 = cpu_seconds();
                double secs = libsock ? run_libsock(c->size, msgs) : run_raw(c->size, msgs);
                double cpu = cpu_seconds() - cpu0;
                const char *who = libsock ? "libsock" : "send";
                emit(c->id, who, rep, "msgs_per_s", (double)msgs / secs);
                emit(c->id, who, rep, "GB_per_s", (double)(msgs * c->size) / secs / 1e9);
                emit(c->id, who, rep, "cpu_ns_per_msg", cpu * 1e9 / (double)msgs);
            }
        }
    }
    return 0;
}
