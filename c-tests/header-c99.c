/* The header compiles as strict C99 after <sys/socket.h>: no clash with
 * POSIX names such as SOCK_STREAM, no C11-only constructs. Built with
 * -std=c99 -Wall -Wextra -Werror -pedantic and linked against the library. */
#include <sys/socket.h>
#include <stdio.h>

#include "sock.h"

int main(void) {
  sock_handle h = SOCK_INVALID_HANDLE;
  sock_status s;
  sock_buf b;
  size_t len = 0;
  char addr[SOCK_ADDRESS_MAX_LEN];
  int posix_type = SOCK_STREAM; /* the POSIX macro is still intact */

  b.data = "x";
  b.len = 1;
  s = sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, &h);
  if (s != SOCK_OK) return 1;
  s = sock_bind(h, "127.0.0.1:0");
  if (s == SOCK_OK) s = sock_local_address(h, addr, sizeof addr, &len);
  if (s == SOCK_OK) s = sock_sendv(h, &b, 1, SOCK_MSG_NONE, NULL);
  printf("%s %s %d %d\n", sock_version(), sock_strerror(s), posix_type,
         SOCK_VERSION_MAJOR + SOCK_VERSION_MINOR + SOCK_VERSION_PATCH);
  return sock_close(h) == SOCK_OK && s == SOCK_NOT_CONNECTED ? 0 : 1;
}
