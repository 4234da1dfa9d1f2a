#define _GNU_SOURCE
#include "receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define CHUNK_MAX (256 * 1024)

struct sink_report {
    uint64_t bytes;
    uint32_t conns;
    int32_t corrupt; /* connections whose stream differed from the pattern */
};

struct rconn {
    int fd;
    uint64_t off;
};

static unsigned char rbuf[CHUNK_MAX];

/* Counts and checks `n` received bytes of connection `c`. */
static void take(struct rconn *c, size_t n, struct sink_report *r) {
    if (memcmp(rbuf, pattern_at(c->off), n) != 0 && r->corrupt == 0)
        r->corrupt = 1;
    c->off += n;
    r->bytes += n;
}

/* The lagging receiver (see sink_cfg): one group of connections is
 * enabled in epoll per phase; the others wait. */
static void lagging_sink(struct rconn *conns, const struct sink_cfg *cfg, size_t chunk,
                         struct sink_report *r) {
    int ep = epoll_create1(EPOLL_CLOEXEC), open = cfg->nconns;
    int groups = cfg->groups >= 2 ? cfg->groups : 2, phase = 0;
    struct epoll_event evs[512];
    char *closed = calloc((size_t)cfg->nconns, 1);
    if (ep < 0 || closed == NULL)
        die("sink set-up failed");
    for (int i = 0; i < cfg->nconns; i++) {
        struct epoll_event ev = {.events = i % groups == 0 ? EPOLLIN : 0, .data.u32 = (uint32_t)i};
        set_nonblock(conns[i].fd);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
            die_errno("epoll_ctl");
    }
    uint64_t phase_end = now_ns() + (uint64_t)cfg->phase_us * 1000;
    while (open > 0) {
        uint64_t t = now_ns();
        if (t >= phase_end) {
            int next = (phase + 1) % groups;
            for (int i = 0; i < cfg->nconns; i++) {
                if (closed[i] || (i % groups != phase && i % groups != next))
                    continue;
                struct epoll_event ev = {.events = i % groups == next ? EPOLLIN : 0,
                                         .data.u32 = (uint32_t)i};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev) != 0)
                    die_errno("epoll_ctl");
            }
            phase = next;
            phase_end = t + (uint64_t)cfg->phase_us * 1000;
            continue;
        }
        int k = epoll_wait(ep, evs, 512, (int)((phase_end - t + 999999) / 1000000));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            die_errno("epoll_wait");
        for (int j = 0; j < k; j++) {
            uint32_t i = evs[j].data.u32;
            ssize_t n = recv(conns[i].fd, rbuf, chunk, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n < 0)
                die_errno("sink recv");
            if (n == 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
                close(conns[i].fd);
                closed[i] = 1;
                open--;
                r->conns++;
                continue;
            }
            take(&conns[i], (size_t)n, r);
        }
    }
    free(closed);
    close(ep);
}

static void sink_main(int lfd, const struct sink_cfg *cfg, int report_fd, int go_fd) {
    struct sink_report r = {0, 0, 0};
    struct rconn *conns = calloc((size_t)cfg->nconns, sizeof *conns);
    size_t chunk = cfg->chunk > 0 && cfg->chunk <= CHUNK_MAX ? (size_t)cfg->chunk : CHUNK_MAX;
    if (conns == NULL)
        die("out of memory");
    for (int i = 0; i < cfg->nconns; i++) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            if (errno != EINTR)
                die_errno("sink accept");
        conns[i].fd = fd;
    }
    close(lfd);
    if (cfg->hold) {
        char go;
        if (read(go_fd, &go, 1) != 1)
            die("sink: parent went away");
    }
    if (cfg->phase_us > 0) {
        lagging_sink(conns, cfg, chunk, &r);
    } else if (cfg->nconns == 1) {
        for (;;) {
            ssize_t n = recv(conns[0].fd, rbuf, chunk, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                die_errno("sink recv");
            if (n == 0)
                break;
            take(&conns[0], (size_t)n, &r);
        }
        close(conns[0].fd);
        r.conns = 1;
    } else {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event evs[512];
        int open = cfg->nconns;
        if (ep < 0)
            die_errno("epoll_create1");
        for (int i = 0; i < cfg->nconns; i++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            set_nonblock(conns[i].fd);
            if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
                die_errno("epoll_ctl");
        }
        while (open > 0) {
            int k = epoll_wait(ep, evs, 512, -1);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                die_errno("epoll_wait");
            for (int j = 0; j < k; j++) {
                struct rconn *c = &conns[evs[j].data.u32];
                ssize_t n = recv(c->fd, rbuf, chunk, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (n < 0)
                    die_errno("sink recv");
                if (n == 0) {
                    close(c->fd);
                    open--;
                    r.conns++;
                    continue;
                }
                take(c, (size_t)n, &r);
            }
        }
        close(ep);
    }
    if (write(report_fd, &r, sizeof r) != (ssize_t)sizeof r)
        die_errno("sink report");
    _exit(0);
}

/* BENCH_SINK_CPU=N: the CPU to pin the receiver process to, or -1 when
 * unset (for experiments: with the sender pinned to another CPU by
 * taskset, the scheduler can no longer put both on one CPU; see
 * README.md, "Two modes"). Read in the parent, so a bad value stops the
 * program before any receiver starts. */
static int sink_cpu_from_env(void) {
    const char *s = getenv("BENCH_SINK_CPU");
    char *end;
    long cpu;
    if (s == NULL || *s == '\0')
        return -1;
    cpu = strtol(s, &end, 10);
    if (*end != '\0' || cpu < 0 || cpu >= CPU_SETSIZE)
        die("BENCH_SINK_CPU: not a CPU number: %s", s);
    return (int)cpu;
}

static void pin_to_cpu(int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        die_errno("BENCH_SINK_CPU: sched_setaffinity");
}

void sink_start(struct peer *p, const struct sink_cfg *cfg) {
    int rep[2], go[2];
    int cpu = sink_cpu_from_env();
    int lfd = make_listener(cfg->rcvbuf, &p->port);
    if (pipe2(rep, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)
        die_errno("pipe");
    fflush(stdout);
    p->pid = fork();
    if (p->pid < 0)
        die_errno("fork");
    if (p->pid == 0) {
        close(rep[0]);
        close(go[1]);
        if (cpu >= 0)
            pin_to_cpu(cpu);
        sink_main(lfd, cfg, rep[1], go[0]);
    }
    close(lfd);
    close(rep[1]);
    close(go[0]);
    p->report_fd = rep[0];
    p->go_fd = go[1];
}

void peer_go(struct peer *p) {
    if (write(p->go_fd, "g", 1) != 1)
        die_errno("go");
}

void sink_finish(struct peer *p, uint64_t expected) {
    struct sink_report r;
    ssize_t n;
    while ((n = read(p->report_fd, &r, sizeof r)) < 0 && errno == EINTR) {
    }
    close(p->report_fd);
    close(p->go_fd);
    reap_child(p->pid, "receiver process");
    if (n != (ssize_t)sizeof r)
        die("receiver sent no report");
    if (r.corrupt)
        die("CORRUPT DATA: a connection's stream differs from what was sent");
    if (r.bytes != expected)
        die("BYTE COUNT MISMATCH: receiver got %llu bytes, sender sent %llu",
            (unsigned long long)r.bytes, (unsigned long long)expected);
}

static void echo_main(int lfd, int msg) {
    int fd, one = 1;
    static unsigned char buf[65536];
    if (msg <= 0 || msg > (int)sizeof buf)
        die("echo: bad message size");
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
        if (errno != EINTR)
            die_errno("echo accept");
    close(lfd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        int got = 0;
        while (got < msg) {
            ssize_t n = recv(fd, buf + got, (size_t)(msg - got), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                die_errno("echo recv");
            if (n == 0) {
                if (got != 0)
                    die("echo: stream ended inside a message");
                close(fd);
                _exit(0);
            }
            got += (int)n;
        }
        send_all_raw(fd, buf, (size_t)msg);
    }
}

void echo_start(struct peer *p, int msg) {
    int lfd = make_listener(0, &p->port);
    fflush(stdout);
    p->pid = fork();
    if (p->pid < 0)
        die_errno("fork");
    if (p->pid == 0)
        echo_main(lfd, msg);
    close(lfd);
    p->report_fd = -1;
    p->go_fd = -1;
}

void echo_finish(struct peer *p) { reap_child(p->pid, "echo server process"); }
