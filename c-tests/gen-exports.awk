# Lists every function that include/sock.h declares, for test-matrix.c:
#
#   EXPORT(sock_send, "sock_handle h, const void *buf, size_t len, int32_t flags, size_t *sent")
#
# A prototype starts at column 0 with its return type and "sock_xxx(" and
# ends at ");" (cbindgen wraps long parameter lists). typedefs, macros and
# comments never match. Used by the Makefile: awk -f gen-exports.awk sock.h
BEGIN {
  print "/* GENERATED from sock.h by gen-exports.awk: every exported function. */"
  n = 0
}
!collecting && /^[A-Za-z_][A-Za-z0-9_ \t*]*[ \t*]sock_[a-z0-9_]+\(/ && !/^typedef/ {
  collecting = 1
  proto = ""
}
collecting {
  proto = proto " " $0
  if (proto ~ /\)[ \t]*;/) {
    collecting = 0
    match(proto, /sock_[a-z0-9_]+\(/)
    name = substr(proto, RSTART, RLENGTH - 1)
    params = substr(proto, RSTART + RLENGTH)
    sub(/\)[ \t]*;.*$/, "", params)
    gsub(/[ \t]+/, " ", params)
    sub(/^ /, "", params)
    sub(/ $/, "", params)
    printf "EXPORT(%s, \"%s\")\n", name, params
    n++
  }
}
END {
  if (n == 0) {
    print "gen-exports.awk: no function prototype found" > "/dev/stderr"
    exit 1
  }
}
