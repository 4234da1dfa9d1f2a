#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned char *g_pattern; /* 2 periods, so any slice up to a period is contiguous */

void pattern_init(void) {
    if (g_pattern != NULL)
        return;
    g_pattern = malloc(2 * (size_t)PATTERN_PERIOD);
    if (g_pattern == NULL)
        die("out of memory");
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < PATTERN_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g_pattern[i] = (unsigned char)(x >> 24);
    }
    memcpy(g_pattern + PATTERN_PERIOD, g_pattern, PATTERN_PERIOD);
}

const unsigned char *pattern_at(uint64_t off) { return g_pattern + (off % PATTERN_PERIOD); }

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double now_s(void) { return (double)now_ns() / 1e9; }

long raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die_errno("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die_errno("setrlimit");
    return (long)rl.rlim_cur;
}

double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        die_errno("getrusage");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f == NULL)
        die_errno("/proc/self/statm");
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("cannot parse /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

void die(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "bench[%d]: ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stdout);
    _exit(2);
}

void die_errno(const char *what) { die("%s: %s", what, strerror(errno)); }

void reap_child(pid_t pid, const char *what) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die_errno("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s failed (status 0x%x)", what, st);
}

void check_sock(const char *what, sock_status s) {
    if (s != SOCK_OK)
        die("%s: %s (%d, errno %d)", what, sock_strerror(s), (int)s, (int)sock_os_error());
}

int make_listener(int rcvbuf, uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0)
        die_errno("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
        die_errno("SO_RCVBUF");
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die_errno("bind");
    if (listen(fd, 65535) != 0)
        die_errno("listen");
    if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        die_errno("getsockname");
    *port = ntohs(a.sin_port);
    return fd;
}

void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die_errno("fcntl O_NONBLOCK");
}

int raw_connect(uint16_t port, int sndbuf, int nodelay, int nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        die_errno("socket");
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        die_errno("SO_SNDBUF");
    while (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        if (errno != EINTR)
            die_errno("connect");
    if (nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay) != 0)
        die_errno("TCP_NODELAY");
    if (nonblock)
        set_nonblock(fd);
    return fd;
}

sock_handle ls_connect(uint16_t port, int sndbuf, int nodelay) {
    sock_handle h;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    check_sock("sock_socket", sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &h));
    if (sndbuf > 0)
        check_sock("SEND_BUFFER_SIZE", sock_set_option(h, SOCK_OPT_SEND_BUFFER_SIZE, sndbuf));
    check_sock("sock_connect", sock_connect(h, addr));
    if (nodelay)
        check_sock("NO_DELAY", sock_set_option(h, SOCK_OPT_NO_DELAY, 1));
    return h;
}

void emit(const char *case_id, const char *contender, int rep, const char *metric, double value) {
    printf("R %s %s %d %s %.6g\n", case_id, contender, rep, metric, value);
    fflush(stdout);
}

void parse_opts(int argc, char **argv, struct opts *o) {
    o->reps = 5;
    o->quick = 0;
    o->shorter = 0;
    o->only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            o->reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            o->quick = 1;
        else if (strcmp(argv[i], "--shorter") == 0 && i + 1 < argc)
            o->shorter = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            o->only = argv[++i];
        else
            die("usage: %s [--reps N] [--quick] [--shorter D] [--only CASE-SUBSTRING]", argv[0]);
    }
    if (o->reps < 1)
        die("--reps must be >= 1");
    if (o->shorter == 0)
        o->shorter = o->quick ? 20 : 1;
    if (o->shorter < 1 || o->shorter > 100)
        die("--shorter must be 1..100");
}

int case_selected(const struct opts *o, const char *case_id) {
    return o->only == NULL || strstr(case_id, o->only) != NULL;
}

/* Row 0 of the square: 0, 1, n-1, 2, n-2, 3, ...; row r adds r (mod n). */
static int williams_first_row(int j, int n) {
    if (j == 0)
        return 0;
    return j % 2 == 1 ? (j + 1) / 2 : n - j / 2;
}

int run_order(int rep, int j, int n) {
    int rows = n % 2 == 0 ? n : 2 * n;
    int r = rep % rows;
    if (r < n)
        return (williams_first_row(j, n) + r) % n;
    /* odd n: the second half of the rows are the first half reversed */
    return (williams_first_row(n - 1 - j, n) + (r - n)) % n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double percentile(double *v, size_t n, double p) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

double median(double *v, size_t n) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void notifier_signal(struct notifier *n) {
    atomic_fetch_add(&n->seq, 1);
    if (atomic_load(&n->sleepers) != 0)
        syscall(SYS_futex, (uint32_t *)&n->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

uint32_t notifier_snapshot(struct notifier *n) { return atomic_load(&n->seq); }

void notifier_wait(struct notifier *n, uint32_t seen) {
    atomic_fetch_add(&n->sleepers, 1);
    while (atomic_load(&n->seq) == seen)
        syscall(SYS_futex, (uint32_t *)&n->seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    atomic_fetch_sub(&n->sleepers, 1);
}

void send_all_raw(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die_errno("send");
        }
        p += n;
        len -= (size_t)n;
    }
}
