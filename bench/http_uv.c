/*
 * The benchmark's HTTP responder on libuv, one thread: the baseline of
 * examples/http_server.c with the same interface and the same request
 * parser (http_common.h).
 *
 *   usage: http_uv [--threads 1] [--body BYTES] ADDRESS
 *
 * uv_read_start into the connection's buffer; each complete head gets a
 * uv_write of the static head and body (write requests from a pool of 64
 * per connection, so no allocation per response); reading stops while
 * bytes wait in the write queue (as the example stops receiving while a
 * send is pending) and resumes from the write callback. Close: uv_shutdown
 * (behind the writes), then uv_close. SIGTERM/SIGINT: uv_signal, close all
 * handles, exit 0.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <uv.h>

#include "http_common.h"

#define POOL 64

struct conn {
    uv_tcp_t tcp;
    int reading, closing, shut;
    int free_n;
    uv_write_t *free_w[POOL];
    uv_write_t w[POOL];
    uv_shutdown_t sh;
    struct http_in h;
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigterm, sigint;

static void on_close(uv_handle_t *h) {
    free(h->data);
}

static void conn_close(struct conn *c) {
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    conn_close(req->data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    struct conn *c = h->data;
    (void)hint;
    buf->base = c->h.in + c->h.len;
    buf->len = INBUF - c->h.len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_write(uv_write_t *w, int status);

static void process(struct conn *c) {
    while (!c->closing && c->free_n > 0) {
        int wb = 1, close_after = 0;
        int k = http_next(&c->h, &wb, &close_after);
        if (k < 0)
            break;
        uv_write_t *w = c->free_w[--c->free_n];
        w->data = c;
        uv_buf_t b[2] = {uv_buf_init(heads[k], (unsigned)head_len[k]), uv_buf_init(body, (unsigned)body_len)};
        if (uv_write(w, (uv_stream_t *)&c->tcp, b, wb ? 2 : 1, on_write) != 0) {
            c->free_w[c->free_n++] = w;
            conn_close(c);
            return;
        }
        if (close_after)
            c->closing = 1;
    }
    http_compact(&c->h);
    if (c->closing) {
        if (!c->shut) {
            c->shut = 1;
            if (c->reading)
                uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
            c->sh.data = c;
            if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
                conn_close(c);
        }
        return;
    }
    int busy = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 || c->free_n == 0;
    if (busy && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else if (!busy && !c->reading) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_write(uv_write_t *w, int status) {
    struct conn *c = w->data;
    c->free_w[c->free_n++] = w;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp) && !c->reading && !c->closing)
        process(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    struct conn *c = s->data;
    (void)buf;
    if (n < 0) {
        if (n == UV_EOF) {
            c->closing = 1;
            process(c);
        } else {
            conn_close(c);
        }
        return;
    }
    c->h.len += (size_t)n;
    process(c);
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    for (int i = 0; i < POOL; i++)
        c->free_w[i] = &c->w[i];
    c->free_n = POOL;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h == (uv_handle_t *)&server || h == (uv_handle_t *)&sigterm || h == (uv_handle_t *)&sigint
                        ? NULL
                        : on_close);
}

static void on_signal(uv_signal_t *s, int signum) {
    (void)signum;
    uv_walk(s->loop, close_any, NULL);
}

int main(int argc, char **argv) {
    const char *port_text = http_setup(argc, argv, "http_uv");
    loop = uv_default_loop();
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", atoi(port_text), &a);
    uv_tcp_init(loop, &server);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (r != 0) {
        fprintf(stderr, "http_uv: bind/listen: %s\n", uv_strerror(r));
        return 1;
    }
    int al = sizeof a;
    uv_tcp_getsockname(&server, (struct sockaddr *)&a, &al);
    printf("listening on 127.0.0.1:%u\n", ntohs(a.sin_port));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(body);
    return 0;
}
