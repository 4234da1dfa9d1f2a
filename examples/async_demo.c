/*
 * libsock async demo: a client sends with sock_send_async to a slow server
 * on loopback and prints what happened:
 *   1. small sends that finish inline (SOCK_OK, no callback);
 *   2. a 16 MiB send that goes pending (SOCK_IO_PENDING) and completes on
 *      the default engine's thread, and a chain of 1,000 sends started from
 *      the callback with the loop-on-SOCK_OK pattern;
 *   3. the same client on a manual engine, driven from this program's own
 *      poll() loop, so callbacks run on the main thread.
 * The server (a plain blocking libsock socket on its own thread) checks
 * that every byte arrived in order.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sock.h"

#define BIG (16u << 20)
#define CHAIN_STEPS 1000
#define CHAIN_LEN 512

static void check(const char *what, sock_status s) {
    if (s != SOCK_OK) {
        fprintf(stderr, "async_demo: %s failed: %s (%d)\n", what, sock_strerror(s), (int)s);
        exit(1);
    }
}

/* Every byte the client sends is (offset * 7) mod 251, so the server can
 * check order and content without knowing the message boundaries. */
static unsigned char pattern(size_t offset) { return (unsigned char)(offset * 7 % 251); }

struct server {
    sock_handle listener;
    size_t received;
    int intact;
};

static void *serve(void *arg) {
    struct server *sv = arg;
    sock_handle conn;
    static unsigned char buf[64 * 1024];
    size_t n = 0;
    check("accept", sock_accept(sv->listener, &conn));
    sv->intact = 1;
    for (int rounds = 0;; rounds++) {
        check("server recv", sock_recv(conn, buf, sizeof buf, SOCK_MSG_NONE, &n));
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++)
            sv->intact &= buf[i] == pattern(sv->received + i);
        sv->received += n;
        if (rounds < 50) { /* a slow start, so the big send has to wait */
            struct timespec ms = {0, 2000000};
            nanosleep(&ms, NULL);
        }
    }
    sock_close(conn);
    return NULL;
}

/* One client stream: a buffer of the pattern and how far the sends got. */
struct client {
    sock_handle h;
    unsigned char *data;  /* the bytes of the whole session, in order */
    size_t offset;        /* next byte to hand to sock_send_async */
    int steps_left;       /* sends of the chain still to start */
    atomic_int callbacks;
    atomic_int done;
    pthread_t callback_thread;
};

static void on_big_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    struct client *c = ud;
    (void)h;
    c->callback_thread = pthread_self();
    printf("  callback: big send -> %s, %zu bytes\n", sock_strerror(s), n);
    atomic_fetch_add(&c->callbacks, 1);
    atomic_store(&c->done, 1);
}

/* The chain: each completion starts the next send. A send that finishes
 * inline returns SOCK_OK and calls no callback, so loop instead of
 * recursing; SOCK_IO_PENDING means this callback will run again. */
static void on_chain_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    struct client *c = ud;
    (void)n;
    atomic_fetch_add(&c->callbacks, 1);
    while (s == SOCK_OK && c->steps_left > 0) {
        c->steps_left--;
        const unsigned char *next = c->data + c->offset;
        c->offset += CHAIN_LEN;
        s = sock_send_async(h, next, CHAIN_LEN, SOCK_MSG_NONE, on_chain_sent, c, NULL);
    }
    if (s != SOCK_OK && s != SOCK_IO_PENDING) {
        fprintf(stderr, "async_demo: chain failed: %s\n", sock_strerror(s));
        exit(1);
    }
    if (s == SOCK_OK && c->steps_left == 0)
        atomic_store(&c->done, 1);
}

static void connect_client(struct client *c, const char *addr) {
    check("socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &c->h));
    check("connect", sock_connect(c->h, addr));
}

static void start_server(struct server *sv, pthread_t *t, char *addr, size_t cap) {
    memset(sv, 0, sizeof *sv);
    check("socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &sv->listener));
    check("bind", sock_bind(sv->listener, "127.0.0.1:0"));
    check("listen", sock_listen(sv->listener, 4));
    check("local_address", sock_local_address(sv->listener, addr, cap, NULL));
    if (pthread_create(t, NULL, serve, sv) != 0)
        exit(1);
}

static void finish(struct client *c, struct server *sv, pthread_t t, size_t expected) {
    check("shutdown", sock_shutdown(c->h, SOCK_SHUT_SEND));
    pthread_join(t, NULL);
    printf("  server: received %zu of %zu bytes, %s\n", sv->received, expected,
           sv->intact && sv->received == expected ? "all in order" : "CORRUPT");
    if (!sv->intact || sv->received != expected)
        exit(1);
    sock_close(c->h);
    sock_close(sv->listener);
}

int main(void) {
    char addr[SOCK_ADDRESS_MAX_LEN];
    struct server sv;
    pthread_t server_thread;
    size_t total = 16 * 64 + BIG + (size_t)CHAIN_STEPS * CHAIN_LEN;
    unsigned char *data = malloc(total);
    if (data == NULL)
        return 1;
    for (size_t i = 0; i < total; i++)
        data[i] = pattern(i);

    printf("part 1 and 2: default engine\n");
    start_server(&sv, &server_thread, addr, sizeof addr);
    static struct client c;
    c.data = data;
    connect_client(&c, addr);

    int inline_done = 0;
    for (int i = 0; i < 16; i++) {
        size_t now = 0;
        sock_status s = sock_send_async(c.h, data + c.offset, 64, SOCK_MSG_NONE, on_big_sent, &c, &now);
        if (s == SOCK_OK)
            inline_done++;
        else if (s != SOCK_IO_PENDING)
            check("small send", s);
        c.offset += 64;
    }
    printf("  16 small sends: %d finished inline (SOCK_OK, no callback)\n", inline_done);

    size_t now = 0;
    sock_status s = sock_send_async(c.h, data + c.offset, BIG, SOCK_MSG_NONE, on_big_sent, &c, &now);
    printf("  16 MiB send -> %s, %zu bytes went inside the call\n", sock_strerror(s), now);
    c.offset += BIG;
    if (s == SOCK_OK)
        atomic_store(&c.done, 1);
    else if (s != SOCK_IO_PENDING)
        check("big send", s);
    while (!atomic_load(&c.done)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (s == SOCK_IO_PENDING)
        printf("  the callback ran on %s\n",
               pthread_equal(c.callback_thread, pthread_self()) ? "the main thread"
                                                                 : "the engine's thread");

    atomic_store(&c.done, 0);
    c.steps_left = CHAIN_STEPS;
    atomic_store(&c.callbacks, 0);
    on_chain_sent(c.h, SOCK_OK, 0, &c); /* start the chain as if a send just finished */
    while (!atomic_load(&c.done)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    printf("  chain of %d sends from the callback: %d callbacks ran (the rest finished inline)\n",
           CHAIN_STEPS, atomic_load(&c.callbacks) - 1);
    finish(&c, &sv, server_thread, total);

    printf("part 3: a manual engine in this program's own poll() loop\n");
    sock_engine *engine;
    int efd;
    check("engine_new", sock_engine_new(0, &engine));
    check("engine_fd", sock_engine_fd(engine, &efd));
    start_server(&sv, &server_thread, addr, sizeof addr);
    static struct client m;
    m.data = data;
    connect_client(&m, addr);
    check("attach", sock_attach(m.h, engine));
    s = sock_send_async(m.h, data, BIG, SOCK_MSG_NONE, on_big_sent, &m, &now);
    printf("  16 MiB send -> %s\n", sock_strerror(s));
    int polls = 0;
    while (s == SOCK_IO_PENDING && !atomic_load(&m.done)) {
        struct pollfd p = {efd, POLLIN, 0};
        poll(&p, 1, 1000); /* the program's own loop: other fds would go here */
        size_t ran = 0;
        check("engine_poll", sock_engine_poll(engine, 0, &ran));
        polls++;
    }
    printf("  done after %d turns of the loop; the callback ran on %s\n", polls,
           pthread_equal(m.callback_thread, pthread_self()) ? "the main thread" : "another thread");
    finish(&m, &sv, server_thread, BIG);
    check("engine_free", sock_engine_free(engine));
    free(data);
    printf("async_demo: done\n");
    return 0;
}
