/*
 * Ping-pong round-trip latency: a 64-byte message to an echo server
 * (another process, plain POSIX, TCP_NODELAY) and back, one at a time;
 * p50 and p99 of the round trips of a trial. TCP_NODELAY on every client.
 *
 * latency-blocking:  libsock     sock_send + sock_recv (blocking mode)
 *                    send        send(2) + recv(2) on a blocking fd
 * latency-async:     libsock-manual  sock_send_async + sock_recv_async on
 *                                    a manual engine; when the receive
 *                                    goes pending, sock_engine_poll(-1)
 *                    libsock     the default engine: the receive callback
 *                                records the round trip and starts the
 *                                next one (loop on SOCK_OK, as the header
 *                                shows), so the run lives on the engine
 *                                thread
 *                    epoll       non-blocking fd: send(2), epoll_wait
 *                                (EPOLLIN, edge-triggered), recv(2) until
 *                                the message is complete
 *                    libuv       uv_write + uv_read_start, next ping from
 *                                the read callback
 * Every echo is compared with the ping that was sent.
 *
 * Each trial runs in a fresh process. Each case runs twice: as it is
 * ("latency-*": the scheduler places the two processes, and on this VM a
 * wake-up on the other, idle vCPU costs some 40 µs of hypervisor time,
 * which then dominates and makes the results bimodal), and with client
 * (all its threads) and echo server pinned to CPU 0 ("latency-*-1cpu":
 * every wake-up is a local context switch, so the figures show the
 * software's own cost).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "receiver.h"
#include "uvutil.h"

#define MSG 64
#define WARMUP 500

static int rounds; /* recorded round trips per trial */
static double *samples;

static const unsigned char *ping(int k) { return pattern_at((uint64_t)k * MSG); }

static void check_echo(int k, const unsigned char *buf) {
    if (memcmp(buf, ping(k), MSG) != 0)
        die("CORRUPT DATA: echo %d differs from its ping", k);
}

static void record(int k, uint64_t t0) {
    if (k >= WARMUP)
        samples[k - WARMUP] = (double)(now_ns() - t0) / 1e3;
}

/* ---- blocking ---------------------------------------------------------- */

static void run_send(uint16_t port) {
    int fd = raw_connect(port, 0, 1, 0);
    unsigned char buf[MSG];
    for (int k = 0; k < WARMUP + rounds; k++) {
        uint64_t t0 = now_ns();
        size_t got = 0;
        send_all_raw(fd, ping(k), MSG);
        while (got < MSG) {
            ssize_t n = recv(fd, buf + got, MSG - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                die("recv: %s", n == 0 ? "end of stream" : strerror(errno));
            got += (size_t)n;
        }
        record(k, t0);
        check_echo(k, buf);
    }
    close(fd);
}

static void run_libsock_blocking(uint16_t port) {
    sock_handle h = ls_connect(port, 0, 1);
    unsigned char buf[MSG];
    for (int k = 0; k < WARMUP + rounds; k++) {
        uint64_t t0 = now_ns();
        size_t got = 0, n;
        check_sock("sock_send", sock_send(h, ping(k), MSG, SOCK_MSG_NONE, NULL));
        while (got < MSG) {
            check_sock("sock_recv", sock_recv(h, buf + got, MSG - got, SOCK_MSG_NONE, &n));
            if (n == 0)
                die("sock_recv: end of stream");
            got += n;
        }
        record(k, t0);
        check_echo(k, buf);
    }
    check_sock("sock_close", sock_close(h));
}

/* ---- libsock, manual engine -------------------------------------------- */

struct mstate {
    int sent, received;
    sock_status status;
    size_t n;
};

static void m_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    struct mstate *st = ud;
    (void)h;
    (void)n;
    check_sock("pending send", s);
    st->sent = 1;
}

static void m_received(sock_handle h, sock_status s, size_t n, void *ud) {
    struct mstate *st = ud;
    (void)h;
    st->status = s;
    st->n = n;
    st->received = 1;
}

static void run_libsock_manual(uint16_t port) {
    sock_engine *e;
    sock_handle h = ls_connect(port, 0, 1);
    unsigned char buf[MSG];
    struct mstate st;
    check_sock("sock_engine_new", sock_engine_new(0, &e));
    check_sock("sock_attach", sock_attach(h, e));
    for (int k = 0; k < WARMUP + rounds; k++) {
        uint64_t t0 = now_ns();
        size_t got = 0, n = 0;
        st.sent = 0;
        sock_status s = sock_send_async(h, ping(k), MSG, SOCK_MSG_NONE, m_sent, &st, NULL);
        if (s == SOCK_IO_PENDING)
            while (!st.sent)
                check_sock("sock_engine_poll", sock_engine_poll(e, -1, NULL));
        else
            check_sock("sock_send_async", s);
        while (got < MSG) {
            st.received = 0;
            s = sock_recv_async(h, buf + got, MSG - got, SOCK_MSG_NONE, m_received, &st, &n);
            if (s == SOCK_IO_PENDING) {
                while (!st.received)
                    check_sock("sock_engine_poll", sock_engine_poll(e, -1, NULL));
                s = st.status;
                n = st.n;
            }
            check_sock("sock_recv_async", s);
            if (n == 0)
                die("sock_recv_async: end of stream");
            got += n;
        }
        record(k, t0);
        check_echo(k, buf);
    }
    check_sock("sock_close", sock_close(h));
    check_sock("sock_engine_free", sock_engine_free(e));
}

/* ---- libsock, default engine: the ping-pong runs in the callbacks ------ */

static struct {
    sock_handle h;
    int k;
    size_t got;
    uint64_t t0;
    unsigned char buf[MSG];
    struct notifier note;
    _Atomic int done;
} D;

static void d_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    (void)n;
    (void)ud;
    check_sock("pending send", s); /* order on the socket keeps the ping ahead of the echo */
}

static void d_received(sock_handle h, sock_status s, size_t n, void *ud);

/* Receives the rest of the echo; 0 when the receive went pending. */
static int d_recv_more(void) {
    while (D.got < MSG) {
        size_t n = 0;
        sock_status s =
            sock_recv_async(D.h, D.buf + D.got, MSG - D.got, SOCK_MSG_NONE, d_received, NULL, &n);
        if (s == SOCK_IO_PENDING)
            return 0;
        check_sock("sock_recv_async", s);
        if (n == 0)
            die("sock_recv_async: end of stream");
        D.got += n;
    }
    return 1;
}

/* Round trips until one goes pending; the callback carries on. */
static void d_run(void) {
    for (;;) {
        if (D.k == WARMUP + rounds) {
            atomic_store(&D.done, 1);
            notifier_signal(&D.note);
            return;
        }
        D.t0 = now_ns();
        D.got = 0;
        sock_status s = sock_send_async(D.h, ping(D.k), MSG, SOCK_MSG_NONE, d_sent, NULL, NULL);
        if (s != SOCK_IO_PENDING)
            check_sock("sock_send_async", s);
        if (!d_recv_more())
            return;
        record(D.k, D.t0);
        check_echo(D.k, D.buf);
        D.k++;
    }
}

static void d_received(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    (void)ud;
    check_sock("pending receive", s);
    if (n == 0)
        die("sock_recv_async: end of stream");
    D.got += n;
    if (!d_recv_more())
        return;
    record(D.k, D.t0);
    check_echo(D.k, D.buf);
    D.k++;
    d_run();
}

static void run_libsock_default(uint16_t port) {
    memset(&D, 0, sizeof D);
    D.h = ls_connect(port, 0, 1);
    d_run();
    for (;;) {
        uint32_t seen = notifier_snapshot(&D.note);
        if (atomic_load(&D.done))
            break;
        notifier_wait(&D.note, seen);
    }
    check_sock("sock_close", sock_close(D.h));
}

/* ---- hand-written epoll loop ------------------------------------------- */

static void wait_for(int ep, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events | EPOLLET};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
        die_errno("epoll_ctl");
    while (epoll_wait(ep, &ev, 1, -1) < 0)
        if (errno != EINTR)
            die_errno("epoll_wait");
}

static void run_epoll(uint16_t port) {
    int fd = raw_connect(port, 0, 1, 1), ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    unsigned char buf[MSG];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die_errno("epoll");
    for (int k = 0; k < WARMUP + rounds; k++) {
        uint64_t t0 = now_ns();
        size_t off = 0, got = 0;
        while (off < MSG) {
            ssize_t n = send(fd, ping(k) + off, MSG - off, MSG_NOSIGNAL);
            if (n >= 0)
                off += (size_t)n;
            else if (errno == EAGAIN)
                wait_for(ep, fd, EPOLLOUT); /* never seen with one 64-byte ping in flight */
            else if (errno != EINTR)
                die_errno("send");
        }
        while (got < MSG) {
            struct epoll_event got_ev;
            if (epoll_wait(ep, &got_ev, 1, -1) < 0) {
                if (errno == EINTR)
                    continue;
                die_errno("epoll_wait");
            }
            for (;;) {
                ssize_t n = recv(fd, buf + got, MSG - got, 0);
                if (n > 0) {
                    got += (size_t)n;
                    if (got == MSG)
                        break;
                } else if (n == 0) {
                    die("recv: end of stream");
                } else if (errno == EAGAIN) {
                    break;
                } else if (errno != EINTR) {
                    die_errno("recv");
                }
            }
        }
        record(k, t0);
        check_echo(k, buf);
    }
    close(ep);
    close(fd);
}

/* ---- libuv -------------------------------------------------------------- */

#if HAVE_UV
static struct {
    uv_tcp_t tcp;
    uv_write_t req[2];
    int k;
    size_t got;
    uint64_t t0;
    unsigned char buf[MSG];
    char rbuf[65536];
} V;

static void v_written(uv_write_t *req, int status) {
    (void)req;
    check_uv("uv_write callback", status);
}

static void v_ping(void) {
    uv_buf_t b = uv_buf_init((char *)ping(V.k), MSG);
    V.t0 = now_ns();
    V.got = 0;
    check_uv("uv_write", uv_write(&V.req[V.k % 2], (uv_stream_t *)&V.tcp, &b, 1, v_written));
}

static void v_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h;
    (void)suggested;
    *b = uv_buf_init(V.rbuf, sizeof V.rbuf);
}

static void v_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    if (n == 0)
        return;
    if (n < 0)
        die("uv read: %s", uv_strerror((int)n));
    if (V.got + (size_t)n > MSG)
        die("CORRUPT DATA: more echo than ping");
    memcpy(V.buf + V.got, b->base, (size_t)n);
    V.got += (size_t)n;
    if (V.got < MSG)
        return;
    record(V.k, V.t0);
    check_echo(V.k, V.buf);
    if (++V.k == WARMUP + rounds) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    v_ping();
}

static void run_libuv(uint16_t port) {
    uv_loop_t loop;
    uv_tcp_t *t = &V.tcp;
    memset(&V, 0, sizeof V);
    check_uv("uv_loop_init", uv_loop_init(&loop));
    uv_connect_all(&loop, &t, 1, port, 0, 1);
    check_uv("uv_read_start", uv_read_start((uv_stream_t *)&V.tcp, v_alloc, v_read));
    v_ping();
    check_uv("uv_run", uv_run(&loop, UV_RUN_DEFAULT));
    check_uv("uv_loop_close", uv_loop_close(&loop));
}
#endif

struct contender {
    const char *case_id, *name;
    void (*run)(uint16_t port);
};

static const struct contender all[] = {
    {"latency-blocking", "libsock", run_libsock_blocking},
    {"latency-blocking", "send", run_send},
    {"latency-async", "libsock-manual", run_libsock_manual},
    {"latency-async", "libsock", run_libsock_default},
    {"latency-async", "epoll", run_epoll},
#if HAVE_UV
    {"latency-async", "libuv", run_libuv},
#endif
};

/* One trial in a fresh process, so no engine thread outlives its trial
 * (or keeps a CPU affinity it inherited). */
static void trial(const struct contender *c, const char *id, int rep, int pinned) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        struct peer p;
        if (pinned) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(0, &one);
            if (sched_setaffinity(0, sizeof one, &one) != 0)
                die_errno("sched_setaffinity");
        }
        echo_start(&p, MSG);
        c->run(p.port);
        echo_finish(&p);
        emit(id, c->name, rep, "p50_us", percentile(samples, (size_t)rounds, 0.50));
        emit(id, c->name, rep, "p99_us", percentile(samples, (size_t)rounds, 0.99));
        _exit(0);
    }
    char what[96];
    snprintf(what, sizeof what, "%s %s trial", id, c->name);
    reap_child(pid, what);
}

int main(int argc, char **argv) {
    static const char *const cases[] = {"latency-blocking", "latency-async"};
    const int n = (int)(sizeof all / sizeof all[0]);
    struct opts o;
    parse_opts(argc, argv, &o);
    rounds = o.quick ? 2000 : 20000;
    samples = calloc((size_t)rounds, sizeof *samples);
    if (samples == NULL)
        die("out of memory");
    pattern_init();
    for (int pinned = 0; pinned < 2; pinned++)
        for (int ci = 0; ci < 2; ci++) {
            const struct contender *mine[8];
            char id[48];
            int m = 0;
            snprintf(id, sizeof id, "%s%s", cases[ci], pinned ? "-1cpu" : "");
            if (!case_selected(&o, id))
                continue;
            for (int i = 0; i < n; i++)
                if (strcmp(all[i].case_id, cases[ci]) == 0)
                    mine[m++] = &all[i];
            for (int rep = 0; rep < o.reps; rep++)
                for (int j = 0; j < m; j++)
                    trial(mine[run_order(rep, j, m)], id, rep, pinned);
        }
    return 0;
}
