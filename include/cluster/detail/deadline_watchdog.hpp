// A connection's timeouts: what it waits for (the next request, the rest of a
// header block, more body, the handler, the client to take a write, the
// client to close) decides the deadline, and one timer per connection
// cancels the socket's operations when it passes.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/handler_slot.hpp>
#include <cluster/detail/server_state.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

namespace cluster::detail {

using clock = std::chrono::steady_clock;

/// What a connection waits for; each has its own deadline.
enum class waiting_for : std::uint8_t {
  request,  ///< the next request: idle_timeout (a short grace when draining)
  headers,  ///< the rest of a header block: header_timeout from its first byte, never extended
  body,     ///< more of a body: body_timeout of inactivity, extended per read
  handler,  ///< the handler to answer: no deadline
  write,    ///< the client to take bytes: write_timeout of stall, extended per write
  linger,   ///< the client to close after a final answer (see basic_connection::linger)
};

/// The deadline of a connection's current wait, enforced by cancelling the
/// socket's pending operations (which then complete with an error, and
/// expired() says why). `Owner` (the connection) is kept alive by the armed
/// timer through its shared_from_this().
template <class Socket, class Owner>
class deadline_watchdog {
 public:
  /// How long a lingering close lasts at most.
  static constexpr std::chrono::milliseconds linger_time{2000};

  deadline_watchdog(Socket& socket, const server_state& state, Owner& owner)
      : socket_(socket), state_(state), owner_(owner), timer_(context_of(socket)) {}

  deadline_watchdog(const deadline_watchdog&) = delete;
  deadline_watchdog& operator=(const deadline_watchdog&) = delete;

  /// The one transition: the connection now waits for `next`. Whether the
  /// deadline moves depends on what it waited for before (a header block's
  /// deadline runs from its first byte, so that a client trickling bytes
  /// cannot hold the connection: slowloris).
  void wait_for(waiting_for next) {
    const options& o = state_.opts;
    switch (next) {
      case waiting_for::request:
        if (state_.draining)
          set_deadline(drain_grace());
        else if (waiting_ != waiting_for::request)
          set_deadline(o.idle_timeout);
        if (waiting_ != waiting_for::request) waiting_since_ = deadline_ - (state_.draining ? drain_grace() : o.idle_timeout);
        break;
      case waiting_for::headers:
        if (waiting_ != waiting_for::headers) {
          auto timeout = state_.draining ? drain_grace() : o.header_timeout;  // see drain()
          set_deadline(timeout);
          request_began_ = deadline_ - timeout;
        }
        break;
      case waiting_for::body:
        set_deadline(o.body_timeout);
        if (waiting_ != waiting_for::headers && waiting_ != waiting_for::body)
          request_began_ = deadline_ - o.body_timeout;
        break;
      case waiting_for::handler: deadline_ = clock::time_point::max(); break;
      case waiting_for::write: set_deadline(o.write_timeout); break;
      case waiting_for::linger:
        // A draining worker is about to exit: a short linger, so that a
        // client that keeps sending cannot hold the stop.
        set_deadline(state_.draining ? drain_grace() * 2 : linger_time);
        break;
    }
    waiting_ = next;
  }

  /// What the connection waits for now.
  waiting_for waiting() const noexcept { return waiting_; }

  /// When the connection began to wait for its next request (meaningful
  /// while waiting() is request): how long a keep-alive connection has been
  /// idle.
  clock::time_point waiting_since() const noexcept { return waiting_since_; }

  /// When the request being received began to arrive (its first read, when
  /// it took several): what a refusal's duration is counted from.
  clock::time_point request_began() const noexcept { return request_began_; }

  /// The server drains: a connection waiting for its next request closes
  /// after a short grace instead of idle_timeout (its client may be writing
  /// that request right now: one that comes within the grace is answered,
  /// with "Connection: close"). A header block still arriving gets the grace
  /// too, then 408: a client that trickles one must not hold a graceful stop
  /// until shutdown_timeout kills the worker. Bodies and handlers run on.
  void drain() {
    if (waiting_ == waiting_for::request || waiting_ == waiting_for::headers) set_deadline(drain_grace());
  }

  /// True when the deadline passed and cancelled the socket's operations.
  bool expired() const noexcept { return expired_; }
  /// expired(), and forgets it (the expiry has been answered).
  bool take_expired() noexcept { return std::exchange(expired_, false); }

  /// Stops the timer for good (the connection closes).
  void stop() noexcept { timer_.cancel(); }

 private:
  // Every connection's socket belongs to an io_context (a worker's, the
  // admin endpoint's, a test's).
  static asio::io_context& context_of(Socket& socket) {
    return static_cast<asio::io_context&>(asio::query(socket.get_executor(), asio::execution::context));
  }

  // How long a draining connection waits for a next request before closing.
  std::chrono::milliseconds drain_grace() const {
    return std::min(std::chrono::milliseconds(250), state_.opts.idle_timeout);
  }

  // One timer per connection, re-armed only when the deadline moves earlier
  // than the armed expiry, so the per-request cost is a clock read, not a
  // timer system call.
  void set_deadline(std::chrono::milliseconds timeout) {
    deadline_ = clock::now() + timeout;
    if (deadline_ < armed_) arm(deadline_);
  }

  void arm(clock::time_point at) {
    armed_ = at;
    timer_.expires_at(at);
    // The wait's operation lives in this object, not in the heap, where
    // thousands of them would sit between busy connections' short-lived
    // buffers and keep those pages from going back (handler_slot.hpp).
    timer_.async_wait(in_slot(slot_, [this, keep = owner_.shared_from_this()](const asio::error_code& ec) {
      on_timer(ec);
    }));
  }

  void on_timer(const asio::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // re-armed or stopped
    armed_ = clock::time_point::max();
    if (!socket_.is_open()) return;
    if (deadline_ == clock::time_point::max()) return;  // the handler is running: no deadline
    if (clock::now() < deadline_) {
      arm(deadline_);
      return;
    }
    expired_ = true;
    asio::error_code ignored;
    socket_.cancel(ignored);
  }

  Socket& socket_;
  const server_state& state_;
  Owner& owner_;
  // On the io_context's own executor type: 48 bytes less per connection
  // than asio::steady_timer's type-erased one.
  asio::basic_waitable_timer<clock, asio::wait_traits<clock>, asio::io_context::executor_type> timer_;
  handler_slot<136> slot_;  // the pending wait's operation (see arm())
  clock::time_point deadline_ = clock::time_point::max();
  clock::time_point armed_ = clock::time_point::max();
  clock::time_point request_began_{};
  clock::time_point waiting_since_{};  // see waiting_since()
  waiting_for waiting_ = waiting_for::handler;  // until the connection first reads: no deadline
  bool expired_ = false;
};

}  // namespace cluster::detail
