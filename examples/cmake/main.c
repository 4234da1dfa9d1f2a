/* Built by examples/cmake against an installed libsock: opens a UDP socket,
 * sends a datagram to itself over loopback and reads it back. */
#include <stdio.h>
#include <string.h>

#include <sock.h>

int main(void) {
    sock_handle h;
    char addr[SOCK_ADDRESS_MAX_LEN], buf[32];
    size_t n = 0;
    if (sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM, &h) != SOCK_OK ||
        sock_bind(h, "127.0.0.1:0") != SOCK_OK ||
        sock_local_address(h, addr, sizeof addr, NULL) != SOCK_OK)
        return 1;
    sock_status s = sock_send_to(h, "ping", 4, SOCK_MSG_NONE, addr, NULL);
    if (s == SOCK_OK)
        s = sock_recv(h, buf, sizeof buf, SOCK_MSG_NONE, &n);
    printf("libsock %s via cmake: %s, got %zu bytes\n", sock_version(), sock_strerror(s), n);
    sock_close(h);
    return s == SOCK_OK && n == 4 && memcmp(buf, "ping", 4) == 0 ? 0 : 1;
}
