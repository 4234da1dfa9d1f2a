/*
 * What the benchmark's HTTP responders share with examples/http_server.c:
 * the command line, the listening line, the response heads and body, and
 * the request-head parser (the same checks as the example's parse_head,
 * so every contender does the same work per request). Header-only: each
 * responder is one .c file plus this. The parser is a deliberate copy:
 * the example stays one self-contained file a reader can lift, and a
 * change to its parse_head must be made here too.
 */
#ifndef BENCH_HTTP_COMMON_H
#define BENCH_HTTP_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#define HEAD_MAX 8192
#define INBUF 16384

enum { RESP_OK, RESP_OK_KEEP10, RESP_OK_CLOSE, RESP_400, RESP_405, RESP_431, RESP_COUNT };
static char heads[RESP_COUNT][192];
static size_t head_len[RESP_COUNT];
static char *body;
static size_t body_len = 13;

static void make_head(int kind, const char *status, const char *conn, size_t len) {
    int n = snprintf(heads[kind], sizeof heads[kind],
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     len, kind == RESP_405 ? "Allow: GET, HEAD\r\n" : "", conn);
    head_len[kind] = (size_t)n;
}

/* Parses "[--threads 1] [--body BYTES] ADDRESS" (these responders run one
 * thread); returns the address's port text. Builds body and heads. */
static const char *http_setup(int argc, char **argv, const char *name) {
    const char *address = NULL;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (strcmp(argv[++i], "1") != 0) {
                fprintf(stderr, "%s: runs one thread only\n", name);
                exit(2);
            }
        } else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc) {
            errno = 0;
            body_len = strtoull(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || argv[i][0] == '-')
                goto usage;
        } else if (argv[i][0] == '-' || address != NULL) {
            goto usage;
        } else {
            address = argv[i];
        }
    }
    if (address == NULL)
        goto usage;
    const char *colon = strrchr(address, ':');
    if (colon == NULL || strncmp(address, "127.0.0.1:", 10) != 0)
        goto usage;
    static const char hello[] = "Hello, world!";
    body = malloc(body_len > 0 ? body_len : 1);
    if (body == NULL)
        exit(1);
    for (size_t i = 0; i < body_len; i++)
        body[i] = hello[i % (sizeof hello - 1)];
    make_head(RESP_OK, "200 OK", "", body_len);
    make_head(RESP_OK_KEEP10, "200 OK", "Connection: keep-alive\r\n", body_len);
    make_head(RESP_OK_CLOSE, "200 OK", "Connection: close\r\n", body_len);
    make_head(RESP_400, "400 Bad Request", "Connection: close\r\n", 0);
    make_head(RESP_405, "405 Method Not Allowed", "Connection: close\r\n", 0);
    make_head(RESP_431, "431 Request Header Fields Too Large", "Connection: close\r\n", 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return colon + 1;
usage:
    fprintf(stderr, "usage: %s [--threads N] [--body BYTES] ADDRESS\n", name);
    exit(2);
}

static int is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

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

static enum verdict parse_head(const char *p, size_t n, int *keep, int *ver10, size_t *content_length) {
    const char *end = p + n - 2;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (eol == NULL || eol[1] != '\n')
        return V_BAD;
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
            return V_BAD;
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
            return V_BAD;
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

/* The parser state of one connection's input, as in the example. */
struct http_in {
    size_t start, len, scanned, skip;
    char in[INBUF];
};

/* Takes the next complete request out of the buffer: returns the
 * response kind and sets *with_body and *close_after; -1 when no complete
 * head is there. */
static int http_next(struct http_in *h, int *with_body, int *close_after) {
    if (h->skip > 0) {
        size_t k = h->len - h->start < h->skip ? h->len - h->start : h->skip;
        h->start += k;
        h->skip -= k;
        if (h->skip > 0)
            return -1;
    }
    while (h->len - h->start >= 2 && h->in[h->start] == '\r' && h->in[h->start + 1] == '\n')
        h->start += 2;
    const char *p = h->in + h->start;
    size_t avail = h->len - h->start;
    size_t from = h->scanned > 3 ? h->scanned - 3 : 0;
    const char *e = avail >= 4 ? memmem(p + from, avail - from, "\r\n\r\n", 4) : NULL;
    *with_body = 1;
    if (e == NULL) {
        h->scanned = avail;
        if (avail >= HEAD_MAX) {
            *close_after = 1;
            return RESP_431;
        }
        return -1;
    }
    size_t n = (size_t)(e - p) + 4;
    h->scanned = 0;
    if (n > HEAD_MAX) {
        *close_after = 1;
        return RESP_431;
    }
    int keep = 0, ver10 = 0;
    size_t cl = 0;
    enum verdict v = parse_head(p, n, &keep, &ver10, &cl);
    h->start += n;
    h->skip = cl;
    switch (v) {
    case V_OK:
    case V_HEAD_ONLY:
        *with_body = v == V_OK;
        *close_after = !keep;
        return !keep ? RESP_OK_CLOSE : ver10 ? RESP_OK_KEEP10 : RESP_OK;
    case V_METHOD:
        *close_after = 1;
        return RESP_405;
    default:
        *close_after = 1;
        return RESP_400;
    }
}

/* After parsing: reset or compact the buffer. */
static void http_compact(struct http_in *h) {
    if (h->start == h->len) {
        h->start = h->len = 0;
    } else if (h->start > 0 && h->len == INBUF) {
        memmove(h->in, h->in + h->start, h->len - h->start);
        h->len -= h->start;
        h->start = 0;
    }
}

#endif
