/*
 * Test client for examples/http_server (plain POSIX: sockets, epoll,
 * threads). Each mode checks one behaviour of the server and exits 0 when
 * it holds, 1 (with a message) when it does not:
 *
 *   http_client pipeline PORT BODY    three requests in one write, answered in order
 *   http_client bad PORT              a malformed request: 400, then end of stream
 *   http_client big PORT              a 9 KiB request head: 431, then end of stream
 *   http_client reset PORT BODY       read part of a large response, then reset
 *   http_client many PORT BODY N ROUNDS PID
 *                                     N keep-alive connections at once, ROUNDS
 *                                     requests each; the server (PID) holds no
 *                                     more descriptors once they are closed
 *   http_client slow PORT BODY        one client reads a byte at a time; 8 others
 *                                     get their responses meanwhile
 *
 * BODY is the server's --body: every 200 response must carry BODY bytes of
 * "Hello, world!" repeated. Bounds on time here are liveness bounds (a
 * response that never comes), generous, never speed measurements.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static size_t body_len;
static const char hello[] = "Hello, world!";

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "http_client: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            die("send: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

/* An incremental response parser: feed it bytes, it counts responses. */
#define MAX_RESP 64
struct rp {
    char head[16384];
    size_t hlen;
    int in_body;
    size_t body_left, body_off;
    int status;
    int close;
    int count;                 /* complete responses */
    int statuses[MAX_RESP];    /* of the first MAX_RESP */
    int closes[MAX_RESP];
};

static void rp_head_done(struct rp *r) {
    r->head[r->hlen] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        die("not a response head: %.60s", r->head);
    char *cl = strcasestr(r->head, "\r\nContent-Length:");
    if (cl == NULL)
        die("no Content-Length: %.200s", r->head);
    r->body_left = strtoul(cl + 17, NULL, 10);
    if (r->status == 200 && r->body_left != body_len)
        die("Content-Length %zu, expected %zu", r->body_left, body_len);
    r->close = strcasestr(r->head, "\r\nConnection: close\r\n") != NULL;
    r->in_body = 1;
    r->body_off = 0;
}

static void rp_done(struct rp *r) {
    if (r->count < MAX_RESP) {
        r->statuses[r->count] = r->status;
        r->closes[r->count] = r->close;
    }
    r->count++;
    r->in_body = 0;
    r->hlen = 0;
}

static void rp_feed(struct rp *r, const char *p, size_t n) {
    while (n > 0) {
        if (!r->in_body) {
            if (r->hlen + 1 >= sizeof r->head)
                die("response head too long");
            r->head[r->hlen++] = *p++;
            n--;
            if (r->hlen >= 4 && memcmp(r->head + r->hlen - 4, "\r\n\r\n", 4) == 0) {
                rp_head_done(r);
                if (r->body_left == 0)
                    rp_done(r);
            }
            continue;
        }
        size_t k = n < r->body_left ? n : r->body_left;
        if (r->status == 200)
            for (size_t i = 0; i < k; i++)
                if (p[i] != hello[(r->body_off + i) % (sizeof hello - 1)])
                    die("wrong body byte at %zu", r->body_off + i);
        r->body_off += k;
        r->body_left -= k;
        p += k;
        n -= k;
        if (r->body_left == 0)
            rp_done(r);
    }
}

/* Reads until `want` responses are complete, or end of stream (want < 0).
 * Returns 1 if the stream ended (recv 0), 0 otherwise. */
static int read_responses(int fd, struct rp *r, int want) {
    char buf[65536];
    while (want < 0 || r->count < want) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            die("recv: %s (after %d responses)", strerror(errno), r->count);
        if (k == 0)
            return 1;
        rp_feed(r, buf, (size_t)k);
    }
    return 0;
}

static void set_timeout(int fd, int seconds) {
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static const char GET[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/* ---- modes ---------------------------------------------------------------- */

static int mode_pipeline(void) {
    int fd = connect_server();
    set_timeout(fd, 10);
    const char req[] = "GET /1 HTTP/1.1\r\nHost: test\r\n\r\n"
                       "GET /2 HTTP/1.1\r\nHost: test\r\n\r\n"
                       "GET /3 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    static struct rp r;
    if (!read_responses(fd, &r, -1))
        die("no end of stream");
    if (r.count != 3 || r.in_body || r.hlen != 0)
        die("%d complete responses (and a partial one: %d), expected 3", r.count, r.in_body || r.hlen);
    for (int i = 0; i < 3; i++)
        if (r.statuses[i] != 200 || r.closes[i] != (i == 2))
            die("response %d: status %d, Connection: close %d", i + 1, r.statuses[i], r.closes[i]);
    close(fd);
    printf("pipeline: 3 responses in order, the third with Connection: close, then end of stream\n");
    return 0;
}

static void expect_status_then_end(const char *what, const char *req, size_t len, int status) {
    int fd = connect_server();
    set_timeout(fd, 10);
    send_all(fd, req, len);
    static struct rp r;
    memset(&r, 0, sizeof r);
    if (!read_responses(fd, &r, -1))
        die("%s: no end of stream", what);
    if (r.count != 1 || r.statuses[0] != status || !r.closes[0])
        die("%s: %d responses, first status %d close %d; expected one %d with Connection: close", what, r.count,
            r.statuses[0], r.closes[0], status);
    close(fd);
    printf("%s: %d and end of stream\n", what, status);
}

static int mode_bad(void) {
    const char *cases[][2] = {
        {"no version", "GET /\r\n\r\n"},
        {"garbage", "BLAH\r\n\r\n"},
        {"bad version", "GET / HTTP/2.7\r\nHost: x\r\n\r\n"},
        {"header without colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n"},
        {"space in target", "GET /a b HTTP/1.1\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_status_then_end(cases[i][0], cases[i][1], strlen(cases[i][1]), 400);
    /* A malformed request after a good one on the same connection: 200, then 400. */
    int fd = connect_server();
    set_timeout(fd, 10);
    const char req[] = "GET / HTTP/1.1\r\n\r\nBAD REQUEST\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    static struct rp r;
    if (!read_responses(fd, &r, -1) || r.count != 2 || r.statuses[0] != 200 || r.statuses[1] != 400)
        die("good then bad: %d responses (%d, %d)", r.count, r.statuses[0], r.statuses[1]);
    close(fd);
    printf("good then bad on one connection: 200, 400, end of stream\n");
    return 0;
}

static int mode_big(void) {
    size_t n = 9000;
    char *req = malloc(n + 64);
    int len = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + len, 'a', n);
    len += (int)n;
    len += sprintf(req + len, "\r\n\r\n");
    expect_status_then_end("9 KiB head", req, (size_t)len, 431);
    /* A head just under the limit is served. */
    len = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    size_t fill = 8192 - (size_t)len - 4;
    memset(req + len, 'b', fill);
    len += (int)fill;
    len += sprintf(req + len, "\r\n\r\n");
    if (len != 8192)
        die("test bug: head of %d bytes", len);
    int fd = connect_server();
    set_timeout(fd, 10);
    send_all(fd, req, (size_t)len);
    static struct rp r;
    read_responses(fd, &r, 1);
    if (r.statuses[0] != 200)
        die("8 KiB head: status %d", r.statuses[0]);
    close(fd);
    printf("8192-byte head: 200\n");
    free(req);
    return 0;
}

static int mode_reset(void) {
    for (int i = 0; i < 20; i++) {
        int fd = connect_server();
        set_timeout(fd, 10);
        send_all(fd, GET, sizeof GET - 1);
        char buf[4096];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            die("reset: no response");
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd); /* RST: the server's pending send fails */
    }
    /* The server still serves. */
    int fd = connect_server();
    set_timeout(fd, 10);
    send_all(fd, GET, sizeof GET - 1);
    static struct rp r;
    read_responses(fd, &r, 1);
    if (r.statuses[0] != 200)
        die("after resets: status %d", r.statuses[0]);
    close(fd);
    printf("reset: 20 clients reset mid-response; the next one is served\n");
    return 0;
}

static int count_fds(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        die("opendir %s: %s", path, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void raise_nofile(rlim_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int mode_many(int n, int rounds, int pid) {
    raise_nofile((rlim_t)n + 64);
    int before = count_fds(pid);
    int *fds = calloc((size_t)n, sizeof *fds);
    struct rp *rs = calloc((size_t)n, sizeof *rs);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        fds[i] = connect_server();
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    int during = 0;
    for (int round = 1; round <= rounds; round++) {
        for (int i = 0; i < n; i++)
            send_all(fds[i], GET, sizeof GET - 1);
        int answered = 0;
        double deadline = now() + 30;
        while (answered < n) {
            struct epoll_event evs[256];
            int k = epoll_wait(ep, evs, 256, 1000);
            if (now() > deadline)
                die("round %d: %d of %d connections answered in 30 s", round, answered, n);
            for (int j = 0; j < k; j++) {
                int i = (int)evs[j].data.u32;
                char buf[65536];
                ssize_t got = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
                if (got == 0)
                    die("round %d: connection %d ended", round, i);
                if (got < 0) {
                    if (errno == EAGAIN)
                        continue;
                    die("round %d: connection %d: %s", round, i, strerror(errno));
                }
                int was = rs[i].count;
                rp_feed(&rs[i], buf, (size_t)got);
                if (rs[i].count > round)
                    die("connection %d: more responses than requests", i);
                if (was < round && rs[i].count == round) {
                    if (rs[i].status != 200 || rs[i].close)
                        die("connection %d: status %d close %d", i, rs[i].status, rs[i].close);
                    answered++;
                }
            }
        }
        if (round == 1)
            during = count_fds(pid);
    }
    if (during < before + n)
        die("the server held %d descriptors with %d connections open (%d before)", during, n, before);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(ep);
    int after = 0;
    double deadline = now() + 10;
    while ((after = count_fds(pid)) > before && now() < deadline) {
        struct timespec ms = {0, 20000000};
        nanosleep(&ms, NULL);
    }
    if (after > before)
        die("the server holds %d descriptors after the clients closed, %d before", after, before);
    printf("many: %d connections x %d keep-alive requests, all answered; server descriptors %d before, %d "
           "during, %d after\n",
           n, rounds, before, during, after);
    free(fds);
    free(rs);
    return 0;
}

/* ---- slow reader ------------------------------------------------------------ */

#define OTHERS 8
#define OTHER_REQUESTS 20

static void *other(void *arg) {
    double *finished = arg;
    int fd = connect_server();
    set_timeout(fd, 30);
    struct rp *r = calloc(1, sizeof *r);
    for (int i = 1; i <= OTHER_REQUESTS; i++) {
        send_all(fd, GET, sizeof GET - 1);
        if (read_responses(fd, r, i))
            die("other client: end of stream");
    }
    close(fd);
    free(r);
    *finished = now();
    return NULL;
}

static int mode_slow(void) {
    /* The slow client asks for two responses and reads a byte at a time. */
    int slow = connect_server();
    int small = 4096;
    setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    send_all(slow, GET, sizeof GET - 1);
    send_all(slow, GET, sizeof GET - 1);
    char c;
    if (recv(slow, &c, 1, 0) != 1)
        die("slow client: no first byte");
    double start = now();
    pthread_t t[OTHERS];
    double finished[OTHERS] = {0};
    for (int i = 0; i < OTHERS; i++)
        pthread_create(&t[i], NULL, other, &finished[i]);
    /* Read a byte every millisecond until the others are done. */
    size_t slow_read = 1;
    int done = 0;
    while (!done) {
        if (now() - start > 20)
            die("the other clients did not finish in 20 s while one client read slowly");
        if (recv(slow, &c, 1, MSG_DONTWAIT) == 1)
            slow_read++;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        done = 1;
        for (int i = 0; i < OTHERS; i++)
            done &= finished[i] != 0;
    }
    for (int i = 0; i < OTHERS; i++)
        pthread_join(t[i], NULL);
    double last = 0;
    for (int i = 0; i < OTHERS; i++)
        if (finished[i] - start > last)
            last = finished[i] - start;
    if (slow_read >= 2 * body_len)
        die("test bug: the slow client read everything (%zu bytes): make --body larger", slow_read);
    close(slow);
    printf("slow: %d other clients x %d responses of %zu bytes finished in %.2f s while one client had "
           "read %zu of its %zu bytes a byte at a time\n",
           OTHERS, OTHER_REQUESTS, body_len, last, slow_read, 2 * body_len);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: http_client MODE PORT [BODY ...]\n");
        return 2;
    }
    port = atoi(argv[2]);
    body_len = argc > 3 ? strtoul(argv[3], NULL, 10) : 13;
    const char *m = argv[1];
    if (strcmp(m, "pipeline") == 0)
        return mode_pipeline();
    if (strcmp(m, "bad") == 0)
        return mode_bad();
    if (strcmp(m, "big") == 0)
        return mode_big();
    if (strcmp(m, "reset") == 0)
        return mode_reset();
    if (strcmp(m, "many") == 0 && argc == 7)
        return mode_many(atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (strcmp(m, "slow") == 0)
        return mode_slow();
    fprintf(stderr, "http_client: unknown mode or wrong arguments: %s\n", m);
    return 2;
}
