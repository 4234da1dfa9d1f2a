/*
 * Receive throughput: reads of 64 B, 16 KiB and 1 MiB, on 1 and 64
 * connections, from a source process (plain POSIX, one epoll loop writing
 * the pattern as fast as the connections take it, then end of stream).
 * Every contender checks every byte it receives against the pattern.
 *
 *   recv            blocking recv(2) loop (one thread per connection)
 *   libsock         blocking sock_recv, the same structure
 *   libsock-manual  sock_recv_async on a manual engine polled by the main
 *                   thread; the callback takes the bytes and submits the
 *                   next receive, looping on SOCK_OK
 *   libuv           uv_read_start on one loop, the same buffer size
 *
 * Time runs from the source's go until every connection reached end of
 * stream. Also reported: this process's CPU time per byte read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#if HAVE_UV
#include "uvutil.h"
#endif

#define MAX_CONNS 64
#define CHUNK (256 * 1024)

struct size_case {
    const char *id;
    size_t read_size;
    int conns;
    uint64_t total; /* bytes over all connections, full-length trial */
};

static const struct size_case cases[] = {
    {"recv-64B-1conn", 64, 1, 32ull << 20},
    {"recv-16KiB-1conn", 16384, 1, 1ull << 30},
    {"recv-1MiB-1conn", 1 << 20, 1, 2ull << 30},
    {"recv-64B-64conn", 64, 64, 32ull << 20},
    {"recv-16KiB-64conn", 16384, 64, 1ull << 30},
    {"recv-1MiB-64conn", 1 << 20, 64, 2ull << 30},
};

/* ---- the source process ---------------------------------------------------- */

struct source {
    pid_t pid;
    uint16_t port;
    int go_fd;
};

/* Accepts `conns` connections, waits for the go byte, then writes
 * `per_conn` bytes of the pattern on each (non-blocking, one epoll loop)
 * and shuts each down when it is done. */
static void source_main(int lfd, int go, int conns, uint64_t per_conn) {
    int fds[MAX_CONNS];
    uint64_t sent[MAX_CONNS] = {0};
    int done[MAX_CONNS] = {0};
    for (int i = 0; i < conns; i++) {
        fds[i] = accept(lfd, NULL, NULL);
        if (fds[i] < 0)
            die_errno("source accept");
        set_nonblock(fds[i]);
    }
    char b;
    if (read(go, &b, 1) != 1)
        _exit(2);
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    int open = conns;
    struct epoll_event evs[MAX_CONNS];
    while (open > 0) {
        int n = epoll_wait(ep, evs, MAX_CONNS, 10000);
        if (n <= 0)
            _exit(3);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            while (sent[i] < per_conn) {
                uint64_t off = sent[i] % PATTERN_PERIOD;
                size_t want = CHUNK;
                if (want > PATTERN_PERIOD - off)
                    want = PATTERN_PERIOD - off;
                if (want > per_conn - sent[i])
                    want = (size_t)(per_conn - sent[i]);
                ssize_t w = send(fds[i], pattern_at(off), want, MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                if (w < 0)
                    _exit(4);
                sent[i] += (uint64_t)w;
            }
            if (sent[i] == per_conn && !done[i]) {
                shutdown(fds[i], SHUT_WR);
                done[i] = 1;
                open--;
            }
        }
    }
    for (int i = 0; i < conns; i++) {
        char sink[256];
        /* wait for the reader's close before ours */
        struct timeval tv = {10, 0};
        int fl = fcntl(fds[i], F_GETFL);
        fcntl(fds[i], F_SETFL, fl & ~O_NONBLOCK);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (recv(fds[i], sink, sizeof sink, 0) > 0) {
        }
        close(fds[i]);
    }
    _exit(0);
}

static void source_start(struct source *s, int conns, uint64_t per_conn) {
    int lfd = make_listener(0, &s->port);
    int go[2];
    if (pipe(go) != 0)
        die_errno("pipe");
    s->pid = fork();
    if (s->pid < 0)
        die_errno("fork");
    if (s->pid == 0) {
        close(go[1]);
        source_main(lfd, go[0], conns, per_conn);
    }
    close(lfd);
    close(go[0]);
    s->go_fd = go[1];
}

static void source_go(struct source *s) {
    if (write(s->go_fd, "g", 1) != 1)
        die_errno("go");
    close(s->go_fd);
}

/* ---- checking what arrived ---------------------------------------------------- */

/* Whether `n` bytes at `buf` are the stream's bytes from offset `off`. */
static int intact(const unsigned char *buf, size_t n, uint64_t off) {
    while (n > 0) {
        uint64_t o = off % PATTERN_PERIOD;
        size_t k = n;
        if (k > PATTERN_PERIOD - o)
            k = (size_t)(PATTERN_PERIOD - o);
        if (memcmp(buf, pattern_at(o), k) != 0)
            return 0;
        buf += k;
        off += k;
        n -= k;
    }
    return 1;
}

/* ---- blocking contenders ------------------------------------------------------ */

struct blocking_conn {
    int fd;
    sock_handle h;
    size_t size;
    uint64_t got;
    pthread_t tid;
};

static void *read_raw(void *arg) {
    struct blocking_conn *c = arg;
    unsigned char *buf = malloc(c->size);
    for (;;) {
        ssize_t n = recv(c->fd, buf, c->size, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("recv");
        if (n == 0)
            break;
        if (!intact(buf, (size_t)n, c->got))
            die("recv: wrong bytes at offset %llu", (unsigned long long)c->got);
        c->got += (uint64_t)n;
    }
    free(buf);
    return NULL;
}

static void *read_libsock(void *arg) {
    struct blocking_conn *c = arg;
    unsigned char *buf = malloc(c->size);
    for (;;) {
        size_t n = 0;
        check_sock("sock_recv", sock_recv(c->h, buf, c->size, SOCK_MSG_NONE, &n));
        if (n == 0)
            break;
        if (!intact(buf, n, c->got))
            die("sock_recv: wrong bytes at offset %llu", (unsigned long long)c->got);
        c->got += n;
    }
    free(buf);
    return NULL;
}

static double run_blocking(const struct size_case *c, uint64_t per_conn, int libsock) {
    struct source s;
    struct blocking_conn conns[MAX_CONNS];
    source_start(&s, c->conns, per_conn);
    for (int i = 0; i < c->conns; i++) {
        conns[i] = (struct blocking_conn){.size = c->read_size};
        if (libsock)
            conns[i].h = ls_connect(s.port, 0, 0);
        else
            conns[i].fd = raw_connect(s.port, 0, 0, 0);
    }
    uint64_t t0 = now_ns();
    source_go(&s);
    if (c->conns == 1) {
        libsock ? read_libsock(&conns[0]) : read_raw(&conns[0]);
    } else {
        for (int i = 0; i < c->conns; i++)
            if (pthread_create(&conns[i].tid, NULL, libsock ? read_libsock : read_raw, &conns[i]))
                die("pthread_create");
        for (int i = 0; i < c->conns; i++)
            pthread_join(conns[i].tid, NULL);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < c->conns; i++) {
        if (conns[i].got != per_conn)
            die("%s: %llu of %llu bytes", c->id, (unsigned long long)conns[i].got,
                (unsigned long long)per_conn);
        if (libsock)
            check_sock("sock_close", sock_close(conns[i].h));
        else
            close(conns[i].fd);
    }
    reap_child(s.pid, "source");
    return secs;
}

/* ---- libsock, manual engine ----------------------------------------------------- */

struct async_conn {
    sock_handle h;
    unsigned char *buf;
    size_t size;
    uint64_t got;
    int done;
};

static int g_open;

static void on_recv(sock_handle h, sock_status s, size_t n, void *ud);

/* Takes `n` received bytes (0: end of stream) and submits receives until
 * one goes pending (loop on SOCK_OK, as the header shows). */
static void take(struct async_conn *c, sock_status s, size_t n) {
    for (;;) {
        if (s != SOCK_OK)
            die("sock_recv_async: %s", sock_strerror(s));
        if (n == 0) {
            c->done = 1;
            g_open--;
            return;
        }
        if (!intact(c->buf, n, c->got))
            die("sock_recv_async: wrong bytes at offset %llu", (unsigned long long)c->got);
        c->got += n;
        s = sock_recv_async(c->h, c->buf, c->size, SOCK_MSG_NONE, on_recv, c, &n);
        if (s == SOCK_IO_PENDING)
            return;
    }
}

static void on_recv(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    take(ud, s, n);
}

static double run_manual(const struct size_case *c, uint64_t per_conn) {
    struct source s;
    struct async_conn conns[MAX_CONNS];
    sock_engine *e;
    check_sock("sock_engine_new", sock_engine_new(0, &e));
    source_start(&s, c->conns, per_conn);
    for (int i = 0; i < c->conns; i++) {
        conns[i] = (struct async_conn){.size = c->read_size, .buf = malloc(c->read_size)};
        conns[i].h = ls_connect(s.port, 0, 0);
        check_sock("sock_attach", sock_attach(conns[i].h, e));
    }
    g_open = c->conns;
    uint64_t t0 = now_ns();
    source_go(&s);
    for (int i = 0; i < c->conns; i++) {
        size_t n = 0;
        sock_status st = sock_recv_async(conns[i].h, conns[i].buf, c->read_size, SOCK_MSG_NONE,
                                         on_recv, &conns[i], &n);
        if (st != SOCK_IO_PENDING)
            take(&conns[i], st, n);
    }
    while (g_open > 0)
        check_sock("sock_engine_poll", sock_engine_poll(e, -1, NULL));
    double secs = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < c->conns; i++) {
        if (conns[i].got != per_conn)
            die("%s: %llu of %llu bytes", c->id, (unsigned long long)conns[i].got,
                (unsigned long long)per_conn);
        check_sock("sock_close", sock_close(conns[i].h));
        free(conns[i].buf);
    }
    check_sock("sock_engine_free", sock_engine_free(e));
    reap_child(s.pid, "source");
    return secs;
}

/* ---- libuv ------------------------------------------------------------------------ */

#if HAVE_UV
struct uv_conn {
    uv_tcp_t tcp;
    char *buf;
    size_t size;
    uint64_t got;
};

static void uv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    (void)suggested;
    struct uv_conn *c = h->data;
    *out = uv_buf_init(c->buf, (unsigned)c->size);
}

static void uv_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    struct uv_conn *c = s->data;
    if (n == UV_EOF) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    check_uv("read", n < 0 ? (int)n : 0);
    if (n == 0)
        return;
    if (!intact((const unsigned char *)b->base, (size_t)n, c->got))
        die("libuv: wrong bytes at offset %llu", (unsigned long long)c->got);
    c->got += (uint64_t)n;
}

static double run_uv(const struct size_case *c, uint64_t per_conn) {
    struct source s;
    uv_loop_t loop;
    struct uv_conn *conns = calloc((size_t)c->conns, sizeof *conns);
    uv_tcp_t *tcps[MAX_CONNS];
    check_uv("uv_loop_init", uv_loop_init(&loop));
    source_start(&s, c->conns, per_conn);
    for (int i = 0; i < c->conns; i++) {
        tcps[i] = &conns[i].tcp;
        conns[i].size = c->read_size;
        conns[i].buf = malloc(c->read_size);
    }
    uv_connect_all(&loop, tcps, c->conns, s.port, 0, 0);
    for (int i = 0; i < c->conns; i++) {
        conns[i].tcp.data = &conns[i];
        check_uv("uv_read_start",
                 uv_read_start((uv_stream_t *)&conns[i].tcp, uv_alloc, uv_on_read));
    }
    uint64_t t0 = now_ns();
    source_go(&s);
    check_uv("uv_run", uv_run(&loop, UV_RUN_DEFAULT));
    double secs = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < c->conns; i++) {
        if (conns[i].got != per_conn)
            die("%s: %llu of %llu bytes", c->id, (unsigned long long)conns[i].got,
                (unsigned long long)per_conn);
        free(conns[i].buf);
    }
    check_uv("uv_loop_close", uv_loop_close(&loop));
    free(conns);
    reap_child(s.pid, "source");
    return secs;
}
#endif

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    struct opts o;
    parse_opts(argc, argv, &o);
    pattern_init();
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct size_case *c = &cases[i];
        if (!case_selected(&o, c->id))
            continue;
        uint64_t total = c->total / (uint64_t)o.shorter;
        uint64_t per_conn = total / (uint64_t)c->conns;
        total = per_conn * (uint64_t)c->conns;
        char async_id[64];
        snprintf(async_id, sizeof async_id, "recvasync-%s", c->id + strlen("recv-"));
        for (int rep = 0; rep < o.reps; rep++) {
            /* blocking pair: recv(2), sock_recv */
            for (int j = 0; j < 2; j++) {
                int libsock = run_order(rep, j, 2) == 0;
                double cpu0 = cpu_seconds();
                double secs = run_blocking(c, per_conn, libsock);
                double cpu = cpu_seconds() - cpu0;
                const char *who = libsock ? "libsock" : "recv";
                emit(c->id, who, rep, "GB_per_s", (double)total / secs / 1e9);
                emit(c->id, who, rep, "cpu_ns_per_KiB", cpu * 1e9 / ((double)total / 1024));
            }
            /* async pair: sock_recv_async on a manual engine, libuv */
            for (int j = 0; j < 2; j++) {
                int libsock = run_order(rep, j, 2) == 0;
                if (!libsock && !HAVE_UV)
                    continue;
                double cpu0 = cpu_seconds();
                double secs = 0;
                if (libsock)
                    secs = run_manual(c, per_conn);
#if HAVE_UV
                else
                    secs = run_uv(c, per_conn);
#endif
                double cpu = cpu_seconds() - cpu0;
                const char *who = libsock ? "libsock-manual" : "libuv";
                emit(async_id, who, rep, "GB_per_s", (double)total / secs / 1e9);
                emit(async_id, who, rep, "cpu_ns_per_KiB", cpu * 1e9 / ((double)total / 1024));
            }
        }
    }
    return 0;
}
