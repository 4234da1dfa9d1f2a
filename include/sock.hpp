/*
 * sock.hpp — a header-only C++17 wrapper of libsock (include/sock.h).
 *
 * Nothing here is generated; it adds no behaviour of its own over the C API,
 * only ownership, exceptions and lambdas. Link with -lsock as for C.
 *
 * OWNERSHIP
 *   sock::socket  move-only owner of one sock_handle; the destructor calls
 *                 sock_close (errors ignored), which completes the socket's
 *                 pending async operations with SOCK_OPERATION_ABORTED.
 *   sock::engine  move-only owner of one sock_engine; the destructor calls
 *                 sock_engine_free (pending operations of its sockets are
 *                 aborted; a manual engine runs those callbacks inside the
 *                 destructor, on the destroying thread).
 *
 * ERROR MODEL
 *   Status codes are reported as std::error_code in sock::category()
 *   (name "libsock", value = the sock_status, message = sock_strerror).
 *   The category maps the codes that have one to std::errc, so
 *   `ec == std::errc::connection_refused` works.
 *
 *   - Synchronous calls throw by default: sock::error (a std::system_error
 *     carrying status() and, for send/recv, bytes() moved before the
 *     failure), or its subclass sock::timeout_error for SOCK_TIMED_OUT,
 *     whose sent() is the partial count of a timed-out blocking send.
 *   - Each of them has a noexcept overload taking `std::error_code& ec`
 *     (cleared on success); those never throw (address_* may still throw
 *     std::bad_alloc from std::string).
 *   - Async calls (send_async, sendv_async, recv_async, connect_async,
 *     accept_async, shutdown_async) never throw
 *     sock::error: they return sock::async_result, the C API's three-way
 *     status, because that status is what a completion callback needs to
 *     loop on (see below). They can throw only what allocating the callable
 *     throws (std::bad_alloc, or F's move/copy constructor), before
 *     anything is submitted.
 *
 * ASYNC OPERATIONS AND LAMBDAS
 *   socket::send_async(buf, len, on_done) calls sock_send_async with a
 *   heap-allocated holder of `on_done` (any callable with the signature
 *   void(sock_status status, std::size_t bytes)). The result says who
 *   reports the outcome, exactly as in C:
 *     - completed() (SOCK_OK): done inside the call, result.bytes == len;
 *       on_done is NOT called (and is destroyed before the call returns);
 *     - pending() (SOCK_IO_PENDING): on_done runs exactly once, later, with
 *       the final status and the total bytes of the operation; the holder
 *       (and so the lambda with its captures) is destroyed right after;
 *     - failed() (any other status): on_done is not called and is destroyed
 *       before the call returns; result.error() gives the code.
 *   Where on_done runs: on the socket's engine — by default the default
 *   engine's I/O thread (so NOT the calling thread, and possibly before
 *   send_async has returned: set up what it needs first); an engine from
 *   sock::engine(n) — one of its threads; a manual engine
 *   (sock::engine::manual()) — inside engine::poll(), on the polling thread.
 *   socket::attach(engine&) chooses the engine.
 *   Buffers: libsock never copies the payload; `buf` must stay valid and
 *   unchanged until on_done runs (or until the call returned anything but
 *   pending). Capturing a std::shared_ptr to the data in the lambda is an
 *   easy way to keep it alive.
 *   Exceptions: on_done runs under a C library that cannot unwind, so an
 *   exception leaving it is caught and discarded; handle errors inside.
 *   on_done may call anything in libsock (send_async on the same socket,
 *   close it, destroy its sock::socket) but must not end its thread.
 *   Chaining: inline completion is common, so a callback that starts the
 *   next send must loop on completed() rather than recurse:
 *
 *     void writer::next(sock_status s) {       // on_done calls next(s)
 *       while (s == SOCK_OK && more()) {
 *         auto r = sock_.send_async(chunk(), chunk_len(),
 *                                   [this](sock_status st, std::size_t) { next(st); });
 *         if (r.pending()) return;             // next() runs again later
 *         s = r.status;                        // SOCK_OK: go on here
 *       }
 *       finish(s);                             // all sent, or the error
 *     }
 *
 *   With SOCK_OPT_ASYNC_INLINE_COMPLETION set to 0 on the socket, every
 *   accepted operation is pending() and reports through on_done.
 */
#ifndef SOCK_HPP
#define SOCK_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sock.h"

namespace sock {

// ---- errors -----------------------------------------------------------------

namespace detail {

class category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "libsock"; }

  std::string message(int ev) const override { return sock_strerror(static_cast<sock_status>(ev)); }

  std::error_condition default_error_condition(int ev) const noexcept override {
    using std::errc;
    switch (ev) {
      case SOCK_OPERATION_ABORTED: return errc::operation_canceled;
      case SOCK_INTERRUPTED: return errc::interrupted;
      case SOCK_ACCESS_DENIED: return errc::permission_denied;
      case SOCK_FAULT: return errc::bad_address;
      case SOCK_INVALID_ARGUMENT: return errc::invalid_argument;
      case SOCK_TOO_MANY_OPEN_SOCKETS: return errc::too_many_files_open;
      case SOCK_WOULD_BLOCK: return errc::operation_would_block;
      case SOCK_IN_PROGRESS: return errc::operation_in_progress;
      case SOCK_ALREADY_IN_PROGRESS: return errc::connection_already_in_progress;
      case SOCK_NOT_SOCKET: return errc::not_a_socket;
      case SOCK_DESTINATION_ADDRESS_REQUIRED: return errc::destination_address_required;
      case SOCK_MESSAGE_SIZE: return errc::message_size;
      case SOCK_PROTOCOL_TYPE: return errc::wrong_protocol_type;
      case SOCK_PROTOCOL_OPTION: return errc::no_protocol_option;
      case SOCK_PROTOCOL_NOT_SUPPORTED: return errc::protocol_not_supported;
      case SOCK_OPERATION_NOT_SUPPORTED: return errc::operation_not_supported;
      case SOCK_ADDRESS_FAMILY_NOT_SUPPORTED: return errc::address_family_not_supported;
      case SOCK_ADDRESS_ALREADY_IN_USE: return errc::address_in_use;
      case SOCK_ADDRESS_NOT_AVAILABLE: return errc::address_not_available;
      case SOCK_NETWORK_DOWN: return errc::network_down;
      case SOCK_NETWORK_UNREACHABLE: return errc::network_unreachable;
      case SOCK_NETWORK_RESET: return errc::network_reset;
      case SOCK_CONNECTION_ABORTED: return errc::connection_aborted;
      case SOCK_CONNECTION_RESET: return errc::connection_reset;
      case SOCK_NO_BUFFER_SPACE: return errc::no_buffer_space;
      case SOCK_IS_CONNECTED: return errc::already_connected;
      case SOCK_NOT_CONNECTED: return errc::not_connected;
      case SOCK_SHUTDOWN: return errc::broken_pipe;
      case SOCK_TIMED_OUT: return errc::timed_out;
      case SOCK_CONNECTION_REFUSED: return errc::connection_refused;
      case SOCK_HOST_UNREACHABLE: return errc::host_unreachable;
      default: return std::error_condition(ev, *this);
    }
  }
};

}  // namespace detail

/// The error category of libsock status codes ("libsock").
inline const std::error_category& category() noexcept {
  static const detail::category_impl instance;
  return instance;
}

/// A std::error_code for a libsock status (SOCK_OK gives a false code).
inline std::error_code make_error_code(sock_status status) noexcept {
  return std::error_code(static_cast<int>(status), category());
}

/// Thrown by the throwing calls for every status but SOCK_OK.
class error : public std::system_error {
 public:
  /// `what` names the failed C call; `bytes` is what it moved before failing.
  error(sock_status status, const char* what, std::size_t bytes = 0)
      : std::system_error(make_error_code(status), what), bytes_(bytes) {}

  /// The libsock status, e.g. SOCK_CONNECTION_REFUSED.
  sock_status status() const noexcept { return static_cast<sock_status>(code().value()); }

  /// Bytes the failed send/recv did transfer before the error (else 0).
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::size_t bytes_;
};

/// SOCK_TIMED_OUT: a send, receive, connect or accept ran out of its budget.
class timeout_error : public error {
 public:
  timeout_error(const char* what, std::size_t bytes) : error(SOCK_TIMED_OUT, what, bytes) {}

  /// For a blocking send: the bytes that did go into the kernel.
  std::size_t sent() const noexcept { return bytes(); }
};

namespace detail {

inline void throw_if(sock_status s, const char* what, std::size_t bytes = 0) {
  if (s == SOCK_OK) return;
  if (s == SOCK_TIMED_OUT) throw timeout_error(what, bytes);
  throw error(s, what, bytes);
}

inline void assign(std::error_code& ec, sock_status s) noexcept {
  if (s == SOCK_OK)
    ec.clear();
  else
    ec = make_error_code(s);
}

}  // namespace detail

/// The library's version, "MAJOR.MINOR.PATCH".
inline const char* version() noexcept { return sock_version(); }

/// A sock_buf (gather segment) over `len` bytes at `data`.
inline sock_buf buf(const void* data, std::size_t len) noexcept { return sock_buf{data, len}; }

/// A sock_buf over the bytes of a string view (not its NUL).
inline sock_buf buf(std::string_view s) noexcept { return sock_buf{s.data(), s.size()}; }

// ---- async plumbing ----------------------------------------------------------

/// Outcome of an async call, as the C API reports it.
struct async_result {
  /// SOCK_OK, SOCK_IO_PENDING or the error.
  sock_status status = SOCK_OK;
  /// sent_now / received_now of the C call (0 at end of stream for a
  /// completed receive).
  std::size_t bytes = 0;

  /// Finished inside the call; the callback will not run.
  bool completed() const noexcept { return status == SOCK_OK; }
  /// Accepted; the callback will run exactly once.
  bool pending() const noexcept { return status == SOCK_IO_PENDING; }
  /// Failed; the callback will not run.
  bool failed() const noexcept { return !completed() && !pending(); }
  /// The error of a failed call; a false code otherwise.
  std::error_code error() const noexcept {
    return failed() ? make_error_code(status) : std::error_code();
  }
};

namespace detail {

// Type-erased holder of a completion callable: one allocation per async
// call, freed by the trampoline after the call (or by the submitting call
// when the C function did not return SOCK_IO_PENDING).
struct completion {
  completion() = default;
  completion(const completion&) = delete;
  completion& operator=(const completion&) = delete;
  virtual ~completion() = default;
  virtual void run(sock_status status, std::size_t bytes) = 0;
};

template <class F>
struct completion_of final : completion {
  template <class G>
  explicit completion_of(G&& g) : fn(std::forward<G>(g)) {}
  void run(sock_status status, std::size_t bytes) override { std::invoke(fn, status, bytes); }
  F fn;
};

template <class F>
std::unique_ptr<completion> make_completion(F&& f) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&, sock_status, std::size_t>,
                "sock: an async callback must be callable as f(sock_status, std::size_t)");
  return std::make_unique<completion_of<Fn>>(std::forward<F>(f));
}

// One trampoline serves both sock_send_callback and sock_recv_callback (same
// signature; its type is exactly theirs, a plain function of C-compatible
// parameters). Nothing may unwind into libsock: the callable runs in a
// try-block and the holder is deleted after it.
inline void trampoline(sock_handle, sock_status status, std::size_t bytes, void* user_data) noexcept {
  completion* c = static_cast<completion*>(user_data);
  try {
    c->run(status, bytes);
  } catch (...) {
    // Documented: an exception from the user's callback is discarded.
  }
  delete c;
}

// The same for the status-only callbacks of connect and shutdown.
struct status_completion {
  status_completion() = default;
  status_completion(const status_completion&) = delete;
  status_completion& operator=(const status_completion&) = delete;
  virtual ~status_completion() = default;
  virtual void run(sock_status status) = 0;
};

template <class F>
struct status_completion_of final : status_completion {
  template <class G>
  explicit status_completion_of(G&& g) : fn(std::forward<G>(g)) {}
  void run(sock_status status) override { std::invoke(fn, status); }
  F fn;
};

inline void status_trampoline(sock_handle, sock_status status, void* user_data) noexcept {
  status_completion* c = static_cast<status_completion*>(user_data);
  try {
    c->run(status);
  } catch (...) {
    // Documented: an exception from the user's callback is discarded.
  }
  delete c;
}

template <class F, class Submit>
async_result submit_status(F&& f, Submit&& call) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&, sock_status>,
                "sock: a connect or shutdown callback must be callable as f(sock_status)");
  auto holder = std::make_unique<status_completion_of<Fn>>(std::forward<F>(f));
  async_result r;
  r.status = call(&status_trampoline, holder.get());
  if (r.status == SOCK_IO_PENDING) (void)holder.release();  // the trampoline owns it now
  return r;
}

// The accept callback's holder gets the raw handle; socket.hpp's accept
// wraps it in a sock::socket before calling the user's callable.
struct accept_completion {
  accept_completion() = default;
  accept_completion(const accept_completion&) = delete;
  accept_completion& operator=(const accept_completion&) = delete;
  virtual ~accept_completion() = default;
  virtual void run(sock_status status, sock_handle accepted) = 0;
};

inline void accept_trampoline(sock_handle, sock_status status, sock_handle accepted,
                              void* user_data) noexcept {
  accept_completion* c = static_cast<accept_completion*>(user_data);
  try {
    c->run(status, accepted);
  } catch (...) {
    // Documented: an exception from the user's callback is discarded (the
    // accepted socket, owned by the callable's argument, is closed).
  }
  delete c;
}

template <class Submit>
async_result submit(std::unique_ptr<completion> holder, Submit&& call) noexcept {
  async_result r;
  r.status = call(&trampoline, holder.get(), &r.bytes);
  if (r.status == SOCK_IO_PENDING) (void)holder.release();  // the trampoline owns it now
  return r;  // otherwise `holder` (and the callable) is destroyed here
}

}  // namespace detail

// ---- engine -----------------------------------------------------------------

/// Move-only owner of a sock_engine: the threads, or the poll calls, that
/// run completion callbacks.
class engine {
 public:
  /// An engine with `threads` >= 1 I/O threads (0: a manual engine).
  explicit engine(std::uint32_t threads) {
    detail::throw_if(sock_engine_new(threads, &e_), "sock_engine_new");
  }

  /// A manual engine: callbacks run only inside poll(), on its caller.
  static engine manual() { return engine(0); }

  /// Adopts a raw engine (nullptr: an empty object).
  static engine adopt(sock_engine* raw) noexcept { return engine(raw, adopt_tag{}); }

  engine(engine&& other) noexcept : e_(std::exchange(other.e_, nullptr)) {}
  engine& operator=(engine&& other) noexcept {
    if (this != &other) reset(std::exchange(other.e_, nullptr));
    return *this;
  }
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// sock_engine_free: aborts the pending operations of its sockets (each
  /// callback once; for a manual engine inside this destructor), joins the
  /// threads. Its sockets stay open; their later async calls fail with
  /// SOCK_OPERATION_ABORTED until attached elsewhere.
  ~engine() { reset(); }

  sock_engine* get() const noexcept { return e_; }
  explicit operator bool() const noexcept { return e_ != nullptr; }
  /// Gives up ownership without freeing.
  sock_engine* release() noexcept { return std::exchange(e_, nullptr); }
  /// Frees the engine (if any) and adopts `raw`.
  void reset(sock_engine* raw = nullptr) noexcept {
    if (e_ != nullptr) (void)sock_engine_free(e_);
    e_ = raw;
  }

  /// Manual engine: waits up to `timeout_ms` (0: not at all, -1: until
  /// there is work) and runs the due callbacks on this thread; returns how
  /// many ran.
  std::size_t poll(int timeout_ms = 0) {
    std::size_t n = 0;
    detail::throw_if(sock_engine_poll(e_, timeout_ms, &n), "sock_engine_poll");
    return n;
  }
  std::size_t poll(int timeout_ms, std::error_code& ec) noexcept {
    std::size_t n = 0;
    detail::assign(ec, sock_engine_poll(e_, timeout_ms, &n));
    return n;
  }

  /// Manual engine: a descriptor readable whenever poll() has work (owned
  /// by the engine: do not close or read it).
  int fd() const {
    std::int32_t fd = -1;
    detail::throw_if(sock_engine_fd(e_, &fd), "sock_engine_fd");
    return fd;
  }

 private:
  struct adopt_tag {};
  engine(sock_engine* raw, adopt_tag) noexcept : e_(raw) {}

  sock_engine* e_ = nullptr;
};

// ---- socket -----------------------------------------------------------------

/// Move-only owner of a sock_handle. An empty socket (default-constructed,
/// moved from, released or closed) holds SOCK_INVALID_HANDLE; calls on it
/// fail with SOCK_NOT_SOCKET.
class socket {
 public:
  socket() noexcept = default;

  /// Adopts a raw handle (closed by the destructor).
  explicit socket(sock_handle h) noexcept : h_(h) {}

  /// sock_socket(family, type): SOCK_FAMILY_INET/_INET6/_UNIX,
  /// SOCK_TYPE_STREAM/_DGRAM. Blocking mode, no timeouts.
  socket(int family, int type) {
    detail::throw_if(sock_socket(family, type, &h_), "sock_socket");
  }
  /// As above; an empty socket and `ec` set on failure.
  static socket open(int family, int type, std::error_code& ec) noexcept {
    sock_handle h = SOCK_INVALID_HANDLE;
    detail::assign(ec, sock_socket(family, type, &h));
    return socket(h);
  }

  static socket tcp4() { return socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM); }
  static socket tcp6() { return socket(SOCK_FAMILY_INET6, SOCK_TYPE_STREAM); }
  static socket udp4() { return socket(SOCK_FAMILY_INET, SOCK_TYPE_DGRAM); }
  static socket udp6() { return socket(SOCK_FAMILY_INET6, SOCK_TYPE_DGRAM); }
  static socket unix_stream() { return socket(SOCK_FAMILY_UNIX, SOCK_TYPE_STREAM); }
  static socket unix_dgram() { return socket(SOCK_FAMILY_UNIX, SOCK_TYPE_DGRAM); }

  socket(socket&& other) noexcept : h_(std::exchange(other.h_, SOCK_INVALID_HANDLE)) {}
  socket& operator=(socket&& other) noexcept {
    if (this != &other) reset(std::exchange(other.h_, SOCK_INVALID_HANDLE));
    return *this;
  }
  socket(const socket&) = delete;
  socket& operator=(const socket&) = delete;

  /// sock_close, errors ignored; pending async operations complete with
  /// SOCK_OPERATION_ABORTED on their engine.
  ~socket() { reset(); }

  sock_handle handle() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != SOCK_INVALID_HANDLE; }
  /// Gives up ownership: the caller must sock_close the returned handle.
  sock_handle release() noexcept { return std::exchange(h_, SOCK_INVALID_HANDLE); }
  /// Closes the owned handle (errors ignored) and adopts `h`.
  void reset(sock_handle h = SOCK_INVALID_HANDLE) noexcept {
    if (h_ != SOCK_INVALID_HANDLE) (void)sock_close(h_);
    h_ = h;
  }
  void swap(socket& other) noexcept { std::swap(h_, other.h_); }

  /// sock_close, reporting its status; the object is empty afterwards.
  void close() { detail::throw_if(sock_close(release()), "sock_close"); }
  void close(std::error_code& ec) noexcept { detail::assign(ec, sock_close(release())); }

  // -- life cycle --

  /// "127.0.0.1:0", "[::1]:8080", "localhost:80", "unix:/path".
  void bind(const std::string& address) { detail::throw_if(sock_bind(h_, address.c_str()), "sock_bind"); }
  void bind(const std::string& address, std::error_code& ec) noexcept {
    detail::assign(ec, sock_bind(h_, address.c_str()));
  }

  void listen(int backlog = 128) { detail::throw_if(sock_listen(h_, backlog), "sock_listen"); }
  void listen(int backlog, std::error_code& ec) noexcept { detail::assign(ec, sock_listen(h_, backlog)); }

  /// Waits (blocking mode, at most the receive timeout) for a connection.
  socket accept() {
    sock_handle h = SOCK_INVALID_HANDLE;
    detail::throw_if(sock_accept(h_, &h), "sock_accept");
    return socket(h);
  }
  socket accept(std::error_code& ec) noexcept {
    sock_handle h = SOCK_INVALID_HANDLE;
    detail::assign(ec, sock_accept(h_, &h));
    return socket(h);
  }

  /// Blocking mode waits at most the send timeout; non-blocking mode
  /// reports SOCK_IN_PROGRESS (an exception, or in `ec`).
  void connect(const std::string& address) {
    detail::throw_if(sock_connect(h_, address.c_str()), "sock_connect");
  }
  void connect(const std::string& address, std::error_code& ec) noexcept {
    detail::assign(ec, sock_connect(h_, address.c_str()));
  }

  /// SOCK_SHUT_RECV, SOCK_SHUT_SEND or SOCK_SHUT_BOTH.
  void shutdown(int how) { detail::throw_if(sock_shutdown(h_, how), "sock_shutdown"); }
  void shutdown(int how, std::error_code& ec) noexcept { detail::assign(ec, sock_shutdown(h_, how)); }

  // -- addresses --

  std::string local_address() const { return address(sock_local_address, "sock_local_address"); }
  std::string local_address(std::error_code& ec) const { return address(sock_local_address, ec); }
  std::string peer_address() const { return address(sock_peer_address, "sock_peer_address"); }
  std::string peer_address(std::error_code& ec) const { return address(sock_peer_address, ec); }

  // -- options --

  /// A SOCK_OPT_* option.
  void set_option(int option, std::int64_t value) {
    detail::throw_if(sock_set_option(h_, option, value), "sock_set_option");
  }
  void set_option(int option, std::int64_t value, std::error_code& ec) noexcept {
    detail::assign(ec, sock_set_option(h_, option, value));
  }
  std::int64_t get_option(int option) const {
    std::int64_t v = 0;
    detail::throw_if(sock_get_option(h_, option, &v), "sock_get_option");
    return v;
  }
  std::int64_t get_option(int option, std::error_code& ec) const noexcept {
    std::int64_t v = 0;
    detail::assign(ec, sock_get_option(h_, option, &v));
    return v;
  }

  void set_blocking(bool on) { set_option(SOCK_OPT_BLOCKING, on ? 1 : 0); }
  /// One budget for a whole blocking send/connect (and async send); 0 = none.
  void set_send_timeout(std::chrono::milliseconds t) { set_option(SOCK_OPT_SEND_TIMEOUT_MS, t.count()); }
  /// Budget of one blocking receive/accept (and async receive); 0 = none.
  void set_recv_timeout(std::chrono::milliseconds t) { set_option(SOCK_OPT_RECV_TIMEOUT_MS, t.count()); }

  /// The OS descriptor (owned by libsock: do not close it or change O_NONBLOCK).
  int fd() const {
    std::int32_t fd = -1;
    detail::throw_if(sock_fd(h_, &fd), "sock_fd");
    return fd;
  }

  // -- blocking I/O --

  /// sock_send: blocking mode returns when all `len` bytes are in the
  /// kernel (returns len); non-blocking mode returns what fit. Throws
  /// timeout_error (sent() = the bytes that went) on SOCK_TIMED_OUT,
  /// error (bytes() = the bytes that went) otherwise.
  std::size_t send(const void* data, std::size_t len, int flags = SOCK_MSG_NONE) {
    std::size_t n = 0;
    const sock_status s = sock_send(h_, data, len, flags, &n);  // before reading n
    detail::throw_if(s, "sock_send", n);
    return n;
  }
  std::size_t send(std::string_view s, int flags = SOCK_MSG_NONE) { return send(s.data(), s.size(), flags); }
  /// Never throws; returns the bytes sent, also on error.
  std::size_t send(const void* data, std::size_t len, std::error_code& ec, int flags = SOCK_MSG_NONE) noexcept {
    std::size_t n = 0;
    detail::assign(ec, sock_send(h_, data, len, flags, &n));
    return n;
  }
  std::size_t send(std::string_view s, std::error_code& ec, int flags = SOCK_MSG_NONE) noexcept {
    return send(s.data(), s.size(), ec, flags);
  }

  /// sock_send_to: one datagram to `address` (datagram sockets).
  std::size_t send_to(const void* data, std::size_t len, const std::string& address, int flags = SOCK_MSG_NONE) {
    std::size_t n = 0;
    const sock_status s = sock_send_to(h_, data, len, flags, address.c_str(), &n);  // before reading n
    detail::throw_if(s, "sock_send_to", n);
    return n;
  }
  std::size_t send_to(const void* data, std::size_t len, const std::string& address, std::error_code& ec,
                      int flags = SOCK_MSG_NONE) noexcept {
    std::size_t n = 0;
    detail::assign(ec, sock_send_to(h_, data, len, flags, address.c_str(), &n));
    return n;
  }

  /// sock_sendv: the segments as one stream of bytes (or one datagram).
  std::size_t sendv(const sock_buf* bufs, std::size_t count, int flags = SOCK_MSG_NONE) {
    std::size_t n = 0;
    const sock_status s = sock_sendv(h_, bufs, count, flags, &n);  // before reading n
    detail::throw_if(s, "sock_sendv", n);
    return n;
  }
  std::size_t sendv(std::initializer_list<sock_buf> bufs, int flags = SOCK_MSG_NONE) {
    return sendv(bufs.begin(), bufs.size(), flags);
  }
  std::size_t sendv(const sock_buf* bufs, std::size_t count, std::error_code& ec,
                    int flags = SOCK_MSG_NONE) noexcept {
    std::size_t n = 0;
    detail::assign(ec, sock_sendv(h_, bufs, count, flags, &n));
    return n;
  }

  /// sock_recv: at least one byte; 0 means orderly end of stream. Throws
  /// timeout_error on SOCK_TIMED_OUT (blocking mode, receive timeout).
  std::size_t recv(void* data, std::size_t cap, int flags = SOCK_MSG_NONE) {
    std::size_t n = 0;
    const sock_status s = sock_recv(h_, data, cap, flags, &n);  // before reading n
    detail::throw_if(s, "sock_recv", n);
    return n;
  }
  std::size_t recv(void* data, std::size_t cap, std::error_code& ec, int flags = SOCK_MSG_NONE) noexcept {
    std::size_t n = 0;
    detail::assign(ec, sock_recv(h_, data, cap, flags, &n));
    return n;
  }

  /// sock_recv_from: also stores the sender's address in `from`.
  std::size_t recv_from(void* data, std::size_t cap, std::string& from, int flags = SOCK_MSG_NONE) {
    char addr[SOCK_ADDRESS_MAX_LEN];
    std::size_t n = 0;
    const sock_status s = sock_recv_from(h_, data, cap, flags, addr, sizeof addr, &n);  // before reading n
    detail::throw_if(s, "sock_recv_from", n);
    from.assign(addr);
    return n;
  }

  // -- async I/O (see the top of this file) --

  /// sock_send_async with `on_done(sock_status, std::size_t)`.
  template <class F>
  async_result send_async(const void* data, std::size_t len, F&& on_done) {
    return send_async(data, len, SOCK_MSG_NONE, std::forward<F>(on_done));
  }
  template <class F>
  async_result send_async(const void* data, std::size_t len, int flags, F&& on_done) {
    const sock_handle h = h_;
    return detail::submit(detail::make_completion(std::forward<F>(on_done)),
                          [&](sock_send_callback cb, void* ud, std::size_t* now) {
                            return sock_send_async(h, data, len, flags, cb, ud, now);
                          });
  }

  /// sock_sendv_async; the `bufs` array may be reused on return, the bytes
  /// it points to must stay valid until on_done.
  template <class F>
  async_result sendv_async(const sock_buf* bufs, std::size_t count, F&& on_done) {
    return sendv_async(bufs, count, SOCK_MSG_NONE, std::forward<F>(on_done));
  }
  template <class F>
  async_result sendv_async(const sock_buf* bufs, std::size_t count, int flags, F&& on_done) {
    const sock_handle h = h_;
    return detail::submit(detail::make_completion(std::forward<F>(on_done)),
                          [&](sock_send_callback cb, void* ud, std::size_t* now) {
                            return sock_sendv_async(h, bufs, count, flags, cb, ud, now);
                          });
  }

  /// sock_recv_async: completes when at least one byte (or end of stream:
  /// 0 bytes with SOCK_OK) is in `data`, which must stay valid until then.
  template <class F>
  async_result recv_async(void* data, std::size_t cap, F&& on_done) {
    return recv_async(data, cap, SOCK_MSG_NONE, std::forward<F>(on_done));
  }
  template <class F>
  async_result recv_async(void* data, std::size_t cap, int flags, F&& on_done) {
    const sock_handle h = h_;
    return detail::submit(detail::make_completion(std::forward<F>(on_done)),
                          [&](sock_recv_callback cb, void* ud, std::size_t* now) {
                            return sock_recv_async(h, data, cap, flags, cb, ud, now);
                          });
  }

  /// sock_connect_async with `on_done(sock_status)`: a host name is looked
  /// up off the calling thread; sends made meanwhile queue behind it.
  /// completed(): connected inside the call (a Unix socket), on_done not called.
  template <class F>
  async_result connect_async(const std::string& address, F&& on_done) {
    const sock_handle h = h_;
    return detail::submit_status(std::forward<F>(on_done), [&](sock_status_callback cb, void* ud) {
      return sock_connect_async(h, address.c_str(), cb, ud);
    });
  }

  /// sock_shutdown_async with `on_done(sock_status)`: ends the sending side
  /// once every pending send went (completed(): nothing was pending). Close
  /// the socket from on_done for a graceful end.
  template <class F>
  async_result shutdown_async(F&& on_done) {
    const sock_handle h = h_;
    return detail::submit_status(std::forward<F>(on_done), [&](sock_status_callback cb, void* ud) {
      return sock_shutdown_async(h, cb, ud);
    });
  }

  /// sock_accept_async with `on_done(sock_status, sock::socket)`: the
  /// callable gets an owning socket (empty on error). The result's
  /// `accepted` holds the connection when it completed inside the call.
  template <class F>
  auto accept_async(F&& on_done);

  /// Completes every pending async send with SOCK_OPERATION_ABORTED.
  void cancel_sends() { detail::throw_if(sock_cancel_sends(h_), "sock_cancel_sends"); }
  void cancel_sends(std::error_code& ec) noexcept { detail::assign(ec, sock_cancel_sends(h_)); }

  /// Runs this socket's callbacks on `e` from now on (no operation may be
  /// pending). The engine must outlive the socket's async use.
  void attach(engine& e) { detail::throw_if(sock_attach(h_, e.get()), "sock_attach"); }
  void attach(engine& e, std::error_code& ec) noexcept { detail::assign(ec, sock_attach(h_, e.get())); }
  /// Back to the default engine.
  void attach_default() { detail::throw_if(sock_attach(h_, nullptr), "sock_attach"); }

 private:
  using address_fn = sock_status (*)(sock_handle, char*, std::size_t, std::size_t*);

  // SOCK_ADDRESS_MAX_LEN always suffices; the size-query retry is a guard.
  sock_status address_into(address_fn fn, std::string& out) const {
    char small[SOCK_ADDRESS_MAX_LEN];
    std::size_t len = 0;
    sock_status s = fn(h_, small, sizeof small, &len);
    if (s == SOCK_OK) {
      out.assign(small, len > 0 ? len - 1 : 0);
      return s;
    }
    if (s != SOCK_NO_BUFFER_SPACE || len == 0) return s;
    std::string big(len, '\0');
    s = fn(h_, &big[0], big.size(), &len);
    if (s == SOCK_OK) {
      big.resize(len > 0 ? len - 1 : 0);
      out = std::move(big);
    }
    return s;
  }
  std::string address(address_fn fn, const char* what) const {
    std::string out;
    detail::throw_if(address_into(fn, out), what);
    return out;
  }
  std::string address(address_fn fn, std::error_code& ec) const {
    std::string out;
    detail::assign(ec, address_into(fn, out));
    return out;
  }

  sock_handle h_ = SOCK_INVALID_HANDLE;
};

inline void swap(socket& a, socket& b) noexcept { a.swap(b); }

/// Outcome of socket::accept_async: as async_result, with the accepted
/// socket when it completed inside the call.
struct accept_result {
  sock_status status = SOCK_OK;
  socket accepted;

  bool completed() const noexcept { return status == SOCK_OK; }
  bool pending() const noexcept { return status == SOCK_IO_PENDING; }
  bool failed() const noexcept { return !completed() && !pending(); }
  std::error_code error() const noexcept {
    return failed() ? make_error_code(status) : std::error_code();
  }
};

namespace detail {
template <class F>
struct accept_completion_of final : accept_completion {
  template <class G>
  explicit accept_completion_of(G&& g) : fn(std::forward<G>(g)) {}
  void run(sock_status status, sock_handle accepted) override {
    std::invoke(fn, status, sock::socket(accepted));
  }
  F fn;
};
}  // namespace detail

template <class F>
auto socket::accept_async(F&& on_done) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&, sock_status, socket>,
                "sock: an accept callback must be callable as f(sock_status, sock::socket)");
  auto holder = std::make_unique<detail::accept_completion_of<Fn>>(std::forward<F>(on_done));
  accept_result r;
  sock_handle now = SOCK_INVALID_HANDLE;
  r.status = sock_accept_async(h_, &detail::accept_trampoline, holder.get(), &now);
  if (r.status == SOCK_IO_PENDING) (void)holder.release();  // the trampoline owns it now
  if (r.status == SOCK_OK) r.accepted = socket(now);
  return r;
}

}  // namespace sock

#endif  // SOCK_HPP
