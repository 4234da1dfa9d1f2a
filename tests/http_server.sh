#!/usr/bin/env bash
# Tests of examples/http_server (make test-http):
#   tests/http_server.sh SERVER CLIENT
# SERVER: the http_server binary (plain, or built with ASan+UBSan); CLIENT:
# tests/http/http_client. Every check asserts behaviour; the time bounds are
# liveness bounds (something that never happens), not speed.
set -euo pipefail
server=$1
client=$2
name=$(basename "$server")
tmp=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
checks=0
fail() { echo "test-http ($name): FAIL: $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); echo "test-http ($name): ok: $*"; }

# start_server ARGS...: starts it, checks the first line, sets pid and port.
start_server() {
    # A fresh file: the old one could otherwise be read (with the previous
    # server's port) before the new process has truncated it.
    rm -f "$tmp/out" "$tmp/err"
    "$server" "$@" 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 200); do
        grep -q '^listening on .*$' "$tmp/out" 2>/dev/null && break
        sleep 0.05
    done
    line=$(head -n1 "$tmp/out")
    [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || fail "first line: '$line' ($(cat "$tmp/err"))"
    port=${BASH_REMATCH[1]}
}

# stop_server [SIGNAL]: the server must exit 0 within 10 s, with nothing on stderr.
stop_server() {
    kill -"${1:-TERM}" "$pid"
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && fail "still running 10 s after SIG${1:-TERM}"
    rc=0
    wait "$pid" || rc=$?
    pid=""
    [ "$rc" = 0 ] || fail "exit status $rc after SIG${1:-TERM} (stderr: $(cat "$tmp/err"))"
    [ -s "$tmp/err" ] && fail "stderr: $(cat "$tmp/err")"
    ok "exits 0 on SIG${1:-TERM}"
}

url() { echo "http://127.0.0.1:$port${1:-/}"; }

curl_checks() {
    out=$(curl -sS --max-time 10 "$(url /a)")
    [ "$out" = "Hello, world!" ] || fail "curl body: '$out'"
    ok "curl GET: Hello, world!"
    curl -sv --max-time 10 "$(url /one)" "$(url /two)" >"$tmp/body" 2>"$tmp/verbose"
    grep -q "Re-using existing connection" "$tmp/verbose" || fail "curl did not reuse the connection: $(cat "$tmp/verbose")"
    [ "$(cat "$tmp/body")" = "Hello, world!Hello, world!" ] || fail "two bodies: '$(cat "$tmp/body")'"
    ok "curl keep-alive: the second request re-used the connection"
    curl -sv --max-time 10 -H "Connection: close" "$(url /c)" "$(url /d)" >"$tmp/body" 2>"$tmp/verbose"
    grep -qi "< Connection: close" "$tmp/verbose" || fail "no Connection: close in the response"
    grep -q "Re-using existing connection" "$tmp/verbose" && fail "curl re-used a connection the server closed"
    [ "$(cat "$tmp/body")" = "Hello, world!Hello, world!" ] || fail "two bodies: '$(cat "$tmp/body")'"
    ok "curl Connection: close: answered, closed, the next request on a new connection"
    code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{size_download}' -X POST "$(url)")
    [ "$code" = "405 0" ] || fail "POST: $code"
    code=$(curl -s --max-time 10 -I -o /dev/null -w '%{http_code}' "$(url)")
    [ "$code" = "200" ] || fail "HEAD: $code"
    ok "POST gets 405, HEAD 200"
    code=$(curl -s --max-time 10 --http1.0 -o /dev/null -w '%{http_code} %{size_download}' "$(url)")
    [ "$code" = "200 13" ] || fail "HTTP/1.0: $code"
    ok "HTTP/1.0 GET: 200"
}

# 1. Default server: curl, pipelining, 400, 431, 1,000 connections.
start_server
curl_checks
"$client" pipeline "$port" 13 && ok "pipelined"
"$client" bad "$port" && ok "400 and close"
"$client" big "$port" && ok "431 and close"
"$client" many "$port" 13 1000 2 "$pid" && ok "1,000 concurrent keep-alive connections"
# A connection still open at SIGTERM does not keep the server from exiting.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.1\r\n\r\n' >&3
sleep 0.2
stop_server TERM
exec 3<&-

# 2. Large bodies: clients that reset mid-response (8 MiB: more than the
# kernel's buffers hold, so the server's send is pending when the reset
# comes), a slow reader.
start_server --body 8388608
fds_before=$(ls "/proc/$pid/fd" | wc -l)
"$client" reset "$port" 8388608 && ok "clients reset mid-response; the next one is served"
for _ in $(seq 100); do
    [ "$(ls "/proc/$pid/fd" | wc -l)" -le "$fds_before" ] && break
    sleep 0.05
done
fds_after=$(ls "/proc/$pid/fd" | wc -l)
[ "$fds_after" -le "$fds_before" ] || fail "after the resets the server holds $fds_after descriptors, $fds_before before"
ok "no descriptor left by the reset connections ($fds_before before, $fds_after after)"
stop_server INT
start_server --body 1048576
"$client" slow "$port" 1048576 && ok "a slow reader does not hold up the others"
stop_server TERM

# 3. Two engine threads.
start_server --threads 2
curl_checks
"$client" pipeline "$port" 13 && ok "pipelined (2 threads)"
"$client" many "$port" 13 1000 2 "$pid" && ok "1,000 concurrent keep-alive connections (2 threads)"
stop_server TERM

# 4. The usage line.
if "$server" --threads 0 127.0.0.1:0 >/dev/null 2>"$tmp/err"; then fail "--threads 0 accepted"; fi
grep -qx "usage: http_server \[--threads N\] \[--body BYTES\] ADDRESS" "$tmp/err" || fail "usage: $(cat "$tmp/err")"
ok "usage line"

echo "test-http ($name): $checks checks passed"
