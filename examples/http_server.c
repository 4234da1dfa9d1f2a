/*
 * libsock HTTP/1.1 responder: every GET, whatever the path, gets
 * "200 OK" with a body of BYTES bytes. Built only on libsock's async calls
 * (an accept chain, receives, gathered sends, graceful shutdown then
 * close); no poll loop and no thread of its own beyond the engine's.
 *
 *   usage: http_server [--threads N] [--body BYTES] ADDRESS
 *
 * The first line on stdout is "listening on 127.0.0.1:PORT"; it serves
 * until SIGTERM or SIGINT, then exits 0.
 *
 * Connections: keep-alive by default (HTTP/1.0: only when asked),
 * "Connection: close" honoured, pipelined requests answered in order, a
 * malformed request gets 400 and a close, a head over 8 KiB gets 431 and a
 * close. A client that goes away costs only its own connection.
 *
 * How a connection runs. Its state is one struct conn. Every callback of
 * the connection runs on its engine thread, one at a time, so the struct
 * needs no lock; the only other threads that see it are the accept
 * callback's (which may be another thread of the engine with --threads N:
 * accepted sockets are bound to the listener's thread, and are then
 * attached to the engine round robin) and the main thread at exit (which
 * only closes handles, under the list lock). The first receive of a
 * connection is submitted with inline completion off, so whatever it gets
 * is handled on the connection's own thread, never on the accepting one.
 *
 * step() is the connection's loop: parse every complete request head in
 * the buffer and queue its response (sock_sendv_async of a static head and
 * the static body; loop on SOCK_OK), then receive more, again looping on
 * SOCK_OK. While a response is still pending (a slow reader) nothing more
 * is read, so a client that pipelines without reading cannot make the
 * server queue without bound. On "Connection: close", a 400/431 or end of
 * stream: sock_shutdown_async (behind the pending responses), then in its
 * callback a short drain of what the client still sends (so that the
 * close does not reset a connection with unread input), then sock_close.
 * A struct conn is freed when its handle is closed and no operation of it
 * is pending (ops counts those that returned SOCK_IO_PENDING and whose
 * callbacks have not run yet).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "sock.h"

#define HEAD_MAX 8192    /* a request head longer than this gets 431 */
#define INBUF 16384      /* receive buffer: room for pipelined heads */
#define DRAIN_MS 2000    /* how long a closing connection drains input */
#define DRAIN_MAX 65536  /* and how many bytes */

static sock_engine *engine;
static sock_handle listener;
static unsigned threads = 1;

static char *body;
static size_t body_len = 13;

/* Static response heads (built once at startup), one per kind. */
enum { RESP_OK, RESP_OK_KEEP10, RESP_OK_CLOSE, RESP_400, RESP_405, RESP_431, RESP_COUNT };
static char heads[RESP_COUNT][192];
static size_t head_len[RESP_COUNT];

struct conn {
    sock_handle h;
    struct conn *prev, *next;  /* the list of live connections (list_lock) */
    int ops;                   /* operations pending (returned SOCK_IO_PENDING) */
    int sends;                 /* of which sends */
    int recv_pending;
    int first;                 /* first receive: inline completion was off */
    int closing;               /* no more requests: shutdown (after sends) */
    int shut_started;
    int draining;              /* shutdown done: discarding input until end */
    size_t drained;
    int eof;                   /* the client ended its side */
    int closed;                /* sock_close called */
    size_t start;              /* parsed bytes at the front of in */
    size_t len;                /* bytes in in */
    size_t scanned;            /* bytes after start known not to end a head */
    size_t skip;               /* body bytes of the current request to discard */
    char in[INBUF];
};

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn list_head = {.prev = &list_head, .next = &list_head};
static int stopping;  /* under list_lock */

static void step(struct conn *c);
static void on_recv(sock_handle h, sock_status s, size_t n, void *ud);

static void unlink_conn(struct conn *c) {
    pthread_mutex_lock(&list_lock);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    pthread_mutex_unlock(&list_lock);
}

static void close_conn(struct conn *c) {
    if (!c->closed) {
        c->closed = 1;
        sock_close(c->h); /* SOCK_NOT_SOCKET if the main thread closed it first */
    }
}

/* After a callback: free the connection once it is closed and idle. */
static void maybe_free(struct conn *c) {
    if (c->closed && c->ops == 0) {
        unlink_conn(c);
        free(c);
    }
}

/* A failed operation (reset, abort, closed by the main thread): this
 * connection is over. */
static void fail(struct conn *c) {
    close_conn(c);
}

static void on_sent(sock_handle h, sock_status s, size_t n, void *ud) {
    struct conn *c = ud;
    (void)h;
    (void)n;
    c->ops--;
    c->sends--;
    if (s != SOCK_OK)
        fail(c);
    if (!c->closed)
        step(c);
    maybe_free(c);
}

static void on_shutdown(sock_handle h, sock_status s, void *ud) {
    struct conn *c = ud;
    (void)h;
    c->ops--;
    if (s != SOCK_OK)
        fail(c);
    else
        c->draining = 1;
    if (!c->closed)
        step(c);
    maybe_free(c);
}

static void on_recv(sock_handle h, sock_status s, size_t n, void *ud) {
    struct conn *c = ud;
    c->ops--;
    c->recv_pending = 0;
    if (c->first) {
        c->first = 0;
        sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 1);
    }
    if (s == SOCK_TIMED_OUT && c->draining) {
        c->eof = 1; /* drained long enough */
    } else if (s != SOCK_OK) {
        fail(c);
    } else if (n == 0) {
        c->eof = 1;
    } else if (c->draining) {
        c->drained += n;
    } else {
        c->len += n;
    }
    if (!c->closed)
        step(c);
    maybe_free(c);
}

/* ---- parsing ------------------------------------------------------------ */

static int is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Does the comma-separated list [v, end) hold token tok (case-insensitive)? */
static int has_token(const char *v, const char *end, const char *tok) {
    size_t tl = strlen(tok);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *e = v;
        while (e < end && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, tok, tl) == 0)
            return 1;
        v = e;
    }
    return 0;
}

enum verdict { V_OK, V_HEAD_ONLY, V_BAD, V_METHOD };

/* Parses one head [p, p + n) (ending in CRLF CRLF). Sets *keep (the
 * connection stays open after the response), *ver10 and *content_length. */
static enum verdict parse_head(const char *p, size_t n, int *keep, int *ver10, size_t *content_length) {
    const char *end = p + n - 2; /* the last CRLF ends the header lines */
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (eol == NULL || eol[1] != '\n')
        return V_BAD;
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (sp1 == NULL || sp1 == p)
        return V_BAD;
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q))
            return V_BAD;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (sp2 == NULL || sp2 == target)
        return V_BAD;
    for (const char *q = target; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return V_BAD;
    const char *ver = sp2 + 1;
    if (eol - ver != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return V_BAD;
    *ver10 = ver[7] == '0';
    int conn_close = 0, conn_keep = 0, have_cl = 0;
    *content_length = 0;
    for (const char *line = eol + 2; line < end;) {
        const char *le = memchr(line, '\r', (size_t)(end - line));
        if (le == NULL || le[1] != '\n')
            return V_BAD;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon == NULL || colon == line)
            return V_BAD; /* also obsolete line folding (leading space) */
        for (const char *q = line; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return V_BAD;
        for (const char *q = colon + 1; q < le; q++)
            if ((unsigned char)*q < 0x20 && *q != '\t')
                return V_BAD;
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (nl == 10 && strncasecmp(line, "connection", 10) == 0) {
            conn_close |= has_token(v, ve, "close");
            conn_keep |= has_token(v, ve, "keep-alive");
        } else if (nl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            return V_BAD; /* no request bodies but Content-Length ones */
        } else if (nl == 14 && strncasecmp(line, "content-length", 14) == 0) {
            if (v == ve || have_cl)
                return V_BAD;
            size_t cl = 0;
            for (const char *q = v; q < ve; q++) {
                if (*q < '0' || *q > '9' || cl > (SIZE_MAX - 9) / 10)
                    return V_BAD;
                cl = cl * 10 + (size_t)(*q - '0');
            }
            have_cl = 1;
            *content_length = cl;
        }
        line = le + 2;
    }
    *keep = *ver10 ? (conn_keep && !conn_close) : !conn_close;
    size_t ml = (size_t)(sp1 - p);
    if (ml == 3 && memcmp(p, "GET", 3) == 0)
        return V_OK;
    if (ml == 4 && memcmp(p, "HEAD", 4) == 0)
        return V_HEAD_ONLY;
    return V_METHOD;
}

/* ---- the connection's loop ---------------------------------------------- */

/* Queues one response; 0 on success (inline or pending), -1 when the
 * connection failed. */
static int respond(struct conn *c, int kind, int with_body) {
    sock_buf b[2] = {{heads[kind], head_len[kind]}, {body, body_len}};
    c->ops++;
    c->sends++;
    sock_status s = sock_sendv_async(c->h, b, with_body ? 2 : 1, SOCK_MSG_NONE, on_sent, c, NULL);
    if (s == SOCK_IO_PENDING)
        return 0;
    c->ops--;
    c->sends--;
    if (s == SOCK_OK)
        return 0;
    fail(c);
    return -1;
}

/* Parses the complete heads in the buffer and queues their responses. */
static void parse_all(struct conn *c) {
    while (!c->closing && !c->closed) {
        if (c->skip > 0) { /* the body of the previous request */
            size_t k = c->len - c->start < c->skip ? c->len - c->start : c->skip;
            c->start += k;
            c->skip -= k;
            if (c->skip > 0)
                break;
        }
        /* Empty lines before a request line are ignored (RFC 9112 2.2). */
        while (c->len - c->start >= 2 && c->in[c->start] == '\r' && c->in[c->start + 1] == '\n')
            c->start += 2;
        const char *p = c->in + c->start;
        size_t avail = c->len - c->start;
        size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
        const char *e = avail >= 4 ? memmem(p + from, avail - from, "\r\n\r\n", 4) : NULL;
        if (e == NULL) {
            c->scanned = avail;
            if (avail >= HEAD_MAX) { /* no end within 8 KiB: the head is longer */
                respond(c, RESP_431, 1);
                c->closing = 1;
            }
            break;
        }
        size_t n = (size_t)(e - p) + 4;
        c->scanned = 0;
        if (n > HEAD_MAX) {
            respond(c, RESP_431, 1);
            c->closing = 1;
            break;
        }
        int keep = 0, ver10 = 0;
        size_t cl = 0;
        enum verdict v = parse_head(p, n, &keep, &ver10, &cl);
        c->start += n;
        c->skip = cl;
        switch (v) {
        case V_OK:
        case V_HEAD_ONLY:
            respond(c, !keep ? RESP_OK_CLOSE : ver10 ? RESP_OK_KEEP10 : RESP_OK, v == V_OK);
            if (!keep)
                c->closing = 1;
            break;
        case V_METHOD:
            respond(c, RESP_405, 1);
            c->closing = 1;
            break;
        case V_BAD:
            respond(c, RESP_400, 1);
            c->closing = 1;
            break;
        }
    }
    if (c->start == c->len) {
        c->start = c->len = 0;
    } else if (c->start > 0 && c->len == INBUF) { /* make room at the end */
        memmove(c->in, c->in + c->start, c->len - c->start);
        c->len -= c->start;
        c->start = 0;
    }
}

static void step(struct conn *c) {
    for (;;) {
        if (c->closed)
            return;
        if (!c->closing && !c->draining)
            parse_all(c);
        if (c->closed)
            return;
        if (c->eof && !c->closing) /* the client is done: answer, then end */
            c->closing = 1;
        if (c->draining && (c->eof || c->drained > DRAIN_MAX)) {
            close_conn(c);
            return;
        }
        if (c->closing && !c->shut_started) {
            c->shut_started = 1;
            c->ops++;
            sock_status s = sock_shutdown_async(c->h, on_shutdown, c);
            if (s == SOCK_IO_PENDING)
                return; /* on_shutdown goes on */
            c->ops--;
            if (s != SOCK_OK) {
                fail(c);
                return;
            }
            c->draining = 1;
            continue;
        }
        if (c->closing && !c->draining)
            return; /* waiting for the shutdown */
        if (c->recv_pending || c->eof)
            return;
        if (!c->draining && c->sends > 0)
            return; /* a slow reader: read on when its responses have gone */
        /* Receive: into the buffer, or (draining) anywhere. */
        char *dst = c->in + c->len;
        size_t cap = INBUF - c->len;
        if (c->draining) {
            dst = c->in;
            cap = INBUF;
            if (c->drained == 0)
                sock_set_option(c->h, SOCK_OPT_RECV_TIMEOUT_MS, DRAIN_MS);
        }
        size_t n = 0;
        c->ops++;
        c->recv_pending = 1;
        sock_status s = sock_recv_async(c->h, dst, cap, SOCK_MSG_NONE, on_recv, c, &n);
        if (s == SOCK_IO_PENDING)
            return; /* on_recv goes on; c may already be gone */
        c->ops--;
        c->recv_pending = 0;
        if (s != SOCK_OK) {
            fail(c);
            return;
        }
        if (n == 0)
            c->eof = 1;
        else if (c->draining)
            c->drained += n;
        else
            c->len += n;
    }
}

/* A new connection: into the list, onto an engine thread, first receive. */
static void adopt(sock_handle h) {
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        sock_close(h);
        return;
    }
    c->h = h;
    pthread_mutex_lock(&list_lock);
    if (stopping) {
        pthread_mutex_unlock(&list_lock);
        sock_close(h);
        free(c);
        return;
    }
    c->next = list_head.next;
    c->prev = &list_head;
    list_head.next->prev = c;
    list_head.next = c;
    pthread_mutex_unlock(&list_lock);
    sock_set_option(h, SOCK_OPT_NO_DELAY, 1);
    if (threads > 1)
        sock_attach(h, engine); /* round robin over the engine's threads */
    /* Inline completion off for the first receive: it then always reports
     * on the connection's own thread (on_recv turns it back on). */
    sock_set_option(h, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0);
    c->first = 1;
    c->recv_pending = 1;
    c->ops = 1;
    size_t n = 0;
    sock_status s = sock_recv_async(h, c->in, INBUF, SOCK_MSG_NONE, on_recv, c, &n);
    if (s != SOCK_IO_PENDING) { /* refused: nothing else refers to c */
        c->ops = 0;
        c->closed = 1;
        sock_close(h);
        maybe_free(c);
    }
}

static void on_accept(sock_handle l, sock_status s, sock_handle accepted, void *ud);

/* The accept chain: loop while connections are waiting. */
static void accept_more(void) {
    for (;;) {
        sock_handle h = SOCK_INVALID_HANDLE;
        sock_status s = sock_accept_async(listener, on_accept, NULL, &h);
        if (s == SOCK_OK) {
            adopt(h);
            continue;
        }
        if (s != SOCK_IO_PENDING && s != SOCK_NOT_SOCKET && s != SOCK_OPERATION_ABORTED)
            fprintf(stderr, "http_server: accept: %s\n", sock_strerror(s));
        return;
    }
}

static void on_accept(sock_handle l, sock_status s, sock_handle accepted, void *ud) {
    (void)l;
    (void)ud;
    if (s == SOCK_OK)
        adopt(accepted);
    else if (s == SOCK_OPERATION_ABORTED || s == SOCK_NOT_SOCKET)
        return; /* the listener was closed: stop */
    else if (s != SOCK_TOO_MANY_OPEN_SOCKETS && s != SOCK_CONNECTION_ABORTED && s != SOCK_CONNECTION_RESET)
        fprintf(stderr, "http_server: accept: %s\n", sock_strerror(s));
    accept_more();
}

/* ---- main --------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: http_server [--threads N] [--body BYTES] ADDRESS\n");
    exit(2);
}

static int parse_size(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

static void check(const char *what, sock_status s) {
    if (s != SOCK_OK) {
        fprintf(stderr, "http_server: %s: %s (%d)\n", what, sock_strerror(s), (int)s);
        exit(1);
    }
}

static void make_head(int kind, const char *status, const char *conn, size_t len) {
    int n = snprintf(heads[kind], sizeof heads[kind],
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     len, kind == RESP_405 ? "Allow: GET, HEAD\r\n" : "", conn);
    head_len[kind] = (size_t)n;
}

int main(int argc, char **argv) {
    const char *address = NULL;
    unsigned long long v;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (parse_size(argv[++i], SOCK_ENGINE_MAX_THREADS, &v) != 0 || v == 0)
                usage();
            threads = (unsigned)v;
        } else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc) {
            if (parse_size(argv[++i], (unsigned long long)1 << 40, &v) != 0)
                usage();
            body_len = (size_t)v;
        } else if (argv[i][0] == '-' || address != NULL) {
            usage();
        } else {
            address = argv[i];
        }
    }
    if (address == NULL)
        usage();

    /* The body: "Hello, world!" repeated (cut to BYTES). */
    static const char hello[] = "Hello, world!";
    body = malloc(body_len > 0 ? body_len : 1);
    if (body == NULL) {
        fprintf(stderr, "http_server: out of memory for a body of %zu bytes\n", body_len);
        return 1;
    }
    for (size_t i = 0; i < body_len; i++)
        body[i] = hello[i % (sizeof hello - 1)];
    make_head(RESP_OK, "200 OK", "", body_len);
    make_head(RESP_OK_KEEP10, "200 OK", "Connection: keep-alive\r\n", body_len);
    make_head(RESP_OK_CLOSE, "200 OK", "Connection: close\r\n", body_len);
    make_head(RESP_400, "400 Bad Request", "Connection: close\r\n", 0);
    make_head(RESP_405, "405 Method Not Allowed", "Connection: close\r\n", 0);
    make_head(RESP_431, "431 Request Header Fields Too Large", "Connection: close\r\n", 0);

    /* Many connections need many descriptors: the soft limit up to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* The signals are taken by sigwait() below; blocked before the engine
     * starts, so its threads inherit the mask and never take them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    check("sock_engine_new", sock_engine_new(threads, &engine));
    check("sock_socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &listener));
    check("sock_set_option(REUSE_ADDRESS)", sock_set_option(listener, SOCK_OPT_REUSE_ADDRESS, 1));
    check("sock_bind", sock_bind(listener, address));
    check("sock_listen", sock_listen(listener, 4096));
    check("sock_attach", sock_attach(listener, engine));
    char local[SOCK_ADDRESS_MAX_LEN];
    check("sock_local_address", sock_local_address(listener, local, sizeof local, NULL));
    printf("listening on %s\n", local);
    fflush(stdout);
    accept_more();

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }

    /* Stop: no new connection is adopted from now on (adopt checks
     * stopping under the lock); closing the listener ends its pending
     * accept with SOCK_OPERATION_ABORTED; closing every connection ends
     * its pending operations, whose callbacks free it. sock_engine_free
     * waits for a running callback, runs the rest, and joins the threads,
     * so after it no callback runs; what is left in the list is freed
     * here. */
    pthread_mutex_lock(&list_lock);
    stopping = 1;
    pthread_mutex_unlock(&list_lock);
    sock_close(listener);
    pthread_mutex_lock(&list_lock);
    for (struct conn *c = list_head.next; c != &list_head; c = c->next)
        sock_close(c->h);
    pthread_mutex_unlock(&list_lock);
    check("sock_engine_free", sock_engine_free(engine));
    while (list_head.next != &list_head) {
        struct conn *c = list_head.next;
        list_head.next = c->next;
        free(c);
    }
    free(body);
    return 0;
}
