/*
 * Async send throughput: 64 B and 16 KiB messages over 1 and 64
 * connections, to a fast receiver and to a lagging one (backpressure).
 *
 * Contenders, all with the same bounded window of WINDOW outstanding
 * operations per connection and the same turn of at most WINDOW messages
 * per connection before the next connection gets its turn:
 *   libsock         sock_send_async on the default engine. SOCK_OK: go on;
 *                   SOCK_IO_PENDING: the operation counts against the
 *                   window until its callback (engine thread) runs. When
 *                   every connection's window is full the main thread
 *                   sleeps until a callback wakes it (futex), which a
 *                   callback does when its connection's window has fallen
 *                   to half (a low-water mark, so the main thread is not
 *                   woken for every completion).
 *   libsock-manual  the same on a manual engine (sock_engine_new(0)) that
 *                   the loop drives with sock_engine_poll: timeout 0 after
 *                   a turn that made progress, -1 when all windows are full.
 *   libsock-cb      the default engine with libuv's pattern: the main
 *                   thread starts each connection, then the completion
 *                   callback (engine thread) refills the window, looping
 *                   while sends complete inline; the main thread only
 *                   waits for the end.
 *   epoll           non-blocking fds, edge-triggered EPOLLOUT registered
 *                   once: send(2) each message until EAGAIN, then wait.
 *   libuv           uv_write per message, window refilled from the write
 *                   callback (the baseline).
 *   libuv-try       uv_try_write when nothing is queued on the stream, else
 *                   uv_write (what libuv users often write); a uv_idle
 *                   handle gives the next turn to connections that wrote
 *                   their whole turn inline.
 * Default socket options (Nagle on) except in the lag cases (below). Time
 * runs from the first send until the receiver has counted and checked
 * every byte. Also reported: the share of messages that went pending and
 * the sending process's CPU time per message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "receiver.h"
#include "uvutil.h"

#define WINDOW 64

/* Backpressure (the "lag" cases): SO_SNDBUF on the sender and SO_RCVBUF
 * on the receiver both max(4 KiB, message size), and the lagging receiver
 * of receiver.h: phases of LAG_PHASE_US, 4 groups (2 with one
 * connection), so each connection is read for one phase and left alone
 * for the next 3 (1). Environment overrides, for tuning:
 * BENCH_LAG_PHASE_US, BENCH_LAG_GROUPS, BENCH_LAG_SNDBUF, BENCH_LAG_RCVBUF. */
static int LAG_PHASE_US = 10000, LAG_GROUPS = 4, LAG_SNDBUF = 0, LAG_RCVBUF = 0;

static int lag_buf(int override, size_t size) {
    return override > 0 ? override : size > 4096 ? (int)size : 4096;
}

static void env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (s != NULL)
        *v = atoi(s);
}

struct acase {
    char id[48];
    size_t size;
    int conns;
    int lag;
    uint64_t msgs_per_conn;
};

struct outcome {
    double secs;
    uint64_t pending; /* messages that did not complete inside their first call */
};

static struct sink_cfg sink_for(const struct acase *c) {
    struct sink_cfg cfg = {.nconns = c->conns};
    if (c->lag) {
        cfg.phase_us = LAG_PHASE_US;
        cfg.groups = c->conns == 1 ? 2 : LAG_GROUPS;
        cfg.rcvbuf = lag_buf(LAG_RCVBUF, c->size);
    }
    return cfg;
}

static int sndbuf_for(const struct acase *c) { return c->lag ? lag_buf(LAG_SNDBUF, c->size) : 0; }

/* Waits until the receiver has counted and checked every byte of the
 * case; returns the seconds since `t0`. */
static double end_run(struct peer *p, const struct acase *c, uint64_t t0) {
    sink_finish(p, c->msgs_per_conn * c->size * (uint64_t)c->conns);
    return (double)(now_ns() - t0) / 1e9;
}

/* ---- libsock ---------------------------------------------------------- */

struct lconn {
    sock_handle h;
    uint64_t next;
    _Atomic int inflight;
};

static struct notifier g_note;
static _Atomic long g_inflight;
static _Atomic int g_fail;
static size_t g_size;

/* A completion's status and count, checked (the main thread dies on a
 * failure with ls_check_failures). */
static void ls_record(sock_status s, size_t n) {
    if (s != SOCK_OK || n != g_size)
        atomic_store(&g_fail, s != SOCK_OK ? s : -2);
}

static void ls_check_failures(void) {
    if (atomic_load(&g_fail) != 0)
        die("a send callback reported %d", atomic_load(&g_fail));
}

/* Wakes the main thread only when it has something to do: a window fell
 * to half (room for a turn) or nothing is in flight any more. */
static void ls_done(sock_handle h, sock_status s, size_t n, void *ud) {
    struct lconn *c = ud;
    (void)h;
    ls_record(s, n);
    int left = atomic_fetch_sub(&c->inflight, 1) - 1;
    long all = atomic_fetch_sub(&g_inflight, 1) - 1;
    if (left == WINDOW / 2 || all <= 0)
        notifier_signal(&g_note);
}

static struct outcome run_libsock(const struct acase *c, int manual) {
    struct peer p;
    struct sink_cfg cfg = sink_for(c);
    struct lconn *conns = calloc((size_t)c->conns, sizeof *conns);
    sock_engine *e = NULL;
    struct outcome out = {0, 0};
    const uint64_t m = c->msgs_per_conn;
    if (conns == NULL)
        die("out of memory");
    g_size = c->size;
    atomic_store(&g_fail, 0);
    atomic_store(&g_inflight, 0);
    sink_start(&p, &cfg);
    if (manual)
        check_sock("sock_engine_new", sock_engine_new(0, &e));
    for (int i = 0; i < c->conns; i++) {
        conns[i].h = ls_connect(p.port, sndbuf_for(c), 0);
        if (manual)
            check_sock("sock_attach", sock_attach(conns[i].h, e));
    }
    uint64_t t0 = now_ns();
    for (;;) {
        uint32_t seen = notifier_snapshot(&g_note);
        int active = 0, progressed = 0;
        for (int i = 0; i < c->conns; i++) {
            struct lconn *lc = &conns[i];
            if (lc->next == m)
                continue;
            active = 1;
            for (int b = 0; b < WINDOW && lc->next < m && atomic_load(&lc->inflight) < WINDOW;
                 b++) {
                sock_status s = sock_send_async(lc->h, pattern_at(lc->next * c->size), c->size,
                                                SOCK_MSG_NONE, ls_done, lc, NULL);
                if (s == SOCK_IO_PENDING) {
                    /* The callback may already have run: counts can dip below 0. */
                    atomic_fetch_add(&lc->inflight, 1);
                    atomic_fetch_add(&g_inflight, 1);
                    out.pending++;
                } else if (s != SOCK_OK) {
                    die("sock_send_async: %s", sock_strerror(s));
                }
                lc->next++;
                progressed = 1;
            }
        }
        if (!active)
            break;
        if (manual) {
            if (atomic_load(&g_inflight) != 0)
                check_sock("sock_engine_poll", sock_engine_poll(e, progressed ? 0 : -1, NULL));
        } else if (!progressed) {
            notifier_wait(&g_note, seen);
        }
    }
    for (;;) {
        uint32_t seen = notifier_snapshot(&g_note);
        if (atomic_load(&g_inflight) == 0)
            break;
        if (manual)
            check_sock("sock_engine_poll", sock_engine_poll(e, -1, NULL));
        else
            notifier_wait(&g_note, seen);
    }
    ls_check_failures();
    for (int i = 0; i < c->conns; i++)
        check_sock("sock_close", sock_close(conns[i].h));
    out.secs = end_run(&p, c, t0);
    if (manual)
        check_sock("sock_engine_free", sock_engine_free(e));
    free(conns);
    return out;
}

/* ---- libsock, window refilled from the callback ------------------------ */

/* Owned by the main thread until one of its sends goes pending; from then
 * on by that send's callbacks alone, which all run on the socket's engine
 * thread, one at a time. The library orders a submission before its
 * callback, so the callback sees what the main thread wrote before it. */
struct cbconn {
    sock_handle h;
    uint64_t next; /* messages sent or in flight */
    int inflight;
};

static struct {
    uint64_t m;
    _Atomic uint64_t pending;
    _Atomic int left; /* connections not finished */
    struct notifier note;
} CB;

static void cb_done(sock_handle h, sock_status s, size_t n, void *ud);

static void cb_finished(void) {
    if (atomic_fetch_sub(&CB.left, 1) == 1)
        notifier_signal(&CB.note);
}

/* Sends the next message; 1 if it went pending (its callback now owns the
 * connection: the caller must not touch it unless it is that callback). */
static int cb_send_next(struct cbconn *cc) {
    const unsigned char *msg = pattern_at(cc->next * g_size);
    cc->next++;
    cc->inflight++; /* before the call: the callback may run before it returns */
    sock_status s = sock_send_async(cc->h, msg, g_size, SOCK_MSG_NONE, cb_done, cc, NULL);
    if (s == SOCK_IO_PENDING) {
        atomic_fetch_add(&CB.pending, 1);
        return 1;
    }
    if (s != SOCK_OK)
        die("sock_send_async: %s", sock_strerror(s));
    cc->inflight--;
    return 0;
}

static void cb_done(sock_handle h, sock_status s, size_t n, void *ud) {
    struct cbconn *cc = ud;
    (void)h;
    ls_record(s, n);
    cc->inflight--;
    /* Turns of up to WINDOW messages within the window, as uv_fill; a turn
     * that completed wholly inline has no callback to follow it, so the
     * loop goes on (the contract's loop on SOCK_OK). */
    do
        for (int b = 0; b < WINDOW && cc->next < CB.m && cc->inflight < WINDOW; b++)
            cb_send_next(cc);
    while (cc->inflight == 0 && cc->next < CB.m);
    if (cc->next == CB.m && cc->inflight == 0)
        cb_finished();
}

static struct outcome run_libsock_cb(const struct acase *c) {
    struct peer p;
    struct sink_cfg cfg = sink_for(c);
    struct cbconn *conns = calloc((size_t)c->conns, sizeof *conns);
    struct outcome out = {0, 0};
    if (conns == NULL)
        die("out of memory");
    g_size = c->size;
    CB.m = c->msgs_per_conn;
    atomic_store(&CB.pending, 0);
    atomic_store(&CB.left, c->conns);
    atomic_store(&g_fail, 0);
    sink_start(&p, &cfg);
    for (int i = 0; i < c->conns; i++)
        conns[i].h = ls_connect(p.port, sndbuf_for(c), 0);
    uint64_t t0 = now_ns();
    /* Send on each connection until a send goes pending and its callback
     * takes over; a connection whose every send completed inline is done. */
    for (int i = 0; i < c->conns; i++) {
        int handed_over = 0;
        while (!handed_over && conns[i].next < CB.m)
            handed_over = cb_send_next(&conns[i]);
        if (!handed_over)
            cb_finished();
    }
    for (;;) {
        uint32_t seen = notifier_snapshot(&CB.note);
        if (atomic_load(&CB.left) == 0)
            break;
        notifier_wait(&CB.note, seen);
    }
    ls_check_failures();
    for (int i = 0; i < c->conns; i++)
        check_sock("sock_close", sock_close(conns[i].h));
    out.secs = end_run(&p, c, t0);
    out.pending = atomic_load(&CB.pending);
    free(conns);
    return out;
}

/* ---- hand-written epoll loop ------------------------------------------ */

struct econn {
    int fd;
    int writable;
    int stalled; /* the current message hit EAGAIN */
    size_t partial;
    uint64_t next;
};

static struct outcome run_epoll(const struct acase *c) {
    struct peer p;
    struct sink_cfg cfg = sink_for(c);
    struct econn *conns = calloc((size_t)c->conns, sizeof *conns);
    struct epoll_event evs[256];
    struct outcome out = {0, 0};
    const uint64_t m = c->msgs_per_conn;
    int ep = epoll_create1(EPOLL_CLOEXEC), left = c->conns;
    if (conns == NULL || ep < 0)
        die("epoll set-up failed");
    sink_start(&p, &cfg);
    for (int i = 0; i < c->conns; i++) {
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        conns[i].fd = raw_connect(p.port, sndbuf_for(c), 0, 1);
        conns[i].writable = 1;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0)
            die_errno("epoll_ctl");
    }
    uint64_t t0 = now_ns();
    while (left > 0) {
        int any_writable = 0;
        for (int i = 0; i < c->conns; i++) {
            struct econn *ec = &conns[i];
            if (!ec->writable || ec->next == m)
                continue;
            for (int b = 0; b < WINDOW && ec->next < m;) {
                ssize_t n = send(ec->fd, pattern_at(ec->next * c->size) + ec->partial,
                                 c->size - ec->partial, MSG_NOSIGNAL);
                if (n < 0) {
                    if (errno == EINTR)
                        continue;
                    if (errno != EAGAIN)
                        die_errno("send");
                    ec->writable = 0;
                    if (!ec->stalled) {
                        ec->stalled = 1;
                        out.pending++;
                    }
                    break;
                }
                ec->partial += (size_t)n;
                if (ec->partial == c->size) {
                    ec->partial = 0;
                    ec->stalled = 0;
                    ec->next++;
                    b++;
                }
            }
            if (ec->next == m)
                left--;
            else if (ec->writable)
                any_writable = 1;
        }
        if (left == 0)
            break;
        int k = epoll_wait(ep, evs, 256, any_writable ? 0 : -1);
        if (k < 0 && errno != EINTR)
            die_errno("epoll_wait");
        for (int j = 0; j < k; j++)
            conns[evs[j].data.u32].writable = 1;
    }
    for (int i = 0; i < c->conns; i++)
        close(conns[i].fd);
    out.secs = end_run(&p, c, t0);
    close(ep);
    free(conns);
    return out;
}

/* ---- libuv ------------------------------------------------------------ */

#if HAVE_UV
struct uconn {
    uv_tcp_t tcp;
    uint64_t next, done;
    int inflight, nfree;
    uv_write_t *free[WINDOW];
    uv_write_t reqs[WINDOW];
};

static struct {
    uv_loop_t loop;
    uv_idle_t idle;
    struct uconn *conns;
    int nconns, closed, try_first;
    size_t size;
    uint64_t m, pending;
} U;

static void uv_fill(struct uconn *c);
static void on_idle(uv_idle_t *idle);

static void on_close(uv_handle_t *h) {
    (void)h;
    if (++U.closed == U.nconns && U.try_first)
        uv_close((uv_handle_t *)&U.idle, NULL);
}

static void finished_one(struct uconn *c) {
    if (++c->done == U.m)
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status) {
    struct uconn *c = req->handle->data;
    check_uv("uv_write callback", status);
    c->free[c->nfree++] = req;
    c->inflight--;
    finished_one(c);
    if (c->next < U.m)
        uv_fill(c);
}

/* Up to a turn of WINDOW messages, within the window of outstanding writes. */
static void uv_fill(struct uconn *c) {
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    for (int b = 0; b < WINDOW && c->next < U.m && c->inflight < WINDOW; b++) {
        uv_buf_t buf = uv_buf_init((char *)pattern_at(c->next * U.size), (unsigned)U.size);
        c->next++;
        if (U.try_first && c->inflight == 0) {
            int r = uv_try_write(s, &buf, 1);
            if (r == (int)U.size) {
                finished_one(c);
                continue;
            }
            if (r < 0 && r != UV_EAGAIN)
                check_uv("uv_try_write", r);
            if (r > 0) {
                buf.base += r;
                buf.len -= (size_t)r;
            }
        }
        if (U.try_first)
            U.pending++; /* partly written inline, or queued behind others */
        check_uv("uv_write", uv_write(c->free[--c->nfree], s, &buf, 1, on_write));
        c->inflight++;
        if (!U.try_first && uv_stream_get_write_queue_size(s) > 0)
            U.pending++;
    }
    /* libuv-try: a connection that wrote its turn inline has no callback
     * coming; the idle handle gives it the next turn. */
    if (U.try_first && c->next < U.m && c->inflight == 0)
        uv_idle_start(&U.idle, on_idle);
}

static void on_idle(uv_idle_t *idle) {
    int again = 0;
    for (int i = 0; i < U.nconns; i++) {
        struct uconn *c = &U.conns[i];
        if (c->next < U.m && c->inflight == 0) {
            uv_fill(c);
            again |= c->next < U.m && c->inflight == 0;
        }
    }
    if (!again)
        uv_idle_stop(idle);
}

static struct outcome run_libuv(const struct acase *c, int try_first) {
    struct peer p;
    struct sink_cfg cfg = sink_for(c);
    struct outcome out = {0, 0};
    uv_tcp_t **tcps = calloc((size_t)c->conns, sizeof *tcps);
    memset(&U, 0, sizeof U);
    U.conns = calloc((size_t)c->conns, sizeof *U.conns);
    if (U.conns == NULL || tcps == NULL)
        die("out of memory");
    U.nconns = c->conns;
    U.try_first = try_first;
    U.size = c->size;
    U.m = c->msgs_per_conn;
    check_uv("uv_loop_init", uv_loop_init(&U.loop));
    check_uv("uv_idle_init", uv_idle_init(&U.loop, &U.idle));
    sink_start(&p, &cfg);
    for (int i = 0; i < c->conns; i++) {
        struct uconn *uc = &U.conns[i];
        tcps[i] = &uc->tcp;
        uc->tcp.data = uc;
        for (int j = 0; j < WINDOW; j++)
            uc->free[j] = &uc->reqs[j];
        uc->nfree = WINDOW;
    }
    uv_connect_all(&U.loop, tcps, c->conns, p.port, sndbuf_for(c), 0);
    uint64_t t0 = now_ns();
    for (int i = 0; i < c->conns; i++)
        uv_fill(&U.conns[i]);
    if (try_first)
        uv_idle_start(&U.idle, on_idle);
    else
        uv_close((uv_handle_t *)&U.idle, NULL);
    check_uv("uv_run", uv_run(&U.loop, UV_RUN_DEFAULT));
    out.secs = end_run(&p, c, t0);
    out.pending = U.pending;
    check_uv("uv_loop_close", uv_loop_close(&U.loop));
    free(U.conns);
    free(tcps);
    return out;
}
#endif

/* ---- driver ------------------------------------------------------------ */

enum { C_LIBSOCK, C_MANUAL, C_CB, C_EPOLL, C_UV, C_UVTRY, N_CONTENDERS };
static const char *const names[N_CONTENDERS] = {"libsock", "libsock-manual", "libsock-cb",
                                                 "epoll",   "libuv",          "libuv-try"};

static struct outcome run_one(int who, const struct acase *c) {
    switch (who) {
    case C_LIBSOCK:
        return run_libsock(c, 0);
    case C_MANUAL:
        return run_libsock(c, 1);
    case C_CB:
        return run_libsock_cb(c);
    case C_EPOLL:
        return run_epoll(c);
#if HAVE_UV
    case C_UV:
        return run_libuv(c, 0);
    case C_UVTRY:
        return run_libuv(c, 1);
#endif
    default:
        die("contender %d not built", who);
    }
}

/* BENCH_CONTENDERS: a comma-separated list of contender names to run (all
 * when unset), for profiling one contender with perf or strace. */
static int contender_selected(const char *name) {
    const char *list = getenv("BENCH_CONTENDERS");
    size_t len = strlen(name);
    if (list == NULL || *list == '\0')
        return 1;
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, len) == 0)
            return 1;
        p += n + (end != NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {64, 16384};
    static const int conn_counts[] = {1, 64};
    struct opts o;
    int who[N_CONTENDERS], n = 0;
    parse_opts(argc, argv, &o);
    env_int("BENCH_LAG_PHASE_US", &LAG_PHASE_US);
    env_int("BENCH_LAG_GROUPS", &LAG_GROUPS);
    env_int("BENCH_LAG_SNDBUF", &LAG_SNDBUF);
    env_int("BENCH_LAG_RCVBUF", &LAG_RCVBUF);
    pattern_init();
    raise_fd_limit();
    for (int i = 0; i < N_CONTENDERS; i++)
        if ((HAVE_UV || (i != C_UV && i != C_UVTRY)) && contender_selected(names[i]))
            who[n++] = i;
    if (n == 0)
        die("BENCH_CONTENDERS selects none of the contenders");
    if (!HAVE_UV)
        fprintf(stderr, "bench_async: built without libuv; libuv contenders skipped\n");
    for (int lag = 0; lag < 2; lag++)
        for (size_t si = 0; si < 2; si++)
            for (size_t ci = 0; ci < 2; ci++) {
                struct acase c = {.size = sizes[si], .conns = conn_counts[ci], .lag = lag};
                uint64_t total = (c.size == 64 ? 600000 : 60000) / (lag ? 2 : 1);
                total /= (uint64_t)o.shorter;
                c.msgs_per_conn = total / (uint64_t)c.conns;
                snprintf(c.id, sizeof c.id, "async-%s-%dconn-%s", c.size == 64 ? "64B" : "16KiB",
                         c.conns, lag ? "lag" : "fast");
                if (!case_selected(&o, c.id))
                    continue;
                for (int rep = 0; rep < o.reps; rep++)
                    for (int j = 0; j < n; j++) {
                        int w = who[run_order(rep, j, n)];
                        double cpu0 = cpu_seconds();
                        struct outcome r = run_one(w, &c);
                        double cpu = cpu_seconds() - cpu0;
                        double msgs = (double)(c.msgs_per_conn * (uint64_t)c.conns);
                        emit(c.id, names[w], rep, "msgs_per_s", msgs / r.secs);
                        emit(c.id, names[w], rep, "GB_per_s", msgs * (double)c.size / r.secs / 1e9);
                        emit(c.id, names[w], rep, "pending_pct", 100.0 * (double)r.pending / msgs);
                        emit(c.id, names[w], rep, "cpu_ns_per_msg", cpu * 1e9 / msgs);
                    }
            }
    return 0;
}
