#define _GNU_SOURCE
#include "uvutil.h"

#if HAVE_UV
#include <stdlib.h>

#include "common.h"

void check_uv(const char *what, int r) {
    if (r < 0)
        die("%s: %s", what, uv_strerror(r));
}

static int g_connected;

static void on_connect(uv_connect_t *req, int status) {
    check_uv("uv_tcp_connect", status);
    g_connected++;
    free(req);
}

void uv_connect_all(uv_loop_t *loop, uv_tcp_t **tcps, int n, uint16_t port, int sndbuf,
                    int nodelay) {
    struct sockaddr_in addr;
    check_uv("uv_ip4_addr", uv_ip4_addr("127.0.0.1", port, &addr));
    g_connected = 0;
    for (int i = 0; i < n; i++) {
        uv_connect_t *req = malloc(sizeof *req);
        if (req == NULL)
            die("out of memory");
        check_uv("uv_tcp_init_ex", uv_tcp_init_ex(loop, tcps[i], AF_INET));
        if (sndbuf > 0) {
            int v = sndbuf;
            check_uv("uv_send_buffer_size", uv_send_buffer_size((uv_handle_t *)tcps[i], &v));
        }
        check_uv("uv_tcp_connect",
                 uv_tcp_connect(req, tcps[i], (const struct sockaddr *)&addr, on_connect));
        /* Keep the listen backlog from overflowing on big counts. */
        if (i % 1024 == 1023)
            uv_run(loop, UV_RUN_NOWAIT);
    }
    while (g_connected < n)
        uv_run(loop, UV_RUN_ONCE);
    for (int i = 0; i < n; i++)
        if (nodelay)
            check_uv("uv_tcp_nodelay", uv_tcp_nodelay(tcps[i], 1));
}
#else
typedef int bench_uvutil_unused; /* ISO C forbids an empty translation unit */
#endif
