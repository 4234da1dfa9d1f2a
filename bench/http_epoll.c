/*
 * The benchmark's HTTP responder on a hand-written edge-triggered epoll
 * loop, one thread: the baseline of examples/http_server.c with the same
 * interface and the same request parser (http_common.h).
 *
 *   usage: http_epoll [--threads 1] [--body BYTES] ADDRESS
 *
 * Every socket is registered once (EPOLLIN | EPOLLOUT | EPOLLET). A
 * connection's handler loops: parse the complete heads, queue their
 * responses, writev the queue until EAGAIN (then wait for EPOLLOUT; no
 * reading meanwhile, as the example does while a send is pending), then
 * recv until EAGAIN. SIGTERM/SIGINT arrive on a signalfd: close all, exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http_common.h"

#define QMAX 64

struct conn {
    int fd;
    int closing, eof, dead;
    int qhead, qn;              /* queued responses (ring) */
    int kind[QMAX], with_body[QMAX];
    size_t off;                 /* bytes of the first queued response written */
    struct conn *next_dead;
    struct http_in h;
};

static int ep;
static char listener_tag, signal_tag;
static struct conn *dead_list;
static struct conn **all;  /* by descriptor, for the exit */
static size_t all_cap;

static void conn_close(struct conn *c) {
    if (c->dead)
        return;
    c->dead = 1;
    close(c->fd);
    all[c->fd] = NULL;
    c->next_dead = dead_list;
    dead_list = c;
}

/* Writes queued responses; 0: all written, 1: EAGAIN, -1: error. */
static int flush(struct conn *c) {
    while (c->qn > 0) {
        int k = c->kind[c->qhead];
        struct iovec iov[2] = {{heads[k], head_len[k]}, {body, c->with_body[c->qhead] ? body_len : 0}};
        size_t total = iov[0].iov_len + iov[1].iov_len, off = c->off;
        int i = 0;
        while (off >= iov[i].iov_len && i < 1) { /* skip what went */
            off -= iov[i].iov_len;
            i++;
        }
        iov[i].iov_base = (char *)iov[i].iov_base + off;
        iov[i].iov_len -= off;
        ssize_t n = writev(c->fd, iov + i, 2 - i);
        if (n < 0)
            return errno == EAGAIN ? 1 : -1;
        c->off += (size_t)n;
        if (c->off == total) {
            c->off = 0;
            c->qhead = (c->qhead + 1) % QMAX;
            c->qn--;
        }
    }
    return 0;
}

static void handle(struct conn *c) {
    for (;;) {
        while (!c->closing && c->qn < QMAX) {
            int wb = 1, close_after = 0;
            int k = http_next(&c->h, &wb, &close_after);
            if (k < 0)
                break;
            int slot = (c->qhead + c->qn) % QMAX;
            c->kind[slot] = k;
            c->with_body[slot] = wb;
            c->qn++;
            if (close_after)
                c->closing = 1;
        }
        http_compact(&c->h);
        int f = flush(c);
        if (f < 0) {
            conn_close(c);
            return;
        }
        if (f > 0)
            return; /* EPOLLOUT goes on */
        if (c->closing || c->eof) {
            shutdown(c->fd, SHUT_WR);
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->fd, c->h.in + c->h.len, INBUF - c->h.len, 0);
        if (n > 0) {
            c->h.len += (size_t)n;
        } else if (n == 0) {
            c->eof = 1;
        } else {
            if (errno != EAGAIN)
                conn_close(c);
            return;
        }
    }
}

int main(int argc, char **argv) {
    const char *port_text = http_setup(argc, argv, "http_epoll");
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port_text))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4096) != 0) {
        perror("http_epoll: bind/listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("listening on 127.0.0.1:%u\n", ntohs(a.sin_port));
    fflush(stdout);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    all_cap = rl.rlim_cur;
    all = calloc(all_cap, sizeof *all);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &signal_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    for (;;) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, -1);
        if (k < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < k; i++) {
            void *p = evs[i].data.ptr;
            if (p == &signal_tag) {
                for (size_t fd = 0; fd < all_cap; fd++)
                    if (all[fd] != NULL) {
                        close(all[fd]->fd);
                        free(all[fd]);
                    }
                close(lfd);
                close(ep);
                return 0;
            }
            if (p == &listener_tag) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    if ((size_t)fd >= all_cap) {
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    all[fd] = c;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            struct conn *c = p;
            if (!c->dead)
                handle(c);
        }
        while (dead_list != NULL) {
            struct conn *c = dead_list;
            dead_list = c->next_dead;
            free(c);
        }
    }
}
