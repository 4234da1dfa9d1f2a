/*
 * libsock demo: an echo server and a client on loopback, both using the
 * blocking API. The client sends a greeting with sock_send, a 4 MiB block
 * in one sock_send call, and three pieces with one sock_sendv; the server
 * echoes everything back; the client checks every byte and prints what
 * happened.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"

#define BLOCK_SIZE (4u << 20)

static int check(const char *what, sock_status s) {
    if (s != SOCK_OK) {
        fprintf(stderr, "demo: %s failed: %s (%d)\n", what, sock_strerror(s), (int)s);
        exit(1);
    }
    return 0;
}

/* Server: accept one client and echo until it shuts down its sending side. */
static void *echo_server(void *arg) {
    sock_handle listener = *(sock_handle *)arg;
    sock_handle conn;
    char peer[SOCK_ADDRESS_MAX_LEN];
    static char buf[64 * 1024];
    size_t total = 0, n = 0;

    check("accept", sock_accept(listener, &conn));
    check("peer_address", sock_peer_address(conn, peer, sizeof peer, NULL));
    printf("server: accepted %s\n", peer);
    for (;;) {
        check("server recv", sock_recv(conn, buf, sizeof buf, SOCK_MSG_NONE, &n));
        if (n == 0)
            break; /* orderly end of stream */
        check("server send", sock_send(conn, buf, n, SOCK_MSG_NONE, NULL));
        total += n;
    }
    printf("server: client finished; echoed %zu bytes\n", total);
    check("server close", sock_close(conn));
    return NULL;
}

/* Reads exactly len bytes back and compares them with what was sent. */
static void expect_echo(sock_handle h, const unsigned char *sent, size_t len) {
    static unsigned char buf[64 * 1024];
    size_t got = 0, n = 0;
    while (got < len) {
        size_t want = len - got < sizeof buf ? len - got : sizeof buf;
        check("client recv", sock_recv(h, buf, want, SOCK_MSG_NONE, &n));
        if (n == 0 || memcmp(buf, sent + got, n) != 0) {
            fprintf(stderr, "demo: echo differs at byte %zu\n", got);
            exit(1);
        }
        got += n;
    }
}

struct echo_check {
    sock_handle h;
    const unsigned char *data;
    size_t len;
};

static void *check_echo_thread(void *arg) {
    struct echo_check *job = arg;
    expect_echo(job->h, job->data, job->len);
    return NULL;
}

int main(void) {
    sock_handle listener, client;
    char addr[SOCK_ADDRESS_MAX_LEN];
    pthread_t server;
    size_t sent = 0;

    printf("libsock %s\n", sock_version());
    check("socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &listener));
    check("bind", sock_bind(listener, "127.0.0.1:0"));
    check("listen", sock_listen(listener, 16));
    check("local_address", sock_local_address(listener, addr, sizeof addr, NULL));
    printf("server: listening on %s\n", addr);
    if (pthread_create(&server, NULL, echo_server, &listener) != 0)
        return 1;

    check("socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &client));
    check("connect", sock_connect(client, addr));
    check("set recv timeout", sock_set_option(client, SOCK_OPT_RECV_TIMEOUT_MS, 10000));
    printf("client: connected to %s\n", addr);

    const char *hello = "hello, libsock";
    check("send", sock_send(client, hello, strlen(hello), SOCK_MSG_NONE, &sent));
    printf("client: sock_send of %zu bytes -> SOCK_OK, sent %zu\n", strlen(hello), sent);
    expect_echo(client, (const unsigned char *)hello, strlen(hello));
    printf("client: greeting echoed intact\n");

    /* One call sends all 4 MiB: the library loops over short writes. */
    unsigned char *block = malloc(BLOCK_SIZE);
    if (block == NULL)
        return 1;
    for (size_t i = 0; i < BLOCK_SIZE; i++)
        block[i] = (unsigned char)(i * 31 + (i >> 12));
    /* The echo streams back while we send: check it on a second thread. */
    struct echo_check job = {client, block, BLOCK_SIZE};
    pthread_t reader;
    if (pthread_create(&reader, NULL, check_echo_thread, &job) != 0)
        return 1;
    check("send block", sock_send(client, block, BLOCK_SIZE, SOCK_MSG_NONE, &sent));
    printf("client: sock_send of %u bytes -> SOCK_OK, sent %zu in one call\n", BLOCK_SIZE, sent);
    pthread_join(reader, NULL);
    printf("client: 4 MiB block echoed intact\n");

    const char *parts[3] = {"gather ", "send ", "works"};
    sock_buf bufs[3];
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        bufs[i].data = parts[i];
        bufs[i].len = strlen(parts[i]);
        total += bufs[i].len;
    }
    check("sendv", sock_sendv(client, bufs, 3, SOCK_MSG_NONE, &sent));
    printf("client: sock_sendv of 3 segments -> SOCK_OK, sent %zu\n", sent);
    expect_echo(client, (const unsigned char *)"gather send works", total);
    printf("client: gathered message echoed intact\n");

    check("shutdown", sock_shutdown(client, SOCK_SHUT_SEND));
    pthread_join(server, NULL);
    check("close", sock_close(client));
    check("close", sock_close(listener));
    sock_status stale = sock_send(client, hello, 1, SOCK_MSG_NONE, &sent);
    printf("client: send on the closed handle -> %s\n", sock_strerror(stale));
    free(block);
    printf("demo: done\n");
    return 0;
}
