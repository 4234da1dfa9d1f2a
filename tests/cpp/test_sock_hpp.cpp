// Tests of include/sock.hpp over real loopback sockets: ownership, the
// error model, blocking I/O, and async calls with lambdas (inline, pending,
// failed; default, threaded and manual engines; the callable's holder freed
// on every path). One line per test, then "N passed, M failed".
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "sock.hpp"

using namespace std::chrono_literals;

// ---- a tiny harness ----------------------------------------------------------

namespace {

struct failure {
  std::string what;
};

template <class A, class B>
[[noreturn]] void fail_cmp(int line, const char* expr, const A& a, const B& b) {
  std::ostringstream o;
  o << "line " << line << ": " << expr << " (got " << a << " vs " << b << ")";
  throw failure{o.str()};
}

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) throw failure{"line " + std::to_string(__LINE__) + ": " + #cond};      \
  } while (0)

#define FAIL(msg) throw failure{"line " + std::to_string(__LINE__) + ": " + (msg)}

#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    const auto a_ = (a);                                                                \
    const auto b_ = (b);                                                                \
    if (!(a_ == b_)) fail_cmp(__LINE__, #a " == " #b, a_, b_);                          \
  } while (0)

// Status comparison that prints libsock's text for what was seen.
#define CHECK_STATUS(expected, got)                                                     \
  do {                                                                                  \
    const sock_status e_ = (expected);                                                  \
    const sock_status g_ = (got);                                                       \
    if (e_ != g_)                                                                       \
      fail_cmp(__LINE__, #got " == " #expected, std::to_string(g_) + " " + sock_strerror(g_), \
               std::to_string(e_) + " " + sock_strerror(e_));                           \
  } while (0)

// Runs `body`, expecting sock::error with `status`.
template <class Body>
sock::error expect_error(int line, sock_status status, Body&& body) {
  try {
    body();
  } catch (const sock::error& e) {
    if (e.status() != status)
      fail_cmp(line, "sock::error status", std::to_string(e.status()) + " " + sock_strerror(e.status()),
               std::to_string(status) + " " + sock_strerror(status));
    return e;
  }
  throw failure{"line " + std::to_string(line) + ": no sock::error thrown"};
}
#define EXPECT_ERROR(status, ...) expect_error(__LINE__, status, [&] { __VA_ARGS__; })

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// ---- helpers -------------------------------------------------------------------

// Live instances of track()ed callables: the holder that send_async allocates
// must be destroyed on every path (inline, failed, after the callback).
std::atomic<int> g_live{0};

template <class F>
struct tracked {
  explicit tracked(F f) : fn(std::move(f)) { ++g_live; }
  tracked(const tracked& o) : fn(o.fn) { ++g_live; }
  tracked(tracked&& o) noexcept : fn(std::move(o.fn)) { ++g_live; }
  tracked& operator=(const tracked&) = delete;
  tracked& operator=(tracked&&) = delete;
  ~tracked() { --g_live; }
  void operator()(sock_status s, std::size_t n) { fn(s, n); }
  F fn;
};
template <class F>
tracked<F> track(F f) {
  return tracked<F>(std::move(f));
}

// What a completion callback saw.
struct record {
  std::mutex m;
  std::condition_variable cv;
  int calls = 0;
  sock_status status = -12345;
  std::size_t bytes = 0;
  std::thread::id thread;

  void hit(sock_status s, std::size_t n) {
    std::lock_guard<std::mutex> lock(m);
    ++calls;
    status = s;
    bytes = n;
    thread = std::this_thread::get_id();
    cv.notify_all();
  }
  bool wait(int n = 1, std::chrono::milliseconds limit = 10s) {
    std::unique_lock<std::mutex> lock(m);
    return cv.wait_for(lock, limit, [&] { return calls >= n; });
  }
  int count() {
    std::lock_guard<std::mutex> lock(m);
    return calls;
  }
};

// A callback that records into `rec` (kept alive by the capture).
auto recorder(const std::shared_ptr<record>& rec) {
  return track([rec](sock_status s, std::size_t n) { rec->hit(s, n); });
}

// A thread joined on scope exit; an exception inside it ends the thread
// (its results stay unset, so the test fails) instead of the process.
struct joined_thread {
  std::thread t;
  template <class F>
  explicit joined_thread(F f)
      : t([f = std::move(f)]() mutable {
          try {
            f();
          } catch (const std::exception& e) {
            std::printf("# helper thread: %s\n", e.what());
          }
        }) {}
  ~joined_thread() {
    if (t.joinable()) t.join();
  }
  void join() { t.join(); }
};

unsigned char pattern(std::size_t i) { return static_cast<unsigned char>(i * 7 % 251); }

std::vector<unsigned char> patterned(std::size_t n) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; i++) v[i] = pattern(i);
  return v;
}

struct tcp_pair {
  sock::socket client;
  sock::socket server;
};

tcp_pair make_pair() {
  sock::socket l = sock::socket::tcp4();
  l.bind("127.0.0.1:0");
  l.listen(4);
  sock::socket c = sock::socket::tcp4();
  c.connect(l.local_address());
  sock::socket s = l.accept();
  // No test may hang on a peer that stopped.
  s.set_recv_timeout(20s);
  c.set_recv_timeout(20s);
  return tcp_pair{std::move(c), std::move(s)};
}

// Smaller kernel buffers, so a big send cannot finish at once. Not much
// smaller: under gVisor, 4 KiB buffers throttle loopback TCP to ~50 KB/s.
void shrink_buffers(tcp_pair& p) {
  p.client.set_option(SOCK_OPT_SEND_BUFFER_SIZE, 64 * 1024);
  p.server.set_option(SOCK_OPT_RECV_BUFFER_SIZE, 64 * 1024);
}

// Receives exactly `n` bytes (or until end of stream); true if they follow
// pattern() from `offset`.
bool recv_pattern(sock::socket& s, std::size_t n, std::size_t offset = 0, std::size_t* got = nullptr) {
  std::vector<unsigned char> buf(64 * 1024);
  std::size_t total = 0;
  bool intact = true;
  while (total < n) {
    std::size_t k = s.recv(buf.data(), std::min(buf.size(), n - total));
    if (k == 0) break;
    for (std::size_t i = 0; i < k; i++) intact = intact && buf[i] == pattern(offset + total + i);
    total += k;
  }
  if (got) *got = total;
  return intact && total == n;
}

std::string recv_exactly(sock::socket& s, std::size_t n) {
  std::string out(n, '\0');
  std::size_t total = 0;
  while (total < n) {
    std::size_t k = s.recv(&out[total], n - total);
    if (k == 0) break;
    total += k;
  }
  out.resize(total);
  return out;
}

bool handle_is_dead(sock_handle h) {
  std::int64_t v = 0;
  return sock_get_option(h, SOCK_OPT_BLOCKING, &v) == SOCK_NOT_SOCKET;
}

// ---- tests: errors and ownership ------------------------------------------------

void test_error_category() {
  const std::error_code ec = sock::make_error_code(SOCK_CONNECTION_REFUSED);
  CHECK(std::string(ec.category().name()) == "libsock");
  CHECK(&ec.category() == &sock::category());
  CHECK_EQ(ec.value(), SOCK_CONNECTION_REFUSED);
  CHECK_EQ(ec.message(), std::string(sock_strerror(SOCK_CONNECTION_REFUSED)));
  CHECK(ec == std::errc::connection_refused);
  CHECK(sock::make_error_code(SOCK_TIMED_OUT) == std::errc::timed_out);
  CHECK(sock::make_error_code(SOCK_WOULD_BLOCK) == std::errc::operation_would_block);
  CHECK(!sock::make_error_code(SOCK_OK));
  CHECK_EQ(sock::make_error_code(4242).message(), std::string(sock_strerror(4242)));

  const sock::error e(SOCK_NOT_SOCKET, "sock_bind");
  CHECK_STATUS(SOCK_NOT_SOCKET, e.status());
  CHECK(std::string(e.what()).find("sock_bind") != std::string::npos);
  CHECK(std::string(e.what()).find(sock_strerror(SOCK_NOT_SOCKET)) != std::string::npos);
  static_assert(std::is_base_of_v<std::system_error, sock::error>);
  static_assert(std::is_base_of_v<sock::error, sock::timeout_error>);
  CHECK_EQ(std::string(sock::version()), std::string(sock_version()));
}

void test_raii_close() {
  sock_handle raw = SOCK_INVALID_HANDLE;
  {
    sock::socket s = sock::socket::tcp4();
    raw = s.handle();
    CHECK(static_cast<bool>(s));
    CHECK(!handle_is_dead(raw));
  }
  CHECK(handle_is_dead(raw));  // closed by the destructor

  sock::socket s = sock::socket::udp4();
  raw = s.release();
  CHECK(!s);
  CHECK_EQ(s.handle(), static_cast<sock_handle>(SOCK_INVALID_HANDLE));
  CHECK(!handle_is_dead(raw));  // release() does not close
  sock::socket adopted(raw);
  adopted.reset();
  CHECK(handle_is_dead(raw));

  sock::socket c = sock::socket::tcp4();
  raw = c.handle();
  c.close();
  CHECK(!c);
  CHECK(handle_is_dead(raw));
  std::error_code ec;
  c.close(ec);  // empty: SOCK_NOT_SOCKET, not a crash
  CHECK(ec == sock::make_error_code(SOCK_NOT_SOCKET));
}

void test_move_semantics() {
  static_assert(!std::is_copy_constructible_v<sock::socket>);
  static_assert(!std::is_copy_assignable_v<sock::socket>);
  static_assert(std::is_nothrow_move_constructible_v<sock::socket>);
  static_assert(std::is_nothrow_move_assignable_v<sock::socket>);
  static_assert(!std::is_copy_constructible_v<sock::engine>);
  static_assert(std::is_nothrow_move_constructible_v<sock::engine>);

  sock::socket a = sock::socket::tcp4();
  const sock_handle ha = a.handle();
  sock::socket b(std::move(a));
  CHECK(!a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  CHECK_EQ(b.handle(), ha);
  CHECK(!handle_is_dead(ha));

  sock::socket c = sock::socket::tcp4();
  const sock_handle hc = c.handle();
  c = std::move(b);  // closes c's old socket
  CHECK(handle_is_dead(hc));
  CHECK_EQ(c.handle(), ha);
  CHECK(!b);  // NOLINT(bugprone-use-after-move)

  sock::socket d = sock::socket::udp4();
  const sock_handle hd = d.handle();
  swap(c, d);
  CHECK_EQ(c.handle(), hd);
  CHECK_EQ(d.handle(), ha);

  // Calls on an empty socket fail with SOCK_NOT_SOCKET.
  sock::socket empty;
  EXPECT_ERROR(SOCK_NOT_SOCKET, empty.listen());
  EXPECT_ERROR(SOCK_NOT_SOCKET, (void)empty.fd());

  sock::engine e1 = sock::engine::manual();
  sock_engine* raw = e1.get();
  sock::engine e2(std::move(e1));
  CHECK(!e1);  // NOLINT(bugprone-use-after-move)
  CHECK(e2.get() == raw);
}

void test_connect_refused_throws() {
  // A bound, non-listening TCP socket refuses connections.
  sock::socket closed_port = sock::socket::tcp4();
  closed_port.bind("127.0.0.1:0");
  const std::string addr = closed_port.local_address();

  sock::socket c = sock::socket::tcp4();
  sock::error e = EXPECT_ERROR(SOCK_CONNECTION_REFUSED, c.connect(addr));
  CHECK(e.code() == sock::make_error_code(SOCK_CONNECTION_REFUSED));
  CHECK(e.code() == std::errc::connection_refused);
  CHECK(std::string(e.what()).find("sock_connect") != std::string::npos);

  sock::socket t = sock::socket::tcp4();
  EXPECT_ERROR(SOCK_INVALID_ARGUMENT, t.bind("not an address"));
  EXPECT_ERROR(SOCK_INVALID_ARGUMENT, t.set_option(SOCK_OPT_BLOCKING, 7));
  EXPECT_ERROR(SOCK_NOT_CONNECTED, t.send("x"));
  EXPECT_ERROR(SOCK_INVALID_ARGUMENT, sock::socket(99, SOCK_TYPE_STREAM));
}

void test_error_code_overloads() {
  sock::socket closed_port = sock::socket::tcp4();
  closed_port.bind("127.0.0.1:0");
  const std::string addr = closed_port.local_address();

  std::error_code ec = sock::make_error_code(SOCK_FAULT);  // must be overwritten
  sock::socket c = sock::socket::open(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, ec);
  CHECK(!ec);
  CHECK(static_cast<bool>(c));
  c.connect(addr, ec);
  CHECK(ec == sock::make_error_code(SOCK_CONNECTION_REFUSED));
  CHECK(ec == std::errc::connection_refused);

  sock::socket bad = sock::socket::open(99, SOCK_TYPE_STREAM, ec);
  CHECK(!bad);
  CHECK(ec == sock::make_error_code(SOCK_INVALID_ARGUMENT));

  sock::socket l = sock::socket::tcp4();
  l.bind("127.0.0.1:0", ec);
  CHECK(!ec);
  l.listen(4, ec);
  CHECK(!ec);
  sock::socket c2 = sock::socket::tcp4();
  c2.connect(l.local_address(ec), ec);
  CHECK(!ec);
  sock::socket s = l.accept(ec);
  CHECK(!ec);
  CHECK(static_cast<bool>(s));
  CHECK_EQ(c2.send("hi", ec), std::size_t{2});
  CHECK(!ec);
  char buf[8];
  CHECK_EQ(s.recv(buf, sizeof buf, ec), std::size_t{2});
  CHECK(!ec);

  s.set_option(SOCK_OPT_BLOCKING, 0, ec);
  CHECK(!ec);
  CHECK_EQ(s.get_option(SOCK_OPT_BLOCKING, ec), std::int64_t{0});
  CHECK_EQ(s.recv(buf, sizeof buf, ec), std::size_t{0});
  CHECK(ec == std::errc::operation_would_block);
  (void)s.get_option(12345, ec);
  CHECK(ec == sock::make_error_code(SOCK_INVALID_ARGUMENT));
  (void)sock::socket().peer_address(ec);
  CHECK(ec == sock::make_error_code(SOCK_NOT_SOCKET));
}

void test_addresses_and_options() {
  sock::socket l = sock::socket::tcp4();
  l.bind("127.0.0.1:0");
  l.listen();
  const std::string laddr = l.local_address();
  CHECK(laddr.rfind("127.0.0.1:", 0) == 0);
  CHECK(laddr.size() > std::strlen("127.0.0.1:"));
  CHECK(laddr.find('\0') == std::string::npos);

  sock::socket c = sock::socket::tcp4();
  EXPECT_ERROR(SOCK_NOT_CONNECTED, (void)c.peer_address());
  c.connect(laddr);
  sock::socket s = l.accept();
  CHECK_EQ(c.peer_address(), laddr);
  CHECK_EQ(s.peer_address(), c.local_address());

  c.set_option(SOCK_OPT_NO_DELAY, 1);
  CHECK_EQ(c.get_option(SOCK_OPT_NO_DELAY), std::int64_t{1});
  c.set_send_timeout(1500ms);
  CHECK_EQ(c.get_option(SOCK_OPT_SEND_TIMEOUT_MS), std::int64_t{1500});
  c.set_recv_timeout(250ms);
  CHECK_EQ(c.get_option(SOCK_OPT_RECV_TIMEOUT_MS), std::int64_t{250});
  c.set_blocking(false);
  CHECK_EQ(c.get_option(SOCK_OPT_BLOCKING), std::int64_t{0});
  CHECK(c.fd() >= 0);

  // IPv6 text.
  sock::socket l6 = sock::socket::tcp6();
  std::error_code ec;
  l6.bind("[::1]:0", ec);
  if (!ec) CHECK(l6.local_address().rfind("[::1]:", 0) == 0);

  // Unix domain.
  const std::string path = "/tmp/sock_hpp_test_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  sock::socket u = sock::socket::unix_stream();
  u.bind("unix:" + path);
  u.listen();
  CHECK_EQ(u.local_address(), "unix:" + path);
  sock::socket uc = sock::socket::unix_stream();
  uc.connect("unix:" + path);
  sock::socket us = u.accept();
  uc.send("unix!");
  CHECK_EQ(recv_exactly(us, 5), std::string("unix!"));
  ::unlink(path.c_str());

  // UDP: send_to / recv_from, and send without a destination.
  sock::socket a = sock::socket::udp4();
  a.bind("127.0.0.1:0");
  sock::socket b = sock::socket::udp4();
  EXPECT_ERROR(SOCK_DESTINATION_ADDRESS_REQUIRED, b.send("x"));
  CHECK_EQ(b.send_to("dgram", 5, a.local_address()), std::size_t{5});
  char buf[32];
  std::string from;
  CHECK_EQ(a.recv_from(buf, sizeof buf, from), std::size_t{5});
  CHECK_EQ(std::string(buf, 5), std::string("dgram"));
  // b was bound implicitly by send_to, to 0.0.0.0:port.
  const std::string blocal = b.local_address();
  CHECK_EQ(from, "127.0.0.1" + blocal.substr(blocal.rfind(':')));
  EXPECT_ERROR(SOCK_PROTOCOL_OPTION, a.set_option(SOCK_OPT_NO_DELAY, 1));
}

// ---- tests: blocking I/O ----------------------------------------------------------

void test_blocking_roundtrip_4mib() {
  const std::size_t len = 4u << 20;
  const std::vector<unsigned char> data = patterned(len);
  tcp_pair p = make_pair();

  bool server_intact = false;
  // Echo server: receive everything, then send it back in one send().
  joined_thread server([&] {
    std::vector<unsigned char> in(len);
    std::size_t total = 0;
    while (total < len) {
      std::size_t k = p.server.recv(in.data() + total, len - total);
      if (k == 0) break;
      total += k;
    }
    server_intact = total == len && in == data;
    p.server.send(in.data(), total);
    p.server.shutdown(SOCK_SHUT_SEND);
  });

  CHECK_EQ(p.client.send(data.data(), data.size()), len);  // one call, all of it
  std::size_t got = 0;
  CHECK(recv_pattern(p.client, len, 0, &got));
  CHECK_EQ(got, len);
  char extra;
  CHECK_EQ(p.client.recv(&extra, 1), std::size_t{0});  // end of stream
  server.join();
  CHECK(server_intact);
}

void test_sendv_and_string_view() {
  tcp_pair p = make_pair();
  const std::string a = "alpha-", b = "beta-";
  const char c[] = "gamma";
  CHECK_EQ(p.client.sendv({sock::buf(a), sock::buf(b), sock::buf(c, 5)}), std::size_t{16});
  const sock_buf arr[2] = {sock::buf("12", 2), sock::buf(std::string_view("345"))};
  CHECK_EQ(p.client.sendv(arr, 2), std::size_t{5});
  CHECK_EQ(p.client.send(std::string_view("!")), std::size_t{1});
  CHECK_EQ(recv_exactly(p.server, 22), std::string("alpha-beta-gamma12345!"));
  EXPECT_ERROR(SOCK_FAULT, p.client.sendv(nullptr, 1));
}

void test_send_timeout_partial_count() {
  const std::size_t len = 32u << 20;  // far more than loopback buffers hold
  const std::vector<unsigned char> data(len, 0x5a);
  {
    tcp_pair p = make_pair();
    shrink_buffers(p);
    p.client.set_send_timeout(200ms);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      p.client.send(data.data(), len);
      FAIL("send of 32 MiB to a peer that never reads returned");
    } catch (const sock::timeout_error& e) {
      CHECK_STATUS(SOCK_TIMED_OUT, e.status());
      CHECK(e.code() == std::errc::timed_out);
      CHECK(e.sent() > 0);
      CHECK(e.sent() < len);
      CHECK_EQ(e.sent(), e.bytes());
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    CHECK(ms >= 150ms);
    CHECK(ms < 5s);
  }
  {
    tcp_pair p = make_pair();
    shrink_buffers(p);
    p.client.set_send_timeout(200ms);
    std::error_code ec;
    const std::size_t n = p.client.send(data.data(), len, ec);
    CHECK(ec == sock::make_error_code(SOCK_TIMED_OUT));
    CHECK(n > 0);
    CHECK(n < len);
  }
}

void test_recv_timeout_and_end_of_stream() {
  tcp_pair p = make_pair();
  p.server.set_recv_timeout(100ms);
  char buf[16];
  try {
    p.server.recv(buf, sizeof buf);
    FAIL("recv with nothing sent returned");
  } catch (const sock::timeout_error& e) {
    CHECK_STATUS(SOCK_TIMED_OUT, e.status());
    CHECK_EQ(e.bytes(), std::size_t{0});
  }
  p.client.shutdown(SOCK_SHUT_SEND);
  CHECK_EQ(p.server.recv(buf, sizeof buf), std::size_t{0});
  EXPECT_ERROR(SOCK_SHUTDOWN, p.client.send("late"));
}

// ---- tests: async -------------------------------------------------------------------

void test_async_inline_no_callback() {
  tcp_pair p = make_pair();
  auto rec = std::make_shared<record>();
  const char msg[] = "inline";
  const sock::async_result r = p.client.send_async(msg, 6, recorder(rec));
  CHECK_STATUS(SOCK_OK, r.status);
  CHECK(r.completed());
  CHECK(!r.pending());
  CHECK(!r.failed());
  CHECK(!r.error());
  CHECK_EQ(r.bytes, std::size_t{6});
  CHECK_EQ(g_live.load(), 0);  // the holder was freed inside send_async
  CHECK_EQ(recv_exactly(p.server, 6), std::string("inline"));
  std::this_thread::sleep_for(50ms);
  CHECK_EQ(rec->count(), 0);  // and the callback never runs
  CHECK_EQ(rec.use_count(), 1L);
}

void test_async_failed_frees_holder() {
  auto rec = std::make_shared<record>();
  sock::socket unconnected = sock::socket::tcp4();
  sock::async_result r = unconnected.send_async("x", 1, recorder(rec));
  CHECK(r.failed());
  CHECK_STATUS(SOCK_NOT_CONNECTED, r.status);
  CHECK(r.error() == std::errc::not_connected);
  CHECK_EQ(g_live.load(), 0);

  sock::socket empty;
  r = empty.send_async("x", 1, recorder(rec));
  CHECK_STATUS(SOCK_NOT_SOCKET, r.status);
  char buf[4];
  r = empty.recv_async(buf, sizeof buf, recorder(rec));
  CHECK_STATUS(SOCK_NOT_SOCKET, r.status);
  const sock_buf bufs[1] = {sock::buf("x", 1)};
  r = empty.sendv_async(bufs, 1, recorder(rec));
  CHECK_STATUS(SOCK_NOT_SOCKET, r.status);
  r = unconnected.send_async("x", 1, 0x40, recorder(rec));  // unknown flag
  CHECK_STATUS(SOCK_INVALID_ARGUMENT, r.status);
  CHECK_EQ(g_live.load(), 0);
  std::this_thread::sleep_for(20ms);
  CHECK_EQ(rec->count(), 0);
  CHECK_EQ(rec.use_count(), 1L);
}

void test_async_pending_default_engine() {
  const std::size_t len = 16u << 20;
  auto data = std::make_shared<const std::vector<unsigned char>>(patterned(len));
  tcp_pair p = make_pair();
  shrink_buffers(p);

  auto rec = std::make_shared<record>();
  // The lambda keeps the payload alive until the operation is over.
  const sock::async_result r = p.client.send_async(
      data->data(), len, track([rec, data](sock_status s, std::size_t n) { rec->hit(s, n); }));
  CHECK_STATUS(SOCK_IO_PENDING, r.status);
  CHECK(r.pending());
  CHECK(r.bytes < len);
  CHECK_EQ(g_live.load(), 1);  // the peer has not read: nothing can complete yet
  CHECK_EQ(rec->count(), 0);

  bool intact = false;
  joined_thread reader([&] { intact = recv_pattern(p.server, len); });
  CHECK(rec->wait());
  reader.join();
  CHECK(intact);
  CHECK_STATUS(SOCK_OK, rec->status);
  CHECK_EQ(rec->bytes, len);  // total of the operation, inline part included
  CHECK(rec->thread != std::this_thread::get_id());  // the default engine's thread
  CHECK(wait_until([] { return g_live.load() == 0; }));
  std::this_thread::sleep_for(50ms);
  CHECK_EQ(rec->count(), 1);  // exactly once
  CHECK(wait_until([&] { return data.use_count() == 1; }));
}

void test_async_forced_pending_and_sendv_async() {
  tcp_pair p = make_pair();
  p.client.set_option(SOCK_OPT_ASYNC_INLINE_COMPLETION, 0);
  auto rec = std::make_shared<record>();
  sock::async_result r = p.client.send_async("forced", 6, recorder(rec));
  CHECK(r.pending());
  CHECK(rec->wait());
  CHECK_STATUS(SOCK_OK, rec->status);
  CHECK_EQ(rec->bytes, std::size_t{6});
  CHECK(rec->thread != std::this_thread::get_id());

  auto rec2 = std::make_shared<record>();
  static const char part1[] = "gather-", part2[] = "ed";
  {
    const sock_buf bufs[2] = {sock::buf(part1, 7), sock::buf(part2, 2)};
    r = p.client.sendv_async(bufs, 2, recorder(rec2));
  }  // the sock_buf array may go at once
  CHECK(r.pending());
  CHECK(rec2->wait());
  CHECK_STATUS(SOCK_OK, rec2->status);
  CHECK_EQ(rec2->bytes, std::size_t{9});
  CHECK_EQ(recv_exactly(p.server, 15), std::string("forcedgather-ed"));
  CHECK(wait_until([] { return g_live.load() == 0; }));
  CHECK_EQ(rec->count() + rec2->count(), 2);
}

// The loop-on-SOCK_OK pattern of the header, with a lambda that re-submits.
struct chain {
  sock::socket* s = nullptr;
  const unsigned char* data = nullptr;
  std::size_t len = 0, next = 0, block = 0;
  std::atomic<int> pendings{0};
  std::shared_ptr<record> done = std::make_shared<record>();

  void step(sock_status st) {
    while (st == SOCK_OK && next < len) {
      const std::size_t n = std::min(block, len - next);
      const unsigned char* at = data + next;
      next += n;
      const sock::async_result r = s->send_async(at, n, track([this](sock_status s2, std::size_t) { step(s2); }));
      if (r.pending()) {
        ++pendings;
        return;  // step() runs again from the callback
      }
      st = r.status;
    }
    done->hit(st, next);
  }
};

void test_async_chain_loop_on_ok() {
  const std::size_t len = 16u << 20;
  const std::vector<unsigned char> data = patterned(len);
  tcp_pair p = make_pair();
  shrink_buffers(p);
  chain c;
  c.s = &p.client;
  c.data = data.data();
  c.len = len;
  c.block = 4000;
  c.step(SOCK_OK);  // returns at the first pending send: nobody reads yet
  CHECK_EQ(c.pendings.load(), 1);
  CHECK(c.next < len);
  bool intact = false;
  joined_thread reader([&] { intact = recv_pattern(p.server, len); });
  CHECK(c.done->wait(1, 20s));
  reader.join();
  CHECK(intact);
  CHECK_STATUS(SOCK_OK, c.done->status);
  CHECK_EQ(c.done->bytes, len);
  CHECK(c.pendings.load() < static_cast<int>(len / c.block));  // many finished inline
  CHECK(wait_until([] { return g_live.load() == 0; }));
}

void test_async_abort_on_close_and_cancel() {
  // A pending receive is aborted when the socket object is destroyed.
  {
    tcp_pair p = make_pair();
    auto rec = std::make_shared<record>();
    auto buf = std::make_shared<std::array<char, 64>>();
    const sock::async_result r = p.server.recv_async(
        buf->data(), buf->size(), track([rec, buf](sock_status s, std::size_t n) { rec->hit(s, n); }));
    CHECK(r.pending());
    p.server.reset();
    CHECK(rec->wait());
    CHECK_STATUS(SOCK_OPERATION_ABORTED, rec->status);
    CHECK(wait_until([] { return g_live.load() == 0; }));
    CHECK(wait_until([&] { return buf.use_count() == 1; }));
  }
  // cancel_sends: pending sends abort with their partial count, socket stays.
  {
    const std::size_t len = 16u << 20;
    auto data = std::make_shared<const std::vector<unsigned char>>(len, 1);
    tcp_pair p = make_pair();
    shrink_buffers(p);
    auto rec = std::make_shared<record>();
    const sock::async_result r = p.client.send_async(
        data->data(), len, track([rec, data](sock_status s, std::size_t n) { rec->hit(s, n); }));
    CHECK(r.pending());
    p.client.cancel_sends();
    CHECK(rec->wait());
    CHECK_STATUS(SOCK_OPERATION_ABORTED, rec->status);
    CHECK(rec->bytes < len);
    CHECK(static_cast<bool>(p.client));
    CHECK(!handle_is_dead(p.client.handle()));
    CHECK(wait_until([] { return g_live.load() == 0; }));
  }
}

void test_async_callback_exception_is_contained() {
  tcp_pair p = make_pair();
  p.client.set_option(SOCK_OPT_ASYNC_INLINE_COMPLETION, 0);
  auto rec = std::make_shared<record>();
  sock::async_result r = p.client.send_async("boom", 4, track([rec](sock_status s, std::size_t n) {
                                               rec->hit(s, n);
                                               throw std::runtime_error("from a callback");
                                             }));
  CHECK(r.pending());
  CHECK(rec->wait());
  CHECK(wait_until([] { return g_live.load() == 0; }));  // freed despite the throw
  // The engine thread survived: the next operation completes too.
  auto rec2 = std::make_shared<record>();
  r = p.client.send_async("ok", 2, recorder(rec2));
  CHECK(r.pending());
  CHECK(rec2->wait());
  CHECK_STATUS(SOCK_OK, rec2->status);
  CHECK_EQ(recv_exactly(p.server, 6), std::string("boomok"));
  CHECK(wait_until([] { return g_live.load() == 0; }));
}

void test_recv_async() {
  tcp_pair p = make_pair();
  const auto main_id = std::this_thread::get_id();
  // Pending: nothing there yet.
  {
    auto rec = std::make_shared<record>();
    auto buf = std::make_shared<std::array<char, 64>>();
    const sock::async_result r = p.server.recv_async(
        buf->data(), buf->size(), track([rec, buf](sock_status s, std::size_t n) { rec->hit(s, n); }));
    CHECK(r.pending());
    CHECK_EQ(r.bytes, std::size_t{0});
    p.client.send("ping");
    CHECK(rec->wait());
    CHECK_STATUS(SOCK_OK, rec->status);
    CHECK_EQ(rec->bytes, std::size_t{4});
    CHECK_EQ(std::string(buf->data(), 4), std::string("ping"));
    CHECK(rec->thread != main_id);
    CHECK(wait_until([] { return g_live.load() == 0; }));
  }
  // Inline: the data is already there.
  {
    p.client.send("pong");
    char peek[4];
    CHECK_EQ(p.server.recv(peek, sizeof peek, SOCK_MSG_PEEK), std::size_t{4});  // wait for it
    auto rec = std::make_shared<record>();
    char buf[64];
    const sock::async_result r = p.server.recv_async(buf, sizeof buf, recorder(rec));
    CHECK(r.completed());
    CHECK_EQ(r.bytes, std::size_t{4});
    CHECK_EQ(std::string(buf, 4), std::string("pong"));
    CHECK_EQ(g_live.load(), 0);
    std::this_thread::sleep_for(20ms);
    CHECK_EQ(rec->count(), 0);
  }
  // End of stream: 0 bytes with SOCK_OK, inline or through the callback.
  {
    p.client.shutdown(SOCK_SHUT_SEND);
    auto rec = std::make_shared<record>();
    auto buf = std::make_shared<std::array<char, 64>>();
    const sock::async_result r = p.server.recv_async(
        buf->data(), buf->size(), track([rec, buf](sock_status s, std::size_t n) { rec->hit(s, n); }));
    if (r.pending()) {
      CHECK(rec->wait());
      CHECK_STATUS(SOCK_OK, rec->status);
      CHECK_EQ(rec->bytes, std::size_t{0});
    } else {
      CHECK(r.completed());
      CHECK_EQ(r.bytes, std::size_t{0});
    }
    CHECK(wait_until([] { return g_live.load() == 0; }));
  }
}

void test_manual_engine_runs_on_poller() {
  sock::engine eng = sock::engine::manual();
  CHECK(static_cast<bool>(eng));
  CHECK(eng.fd() >= 0);
  tcp_pair p = make_pair();  // destroyed before the engine
  p.client.attach(eng);
  p.server.attach(eng);
  p.client.set_option(SOCK_OPT_ASYNC_INLINE_COMPLETION, 0);

  auto sent = std::make_shared<record>();
  auto got = std::make_shared<record>();
  char buf[32];
  sock::async_result r = p.server.recv_async(buf, sizeof buf, recorder(got));
  CHECK(r.pending());
  r = p.client.send_async("manual", 6, recorder(sent));
  CHECK(r.pending());
  std::this_thread::sleep_for(50ms);
  CHECK_EQ(sent->count() + got->count(), 0);  // nothing runs without poll()
  CHECK_EQ(g_live.load(), 2);

  std::size_t ran = 0;
  CHECK(wait_until([&] {
    ran += eng.poll(50);
    return sent->count() == 1 && got->count() == 1;
  }));
  CHECK_EQ(ran, std::size_t{2});
  CHECK(sent->thread == std::this_thread::get_id());  // on the polling thread
  CHECK(got->thread == std::this_thread::get_id());
  CHECK_STATUS(SOCK_OK, sent->status);
  CHECK_EQ(sent->bytes, std::size_t{6});
  CHECK_EQ(got->bytes, std::size_t{6});
  CHECK_EQ(std::string(buf, 6), std::string("manual"));
  CHECK_EQ(g_live.load(), 0);  // deleted before poll() returned

  std::error_code ec;
  CHECK_EQ(eng.poll(0, ec), std::size_t{0});
  CHECK(!ec);
  sock::engine threaded(1);
  (void)threaded.poll(0, ec);  // not a manual engine
  CHECK(ec == sock::make_error_code(SOCK_INVALID_ARGUMENT));
  EXPECT_ERROR(SOCK_INVALID_ARGUMENT, (void)threaded.fd());
}

void test_manual_engine_free_aborts() {
  tcp_pair p = make_pair();
  auto rec = std::make_shared<record>();
  char buf[16];  // outlives the engine, so outlives the operation
  {
    sock::engine eng = sock::engine::manual();
    p.server.attach(eng);
    const sock::async_result r = p.server.recv_async(buf, sizeof buf, recorder(rec));
    CHECK(r.pending());
    CHECK_EQ(rec->count(), 0);
  }  // ~engine: the pending receive is aborted inside, on this thread
  CHECK_EQ(rec->count(), 1);
  CHECK_STATUS(SOCK_OPERATION_ABORTED, rec->status);
  CHECK(rec->thread == std::this_thread::get_id());
  CHECK_EQ(g_live.load(), 0);

  // Its sockets stay open, but async calls fail until attached elsewhere.
  auto rec2 = std::make_shared<record>();
  sock::async_result r = p.server.send_async("x", 1, recorder(rec2));
  CHECK_STATUS(SOCK_OPERATION_ABORTED, r.status);
  CHECK(r.failed());
  CHECK_EQ(g_live.load(), 0);
  p.server.attach_default();
  r = p.server.send_async("y", 1, recorder(rec2));
  CHECK(r.completed());
  CHECK_EQ(recv_exactly(p.client, 1), std::string("y"));
  CHECK_EQ(rec2->count(), 0);
}

void test_threaded_engine() {
  sock::engine eng(2);
  tcp_pair p = make_pair();
  p.client.attach(eng);
  p.client.set_option(SOCK_OPT_ASYNC_INLINE_COMPLETION, 0);
  auto rec = std::make_shared<record>();
  const sock::async_result r = p.client.send_async("threads", 7, recorder(rec));
  CHECK(r.pending());
  CHECK(rec->wait());
  CHECK_STATUS(SOCK_OK, rec->status);
  CHECK(rec->thread != std::this_thread::get_id());
  CHECK_EQ(recv_exactly(p.server, 7), std::string("threads"));
  CHECK(wait_until([] { return g_live.load() == 0; }));
  // Attaching with an operation pending is refused.
  auto rec2 = std::make_shared<record>();
  char buf[8];
  CHECK(p.client.recv_async(buf, sizeof buf, recorder(rec2)).pending());
  sock::engine other(1);
  EXPECT_ERROR(SOCK_INVALID_ARGUMENT, p.client.attach(other));
  p.client.reset();  // aborts the receive before `buf` goes
  CHECK(rec2->wait());
  CHECK_STATUS(SOCK_OPERATION_ABORTED, rec2->status);
  CHECK(wait_until([] { return g_live.load() == 0; }));
}

// connect_async, accept_async (an owning sock::socket in the callback or
// in the result), shutdown_async then close: the peer reads everything,
// then a clean end; errors reach the status callbacks; exceptions from
// them are contained; every holder freed.
void test_connect_accept_shutdown_async() {
  sock::socket l = sock::socket::tcp4();
  l.bind("127.0.0.1:0");
  l.listen(8);
  const std::string addr = l.local_address();
  std::mutex m;
  std::condition_variable cv;
  sock::socket accepted;
  int accepts = 0, connects = 0;
  sock_status accept_status = -1, connect_status = -1;
  auto ar = l.accept_async([&](sock_status s, sock::socket a) {
    std::lock_guard<std::mutex> lock(m);
    accept_status = s;
    accepted = std::move(a);
    ++accepts;
    cv.notify_all();
  });
  CHECK(ar.pending());
  CHECK(!ar.accepted);
  sock::socket c = sock::socket::tcp4();
  auto cr = c.connect_async(addr, [&](sock_status s) {
    std::lock_guard<std::mutex> lock(m);
    connect_status = s;
    ++connects;
    cv.notify_all();
  });
  CHECK(cr.pending());
  // sends made while connecting queue behind the connect
  CHECK(!c.send_async("queued", 6, [](sock_status, std::size_t) {}).failed());
  {
    std::unique_lock<std::mutex> lock(m);
    CHECK(cv.wait_for(lock, 10s, [&] { return accepts == 1 && connects == 1; }));
  }
  CHECK_STATUS(SOCK_OK, accept_status);
  CHECK_STATUS(SOCK_OK, connect_status);
  CHECK(static_cast<bool>(accepted));
  accepted.set_recv_timeout(20s);
  CHECK_EQ(recv_exactly(accepted, 6), std::string("queued"));
  // graceful end: shutdown behind the sends, close in its callback
  auto done = std::make_shared<std::atomic<int>>(0);
  sock_handle raw = c.release();
  sock::socket owner(raw);
  auto sr = owner.shutdown_async([done, raw](sock_status s) {
    if (s == SOCK_OK) sock_close(raw);
    done->store(s == SOCK_OK ? 1 : 2);
  });
  if (sr.completed()) {
    sock_close(raw);
    done->store(1);
  }
  (void)owner.release();  // closed by the callback
  CHECK(wait_until([&] { return done->load() != 0; }));
  CHECK_EQ(done->load(), 1);
  char b[4];
  CHECK_EQ(accepted.recv(b, sizeof b), std::size_t(0));  // a clean end
  // a connection already waiting: accept completes inside the call
  sock::socket c2 = sock::socket::tcp4();
  c2.connect(addr);
  std::this_thread::sleep_for(50ms);
  std::atomic<int> late_calls{0};
  auto now = l.accept_async([&](sock_status, sock::socket) { ++late_calls; });
  if (now.completed()) {
    CHECK(static_cast<bool>(now.accepted));
  } else {
    CHECK(now.pending());
    CHECK(wait_until([&] { return late_calls.load() == 1; }));
  }
  // a refused connect reaches the callback; a throwing callback is contained
  sock::socket dead = sock::socket::tcp4();
  dead.bind("127.0.0.1:0");
  const std::string dead_addr = dead.local_address();
  dead.reset();
  sock::socket c3 = sock::socket::tcp4();
  std::atomic<int> refused{-1};
  auto rr = c3.connect_async(dead_addr, [&](sock_status s) {
    refused = s;
    throw std::runtime_error("from a callback");
  });
  if (rr.pending()) {
    CHECK(wait_until([&] { return refused.load() != -1; }));
    CHECK_STATUS(SOCK_CONNECTION_REFUSED, refused.load());
  } else {
    CHECK_STATUS(SOCK_CONNECTION_REFUSED, rr.status);
  }
}

struct test_case {
  const char* name;
  void (*fn)();
};

const test_case tests[] = {
    {"error_category", test_error_category},
    {"raii_close", test_raii_close},
    {"move_semantics", test_move_semantics},
    {"connect_refused_throws", test_connect_refused_throws},
    {"error_code_overloads", test_error_code_overloads},
    {"addresses_and_options", test_addresses_and_options},
    {"blocking_roundtrip_4mib", test_blocking_roundtrip_4mib},
    {"sendv_and_string_view", test_sendv_and_string_view},
    {"send_timeout_partial_count", test_send_timeout_partial_count},
    {"recv_timeout_and_end_of_stream", test_recv_timeout_and_end_of_stream},
    {"async_inline_no_callback", test_async_inline_no_callback},
    {"async_failed_frees_holder", test_async_failed_frees_holder},
    {"async_pending_default_engine", test_async_pending_default_engine},
    {"async_forced_pending_and_sendv_async", test_async_forced_pending_and_sendv_async},
    {"async_chain_loop_on_ok", test_async_chain_loop_on_ok},
    {"async_abort_on_close_and_cancel", test_async_abort_on_close_and_cancel},
    {"async_callback_exception_is_contained", test_async_callback_exception_is_contained},
    {"recv_async", test_recv_async},
    {"manual_engine_runs_on_poller", test_manual_engine_runs_on_poller},
    {"manual_engine_free_aborts", test_manual_engine_free_aborts},
    {"threaded_engine", test_threaded_engine},
    {"connect_accept_shutdown_async", test_connect_accept_shutdown_async},
};

}  // namespace

int main(int argc, char** argv) {
  ::alarm(300);  // a hung test kills the run instead of the CI job
  int passed = 0, failed = 0;
  for (const test_case& t : tests) {
    if (argc > 1 && std::strcmp(argv[1], t.name) != 0) continue;
    std::string why;
    try {
      t.fn();
    } catch (const failure& f) {
      why = f.what;
    } catch (const std::exception& e) {
      why = std::string("unexpected exception: ") + e.what();
    } catch (...) {
      why = "unexpected exception";
    }
    if (why.empty() && g_live.load() != 0) why = "callable holders still alive: " + std::to_string(g_live.load());
    if (why.empty()) {
      ++passed;
      std::printf("ok - %s\n", t.name);
    } else {
      ++failed;
      std::printf("not ok - %s: %s\n", t.name, why.c_str());
      g_live = 0;  // do not blame the next test
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
