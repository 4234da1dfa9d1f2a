// libsock C++ demo (include/sock.hpp): an echo server thread and a client
// on 127.0.0.1.
//   1. a blocking send() of a greeting, echoed back;
//   2. a 32 MiB send_async() with a lambda: too big to finish inside the
//      call, so it goes pending while this thread reads the echo, and the
//      lambda runs once on the default engine's thread;
//   3. a small send_async() that finishes inline: no callback at all.
// Errors arrive as sock::error exceptions (a std::system_error).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sock.hpp"

namespace {

void echo(sock::socket conn) {
  std::vector<char> buf(64 * 1024);
  while (std::size_t n = conn.recv(buf.data(), buf.size())) conn.send(buf.data(), n);
  // recv() returned 0: the client shut down its sending side.
}

std::string recv_exactly(sock::socket& s, std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t got = 0; got < n;) {
    const std::size_t k = s.recv(&out[got], n - got);
    if (k == 0) throw std::runtime_error("early end of stream");
    got += k;
  }
  return out;
}

}  // namespace

int main() try {
  sock::socket listener = sock::socket::tcp4();
  listener.bind("127.0.0.1:0");
  listener.listen();
  std::printf("echo server listening on %s\n", listener.local_address().c_str());
  std::thread server([&listener] {
    try {
      echo(listener.accept());
    } catch (const sock::error& e) {
      std::fprintf(stderr, "server: %s\n", e.what());
    }
  });

  sock::socket client = sock::socket::tcp4();
  client.connect(listener.local_address());
  client.set_recv_timeout(std::chrono::seconds(10));
  std::printf("client %s connected\n", client.local_address().c_str());

  // 1. Blocking: send() returns when every byte is in the kernel.
  const std::string hello = "hello from sock.hpp";
  const std::size_t sent = client.send(hello);
  std::printf("1. send(): %zu bytes; echo \"%s\"\n", sent, recv_exactly(client, sent).c_str());

  // 2. Async with a lambda. The lambda owns a reference to the payload, so
  //    the bytes stay valid until libsock is done with them.
  auto big = std::make_shared<std::vector<char>>(32u << 20);
  for (std::size_t i = 0; i < big->size(); i++) (*big)[i] = static_cast<char>(i % 251);
  std::promise<std::size_t> done;
  std::future<std::size_t> total = done.get_future();
  const std::thread::id main_thread = std::this_thread::get_id();
  std::atomic<bool> on_engine_thread{false};
  const sock::async_result r = client.send_async(
      big->data(), big->size(), [big, &done, &on_engine_thread, main_thread](sock_status s, std::size_t n) {
        on_engine_thread = std::this_thread::get_id() != main_thread;
        if (s == SOCK_OK)
          done.set_value(n);
        else
          done.set_exception(std::make_exception_ptr(sock::error(s, "send_async callback", n)));
      });
  if (r.failed()) throw sock::error(r.status, "sock_send_async");
  std::printf("2. send_async() of %zu bytes: %s, %zu bytes inside the call\n", big->size(),
              r.pending() ? "SOCK_IO_PENDING (the lambda will run once)" : "SOCK_OK (no callback)", r.bytes);
  const std::string echoed = recv_exactly(client, big->size());  // while the rest goes out
  const bool intact = echoed == std::string(big->begin(), big->end());
  if (r.pending()) {
    const std::size_t n = total.get();  // waits for the lambda
    std::printf("   lambda ran on %s: %zu bytes sent\n",
                on_engine_thread ? "the default engine's thread" : "this thread", n);
  }
  std::printf("   echo of %zu bytes %s\n", echoed.size(), intact ? "intact" : "CORRUPTED");

  // 3. Small enough to finish inside the call: SOCK_OK, the lambda never runs.
  static const char bye[] = "bye";
  const sock::async_result r3 =
      client.send_async(bye, 3, [](sock_status, std::size_t) { std::printf("   (never printed)\n"); });
  std::printf("3. send_async() of 3 bytes: %s, %zu bytes; echo \"%s\"\n",
              r3.completed() ? "SOCK_OK, finished inline, no callback" : sock_strerror(r3.status), r3.bytes,
              recv_exactly(client, 3).c_str());

  client.shutdown(SOCK_SHUT_SEND);
  char end;
  const bool eof = client.recv(&end, 1) == 0;
  server.join();
  std::printf("server closed the connection: %s\n", eof ? "yes" : "no");
  return intact && eof && r3.completed() ? 0 : 1;
} catch (const sock::error& e) {
  std::fprintf(stderr, "cpp_demo: %s (status %d)\n", e.what(), static_cast<int>(e.status()));
  return 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cpp_demo: %s\n", e.what());
  return 1;
}
