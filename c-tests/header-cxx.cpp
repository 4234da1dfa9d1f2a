// The header compiles as C++11 after <sys/socket.h>, and its functions have
// C linkage (this program links against the library, so a missing
// extern "C" is an undefined-symbol error).
#include <sys/socket.h>
#include <cstdio>
#include <cstring>

#include "sock.h"

int main() {
  sock_handle h = SOCK_INVALID_HANDLE;
  sock_status s = sock_socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM, &h);
  if (s != SOCK_OK) return 1;
  int64_t v = -1;
  s = sock_get_option(h, SOCK_OPT_BLOCKING, &v);
  const sock_buf bufs[2] = {{"a", 1}, {"b", 1}};
  size_t sent = 0;
  sock_status s2 = sock_sendv(h, bufs, 2, SOCK_MSG_NONE, &sent);
  std::printf("%s %lld %d %d\n", sock_version(), static_cast<long long>(v),
              static_cast<int>(s2), SOCK_DGRAM);
  const bool ok = s == SOCK_OK && v == 1 && s2 == SOCK_DESTINATION_ADDRESS_REQUIRED &&
                  std::strlen(sock_strerror(s2)) > 0;
  return sock_close(h) == SOCK_OK && ok ? 0 : 1;
}
