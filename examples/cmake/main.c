/* Built by examples/cmake (and examples/cmake-pkgconfig) against an installed
 * libsock: checks that the library loaded at run time has the ABI of the
 * header it was built with, opens a UDP socket, sends a datagram to itself
 * over loopback and reads it back. */
#include <stdio.h>
#include <string.h>

#include <sock.h>

int main(void) {
    sock_handle h;
    char addr[SOCK_ADDRESS_MAX_LEN], buf[32];
    size_t n = 0;
    /* 0.x: each minor release has its own ABI, so the same 0.MINOR (from
     * 1.0 on the same major version would do). */
    if (sock_version_number() >> 8 != SOCK_VERSION_HEX >> 8) {
        fprintf(stderr, "libsock %s loaded, but built against %d.%d\n", sock_version(),
                SOCK_VERSION_MAJOR, SOCK_VERSION_MINOR);
        return 1;
    }
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
