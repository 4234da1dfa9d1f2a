/*
 * An echo server and its clients using only libsock's async calls: an
 * accept chain, receives, sends, and a graceful end (sock_shutdown_async,
 * then sock_close in its callback). No thread of its own and no poll of
 * its own sockets: it runs once on the default engine (the main thread
 * only waits for the work to be done) and once on a manual engine whose
 * descriptor is folded into the program's own poll() loop.
 *
 * Each of CLIENTS clients sends BYTES bytes of a pattern, then ends its
 * sending side; the server echoes everything back and ends its side when
 * the client's ends; each client checks every byte it gets back.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"

#define CLIENTS 8
#define BYTES (256 * 1024)
#define CHUNK 16384

static unsigned char pattern(size_t i, int client) {
    return (unsigned char)(i * 31 + (size_t)client * 7);
}

/* ---- bookkeeping: the main thread waits until every connection is done -- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_conns, failures;

static void finished(int ok) {
    pthread_mutex_lock(&mu);
    done_conns++;
    if (!ok)
        failures++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void fail(const char *what, sock_status s) {
    fprintf(stderr, "async_echo: %s: %s\n", what, sock_strerror(s));
}

/* ---- server side: one echo connection ------------------------------------ */

struct echo {
    sock_handle h;
    unsigned char buf[CHUNK];
};

static void echo_closed_gracefully(sock_handle h, sock_status s, void *ud) {
    struct echo *e = ud;
    if (s != SOCK_OK)
        fail("server shutdown", s);
    sock_close(h);
    free(e);
    finished(s == SOCK_OK);
}

static void echo_received(sock_handle h, sock_status s, size_t n, void *ud);
static void echo_step(struct echo *e, sock_status s, size_t n);

/* A send that went pending is done: receive the next piece. */
static void echo_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    struct echo *e = ud;
    if (s == SOCK_OK)
        s = sock_recv_async(h, e->buf, sizeof e->buf, SOCK_MSG_NONE, echo_received, e, &n);
    if (s != SOCK_IO_PENDING)
        echo_step(e, s, s == SOCK_OK ? n : 0);
}

/* The echo loop: receive; 0 bytes is the client's end: end ours too. */
static void echo_step(struct echo *e, sock_status s, size_t n) {
    for (;;) {
        if (s != SOCK_OK) {
            fail("server receive", s);
            sock_close(e->h);
            free(e);
            finished(0);
            return;
        }
        if (n == 0) {
            s = sock_shutdown_async(e->h, echo_closed_gracefully, e);
            if (s == SOCK_OK)
                echo_closed_gracefully(e->h, SOCK_OK, e);
            else if (s != SOCK_IO_PENDING)
                echo_closed_gracefully(e->h, s, e);
            return;
        }
        s = sock_send_async(e->h, e->buf, n, SOCK_MSG_NONE, echo_sent, e, NULL);
        if (s == SOCK_IO_PENDING)
            return; /* echo_sent goes on */
        if (s != SOCK_OK)
            continue; /* reported above as a failed step */
        s = sock_recv_async(e->h, e->buf, sizeof e->buf, SOCK_MSG_NONE, echo_received, e, &n);
        if (s == SOCK_IO_PENDING)
            return; /* echo_received goes on */
    }
}

static void echo_received(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    echo_step(ud, s, n);
}

static void echo_start(sock_handle h) {
    struct echo *e = calloc(1, sizeof *e);
    if (!e) {
        sock_close(h);
        finished(0);
        return;
    }
    e->h = h;
    size_t n = 0;
    sock_status s = sock_recv_async(h, e->buf, sizeof e->buf, SOCK_MSG_NONE, echo_received, e, &n);
    if (s != SOCK_IO_PENDING)
        echo_step(e, s, n);
}

/* ---- server side: the accept chain -------------------------------------- */

static int accepted_count;

static void on_accept(sock_handle listener, sock_status s, sock_handle conn, void *ud);

/* Accepts until CLIENTS connections came, looping on SOCK_OK. */
static void accept_more(sock_handle listener, sock_status s, sock_handle conn) {
    while (s == SOCK_OK) {
        echo_start(conn);
        if (++accepted_count == CLIENTS)
            return;
        s = sock_accept_async(listener, on_accept, NULL, &conn);
    }
    if (s != SOCK_IO_PENDING) {
        fail("accept", s);
        finished(0);
    }
}

static void on_accept(sock_handle listener, sock_status s, sock_handle conn, void *ud) {
    (void)ud;
    accept_more(listener, s, conn);
}

/* ---- client side ---------------------------------------------------------- */

struct client {
    int id;
    sock_handle h;
    unsigned char *out;
    unsigned char in[CHUNK];
    size_t got;
    atomic_int ok; /* written by the engine's callbacks and the main thread */
};

static void client_received(sock_handle h, sock_status s, size_t n, void *ud);

static void client_done(struct client *c) {
    sock_close(c->h);
    finished(c->ok && c->got == BYTES);
}

/* Takes echoed bytes, checking each, until the server's end. */
static void client_step(struct client *c, sock_status s, size_t n) {
    for (;;) {
        if (s != SOCK_OK || n == 0) {
            if (s != SOCK_OK) {
                fail("client receive", s);
                c->ok = 0;
            }
            client_done(c);
            return;
        }
        for (size_t i = 0; i < n; i++)
            if (c->in[i] != pattern(c->got + i, c->id))
                c->ok = 0;
        c->got += n;
        s = sock_recv_async(c->h, c->in, sizeof c->in, SOCK_MSG_NONE, client_received, c, &n);
        if (s == SOCK_IO_PENDING)
            return;
    }
}

static void client_received(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    client_step(ud, s, n);
}

static void client_shut(sock_handle h, sock_status s, void *ud) {
    (void)h;
    struct client *c = ud;
    if (s != SOCK_OK) {
        fail("client shutdown", s);
        c->ok = 0;
    }
}

static void client_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    (void)h;
    (void)n;
    struct client *c = ud;
    if (s != SOCK_OK) {
        fail("client send", s);
        c->ok = 0;
    }
}

/* Connected (the sends and the shutdown were queued behind the connect
 * and now leave in order): receive the echo. */
static void client_connected(sock_handle h, sock_status s, void *ud) {
    struct client *c = ud;
    if (s != SOCK_OK) {
        fail("connect", s);
        atomic_store(&c->ok, 0);
        client_done(c);
        return;
    }
    size_t n = 0;
    s = sock_recv_async(h, c->in, sizeof c->in, SOCK_MSG_NONE, client_received, c, &n);
    if (s != SOCK_IO_PENDING)
        client_step(c, s, n);
}

/* Connects, and without waiting for it queues every send and then the
 * graceful end of the sending side: they leave in order once connected. */
static void client_start(struct client *c, const char *addr, sock_engine *e) {
    atomic_store(&c->ok, 1);
    sock_status s = sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &c->h);
    if (s == SOCK_OK && e)
        s = sock_attach(c->h, e);
    if (s != SOCK_OK) {
        fail("socket", s);
        finished(0);
        return;
    }
    /* (a TCP connect does not finish inside the call: the callback starts
     * the receiving; it may run before the sends below are queued, which
     * is fine: they queue behind whatever is pending) */
    s = sock_connect_async(c->h, addr, client_connected, c);
    if (s != SOCK_IO_PENDING) {
        fail("connect", s);
        atomic_store(&c->ok, 0);
        client_done(c);
        return;
    }
    for (size_t off = 0; off < BYTES; off += CHUNK) {
        sock_status st = sock_send_async(c->h, c->out + off, CHUNK, SOCK_MSG_NONE, client_sent, c, NULL);
        if (st != SOCK_OK && st != SOCK_IO_PENDING) {
            fail("client send", st);
            atomic_store(&c->ok, 0);
        }
    }
    s = sock_shutdown_async(c->h, client_shut, c);
    if (s != SOCK_OK && s != SOCK_IO_PENDING)
        client_shut(c->h, s, c);
}

/* ---- one run -------------------------------------------------------------- */

static int run(sock_engine *manual) {
    static struct client clients[CLIENTS];
    sock_handle listener;
    char addr[SOCK_ADDRESS_MAX_LEN];
    size_t len;
    done_conns = failures = accepted_count = 0;
    if (sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &listener) != SOCK_OK ||
        (manual && sock_attach(listener, manual) != SOCK_OK) ||
        sock_bind(listener, "127.0.0.1:0") != SOCK_OK || sock_listen(listener, CLIENTS) != SOCK_OK ||
        sock_local_address(listener, addr, sizeof addr, &len) != SOCK_OK) {
        fprintf(stderr, "async_echo: listener set-up failed\n");
        return 1;
    }
    sock_handle first = SOCK_INVALID_HANDLE;
    accept_more(listener, sock_accept_async(listener, on_accept, NULL, &first), first);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].id = i;
        clients[i].got = 0;
        clients[i].out = malloc(BYTES);
        for (size_t k = 0; k < BYTES; k++)
            clients[i].out[k] = pattern(k, i);
        client_start(&clients[i], addr, manual);
    }
    /* 2 ends per client: its own, and the server's for its connection */
    if (manual) {
        int fd;
        sock_engine_fd(manual, &fd);
        for (;;) {
            pthread_mutex_lock(&mu);
            int all = done_conns == 2 * CLIENTS;
            pthread_mutex_unlock(&mu);
            if (all)
                break;
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, 1000); /* the program's own loop: the engine's fd in it */
            sock_engine_poll(manual, 0, NULL);
        }
    } else {
        pthread_mutex_lock(&mu);
        while (done_conns < 2 * CLIENTS)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    }
    sock_close(listener);
    for (int i = 0; i < CLIENTS; i++)
        free(clients[i].out);
    printf("%s engine: %d clients echoed %d KiB each, every byte checked, graceful ends: %s\n",
           manual ? "manual" : "default", CLIENTS, BYTES / 1024, failures ? "FAILED" : "ok");
    return failures != 0;
}

int main(void) {
    int bad = run(NULL);
    sock_engine *e;
    if (sock_engine_new(0, &e) != SOCK_OK)
        return 1;
    bad |= run(e);
    sock_engine_free(e);
    sock_cleanup();
    return bad;
}
