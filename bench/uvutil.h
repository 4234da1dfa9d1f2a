/*
 * libuv helpers of the benchmarks (only built with HAVE_UV).
 */
#ifndef BENCH_UVUTIL_H
#define BENCH_UVUTIL_H

#if HAVE_UV
#include <stdint.h>
#include <uv.h>

/* Initialises and connects n TCP handles to 127.0.0.1:port with
 * uv_tcp_connect, running `loop` until all are connected. sndbuf > 0 sets
 * the send buffer (uv_send_buffer_size), nodelay sets uv_tcp_nodelay. */
void uv_connect_all(uv_loop_t *loop, uv_tcp_t **tcps, int n, uint16_t port, int sndbuf,
                    int nodelay);
/* Dies with libuv's error text when r < 0. */
void check_uv(const char *what, int r);
#endif

#endif
