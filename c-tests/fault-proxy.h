/*
 * A loopback TCP proxy for fault injection, in plain POSIX (it never calls
 * libsock). It listens on 127.0.0.1:0 and forwards each connection it
 * accepts to 127.0.0.1:target_port, on its own thread. Connections are
 * numbered 0, 1, ... in accept order; each one's faults can be changed at
 * any time:
 *
 *   stall      stop reading from the client (the client's sends back up
 *              into its kernel buffers and then block);
 *   throttle   forward at most N bytes/s in each direction;
 *   reset      RST both sides (SO_LINGER {1,0} + close), at once;
 *   half-close shutdown(SHUT_WR) toward one side, after what is buffered
 *              for it went out: that side sees end of stream.
 *
 * The socket toward the client has a 64 KiB receive buffer (set on the
 * listener), so a stall backs up a bounded amount. Errors in the proxy
 * itself fail the test (test_fail from any thread ends the process).
 */
#ifndef FAULT_PROXY_H
#define FAULT_PROXY_H

#include <stddef.h>

typedef struct fault_proxy fault_proxy;

/* Sides of a proxied connection. */
enum { FP_CLIENT = 0, FP_SERVER = 1 };

/* Starts a proxy to 127.0.0.1:target_port. */
fault_proxy *fp_start(int target_port);
/* "127.0.0.1:P", the address clients connect to. */
void fp_addr(const fault_proxy *p, char *buf, size_t cap);
/* Waits until the proxy has accepted (and connected onward) n connections;
 * fails the test after timeout_ms. */
void fp_wait_conns(fault_proxy *p, int n, unsigned timeout_ms);

void fp_stall(fault_proxy *p, int conn, int on);
/* 0 turns throttling off. */
void fp_throttle(fault_proxy *p, int conn, size_t bytes_per_s);
/* Returns once both RSTs went out. */
void fp_reset(fault_proxy *p, int conn);
/* Shuts down writing toward `side` (FP_CLIENT / FP_SERVER) once the bytes
 * buffered for it are written; returns when that happened. */
void fp_half_close(fault_proxy *p, int conn, int side);
/* Bytes the proxy has written toward `side` on connection conn. */
size_t fp_forwarded(fault_proxy *p, int conn, int side);
/* Stops the thread and closes every socket (graceful close). */
void fp_stop(fault_proxy *p);

#endif /* FAULT_PROXY_H */
