/*
 * 10,000 connections, each with one pending send: completions per second
 * and memory per connection.
 *
 * Each trial runs in a fresh sender process. The receiver accepts every
 * connection and reads nothing until told to; both ends have 4 KiB
 * buffers, so one 32 KiB send per connection fills the kernel's buffers
 * (about 10 KiB fit) and the rest stays pending (the program checks that every send did go
 * pending). Then:
 *   rss_delta_per_conn    (RSS after the sends were submitted - RSS before
 *                         any connection existed) / connections, for the
 *                         same set-up in every contender; libsock's own
 *                         memory per connection is its delta minus that of
 *                         the raw-fd contender ("epoll"), see report.py;
 *   completions_per_s     connections / time from "receiver, go" until
 *                         the last send completed.
 * Contenders: libsock (default engine, callback per operation), epoll
 * (raw non-blocking fds, edge-triggered EPOLLOUT, send until EAGAIN),
 * libuv (uv_write per connection).
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

#define MSG (32 * 1024)
#define BUF 4096

static int nconns = 10000;
static const char *case_id = "pending-10000conn";

/* The program's own per-connection state: the same in every contender. */
struct pconn {
    uint64_t id; /* fd or handle */
    size_t off;  /* bytes of the message handed to the kernel */
};

struct trial {
    long rss0, rss1;
    uint64_t go_ns, done_ns;
    double cpu0, cpu1;
};

static void start_trial(struct trial *t, struct peer *p) {
    struct sink_cfg cfg = {.nconns = nconns, .rcvbuf = BUF, .hold = 1};
    t->rss0 = rss_bytes();
    sink_start(p, &cfg);
}

static void measure_and_go(struct trial *t, struct peer *p) {
    t->rss1 = rss_bytes();
    t->cpu0 = cpu_seconds();
    t->go_ns = now_ns();
    peer_go(p);
}

/* ---- libsock ---------------------------------------------------------- */

static _Atomic int g_done, g_fail;
static struct notifier g_note;

static void ls_done(sock_handle h, sock_status s, size_t n, void *ud) {
    struct pconn *c = ud;
    (void)h;
    c->off = n;
    if (s != SOCK_OK || n != MSG)
        atomic_store(&g_fail, s != SOCK_OK ? s : -2);
    if (atomic_fetch_add(&g_done, 1) + 1 == nconns)
        notifier_signal(&g_note);
}

static void run_libsock(struct trial *t) {
    struct peer p;
    struct pconn *conns;
    start_trial(t, &p);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (conns == NULL)
        die("out of memory");
    for (int i = 0; i < nconns; i++)
        conns[i].id = ls_connect(p.port, BUF, 0);
    for (int i = 0; i < nconns; i++) {
        size_t now = 0;
        sock_status s = sock_send_async(conns[i].id, pattern_at(0), MSG, SOCK_MSG_NONE, ls_done,
                                        &conns[i], &now);
        if (s != SOCK_IO_PENDING)
            die("connection %d: sock_send_async returned %s, not SOCK_IO_PENDING", i,
                sock_strerror(s));
    }
    measure_and_go(t, &p);
    for (;;) {
        uint32_t seen = notifier_snapshot(&g_note);
        if (atomic_load(&g_done) == nconns)
            break;
        notifier_wait(&g_note, seen);
    }
    t->done_ns = now_ns();
    t->cpu1 = cpu_seconds();
    if (atomic_load(&g_fail) != 0)
        die("a callback reported %d", atomic_load(&g_fail));
    for (int i = 0; i < nconns; i++)
        check_sock("sock_close", sock_close(conns[i].id));
    sink_finish(&p, (uint64_t)nconns * MSG);
}

/* ---- raw fds and epoll ------------------------------------------------- */

/* Sends until EAGAIN; returns 1 when the message is complete. */
static int push(struct pconn *c) {
    while (c->off < MSG) {
        ssize_t n = send((int)c->id, pattern_at(c->off), MSG - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            die_errno("send");
        }
        c->off += (size_t)n;
    }
    return 1;
}

static void run_epoll(struct trial *t) {
    struct peer p;
    struct pconn *conns;
    struct epoll_event evs[512];
    int ep, done = 0;
    start_trial(t, &p);
    conns = calloc((size_t)nconns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0)
        die("set-up failed");
    for (int i = 0; i < nconns; i++)
        conns[i].id = (uint64_t)raw_connect(p.port, BUF, 0, 1);
    for (int i = 0; i < nconns; i++) {
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.ptr = &conns[i]};
        if (push(&conns[i]))
            die("connection %d: the whole message fit; nothing is pending", i);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, (int)conns[i].id, &ev) != 0)
            die_errno("epoll_ctl");
    }
    measure_and_go(t, &p);
    while (done < nconns) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0 && errno != EINTR)
            die_errno("epoll_wait");
        for (int j = 0; j < k; j++) {
            struct pconn *c = evs[j].data.ptr;
            if (c->off < MSG && push(c))
                done++;
        }
    }
    t->done_ns = now_ns();
    t->cpu1 = cpu_seconds();
    for (int i = 0; i < nconns; i++)
        close((int)conns[i].id);
    close(ep);
    sink_finish(&p, (uint64_t)nconns * MSG);
}

/* ---- libuv ------------------------------------------------------------ */

#if HAVE_UV
struct uvc {
    uv_tcp_t tcp;
    uv_write_t req;
};

static int uv_done;

static void on_write(uv_write_t *req, int status) {
    struct pconn *c = req->data;
    check_uv("uv_write callback", status);
    c->off = MSG;
    uv_done++;
}

static void run_libuv(struct trial *t) {
    struct peer p;
    uv_loop_t loop;
    struct pconn *conns;
    struct uvc *u;
    uv_tcp_t **tcps;
    start_trial(t, &p);
    conns = calloc((size_t)nconns, sizeof *conns);
    u = calloc((size_t)nconns, sizeof *u);
    tcps = calloc((size_t)nconns, sizeof *tcps);
    if (conns == NULL || u == NULL || tcps == NULL)
        die("out of memory");
    check_uv("uv_loop_init", uv_loop_init(&loop));
    for (int i = 0; i < nconns; i++)
        tcps[i] = &u[i].tcp;
    uv_connect_all(&loop, tcps, nconns, p.port, BUF, 0);
    for (int i = 0; i < nconns; i++) {
        uv_buf_t b = uv_buf_init((char *)pattern_at(0), MSG);
        u[i].req.data = &conns[i];
        check_uv("uv_write", uv_write(&u[i].req, (uv_stream_t *)&u[i].tcp, &b, 1, on_write));
        if (uv_stream_get_write_queue_size((uv_stream_t *)&u[i].tcp) == 0)
            die("connection %d: the whole message fit; nothing is pending", i);
    }
    measure_and_go(t, &p);
    uv_done = 0;
    while (uv_done < nconns)
        uv_run(&loop, UV_RUN_ONCE);
    t->done_ns = now_ns();
    t->cpu1 = cpu_seconds();
    for (int i = 0; i < nconns; i++)
        uv_close((uv_handle_t *)&u[i].tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    check_uv("uv_loop_close", uv_loop_close(&loop));
    sink_finish(&p, (uint64_t)nconns * MSG);
}
#endif

enum { C_LIBSOCK, C_EPOLL, C_UV, N_CONTENDERS };
static const char *const names[N_CONTENDERS] = {"libsock", "epoll", "libuv"};

/* One trial in a fresh process, so every contender starts from the same RSS. */
static void trial_in_child(int who, int rep) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        struct trial t;
        memset(&t, 0, sizeof t);
        if (who == C_LIBSOCK)
            run_libsock(&t);
        else if (who == C_EPOLL)
            run_epoll(&t);
#if HAVE_UV
        else
            run_libuv(&t);
#endif
        double secs = (double)(t.done_ns - t.go_ns) / 1e9;
        emit(case_id, names[who], rep, "completions_per_s", nconns / secs);
        emit(case_id, names[who], rep, "rss_delta_per_conn", (double)(t.rss1 - t.rss0) / nconns);
        emit(case_id, names[who], rep, "cpu_ns_per_completion", (t.cpu1 - t.cpu0) * 1e9 / nconns);
        fflush(stdout);
        _exit(0);
    }
    char what[64];
    snprintf(what, sizeof what, "%s trial", names[who]);
    reap_child(pid, what);
}

int main(int argc, char **argv) {
    static char id[48];
    struct opts o;
    int who[N_CONTENDERS], n = 0;
    parse_opts(argc, argv, &o);
    if (o.quick) {
        nconns = 1000;
        snprintf(id, sizeof id, "pending-%dconn", nconns);
        case_id = id;
    }
    if (!case_selected(&o, case_id))
        return 0;
    if (raise_fd_limit() < nconns + 100)
        die("need %d descriptors per process", nconns + 100);
    pattern_init();
    for (int i = 0; i < N_CONTENDERS; i++)
        if (HAVE_UV || i != C_UV)
            who[n++] = i;
    for (int rep = 0; rep < o.reps; rep++)
        for (int j = 0; j < n; j++)
            trial_in_child(who[run_order(rep, j, n)], rep);
    return 0;
}
