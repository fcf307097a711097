// One HTTP/1.1 connection in a worker: a coroutine that reads, parses, calls
// the handler one request at a time and writes the responses of a pipelined
// batch in one write, with a watchdog timer enforcing the timeouts.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/date_cache.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/parser.hpp>
#include <cluster/detail/serialize.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <utility>

namespace cluster::detail {

using clock = std::chrono::steady_clock;

/// Links of the intrusive list of a worker's open connections.
struct connection_link {
  connection_link* prev = this;
  connection_link* next = this;

  void unlink() noexcept {
    prev->next = next;
    next->prev = prev;
    prev = next = this;
  }
  void insert_after(connection_link& at) noexcept {
    next = at.next;
    prev = &at;
    at.next->prev = this;
    at.next = this;
  }
};

/// What a worker's connections share: options, the Date cache, the open
/// connection list, and whether the worker is draining.
struct server_state {
  explicit server_state(const options& o) : opts(o) {}
  server_state(const server_state&) = delete;
  server_state& operator=(const server_state&) = delete;

  const options& opts;
  date_cache dates;
  connection_link connections;  ///< sentinel of the open connection list
  std::size_t open = 0;         ///< open connections
  bool draining = false;        ///< finish what is in flight, then close
  /// This process's cell in the shared region (requests answered, heartbeat),
  /// or nullptr outside a cluster.
  worker_cell* cell = nullptr;
  /// Requests after which the worker asks to be replaced; 0: never.
  std::uint64_t request_limit = 0;
  /// Called whenever a connection closes (the accept loop waits on it at the
  /// connection limit, a drain waits for the last one).
  void (*on_close)(void*) = nullptr;
  /// Called once when request_limit is reached.
  void (*on_request_limit)(void*) = nullptr;
  void* owner = nullptr;  ///< argument of the callbacks

  /// Counts an answered request.
  void count_request() noexcept {
    if (!cell) return;
    worker_cell::bump(cell->requests);
    if (request_limit != 0 && cell->requests.load(std::memory_order_relaxed) == request_limit && on_request_limit)
      on_request_limit(owner);
  }
};

class connection : public connection_link, public std::enable_shared_from_this<connection> {
 public:
  connection(asio::ip::tcp::socket socket, server_state& state)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), state_(state), parser_(state.opts) {
    insert_after(state_.connections);
    ++state_.open;
  }

  ~connection() {
    unlink();
    --state_.open;
    if (state_.on_close) state_.on_close(state_.owner);
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Serves the connection until it closes.
  template <class Handler>
  static asio::awaitable<void> serve(std::shared_ptr<connection> self, Handler& handler) {
    co_await self->run(handler);
    self->close();
  }

  /// Asks the connection to finish: an idle one closes now, a busy one after
  /// its current response (which then says "Connection: close").
  void drain() {
    if (!busy_ && parser_.idle()) {
      asio::error_code ignored;
      socket_.cancel(ignored);
    }
  }

 private:
  enum class phase { idle, headers, body, busy, writing };

  template <class Handler>
  asio::awaitable<void> run(Handler& handler) {
    set_deadline(state_.opts.idle_timeout);
    for (;;) {
      bool close = false;
      for (;;) {
        parse_state st = parser_.next();
        if (st == parse_state::need_more) break;
        if (st == parse_state::error) {
          serialize_error(out_, parser_.error_status(), state_.dates.line());
          close = true;
          break;
        }
        busy_ = true;
        no_deadline();
        close = co_await answer(handler, parser_.current());
        parser_.consume();
        busy_ = false;
        if (close) break;
        if (out_.size() >= flush_threshold && !co_await flush()) co_return;
      }
      if (!out_.empty() && !co_await flush()) co_return;
      if (close) {
        co_await linger();
        co_return;
      }
      if (state_.draining && parser_.idle()) co_return;

      if (parser_.idle()) {
        if (phase_ != phase::idle) set_deadline(state_.opts.idle_timeout), phase_ = phase::idle;
      } else if (!parser_.headers_done()) {
        // The header deadline runs from the request's first byte and is never
        // extended: a client trickling bytes cannot hold the slot (slowloris).
        if (phase_ != phase::headers) set_deadline(state_.opts.header_timeout), phase_ = phase::headers;
      } else {
        set_deadline(state_.opts.body_timeout);  // inactivity: extended per read
        phase_ = phase::body;
      }

      auto space = parser_.read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      if (ec) {
        if (timed_out_ && !parser_.idle()) {
          serialize_error(out_, 408, state_.dates.line());
          timed_out_ = false;
          if (co_await flush()) co_await linger();
        }
        co_return;
      }
      parser_.commit(n);
    }
  }

  // Calls the handler and appends its response; returns true when the
  // connection must close after it.
  template <class Handler>
  asio::awaitable<bool> answer(Handler& handler, request& req) {
    response res;
    bool failed = false;
    try {
      if constexpr (async_handler<Handler>)
        res = co_await handler(req);
      else
        res = handler(std::as_const(req));
    } catch (const std::exception& e) {
      failed = true;
      log_line("worker", std::string("handler threw: ") + e.what() + "; answered 500");
    } catch (...) {
      failed = true;
      log_line("worker", "handler threw a non-standard exception; answered 500");
    }
    if (!failed && (res.status < 200 || res.status > 999)) {
      failed = true;
      log_line("worker", "handler returned status " + std::to_string(res.status) +
                             " (a final status must be 200..999); answered 500");
    }
    if (failed) {
      res = response::text("Internal Server Error\n", 500);
    }
    bool close = !req.keep_alive() || state_.draining || wants_close(res);
    framing f;
    f.head = req.method() == "HEAD";
    f.close = close;
    f.keep_alive_10 = !close && req.version_minor() == 0;
    serialize(out_, res, f, state_.dates.line());
    state_.count_request();
    co_return close;
  }

  // Writes the output buffer; false when the connection is lost.
  asio::awaitable<bool> flush() {
    set_deadline(state_.opts.write_timeout);
    phase_ = phase::writing;
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(out_), use_tuple);
    (void)n;
    out_.clear();
    co_return !ec;
  }

  // After a final response: stop sending, then read and discard what the
  // client still sends for a moment, so that closing with unread data does not
  // reset the connection before the client has read the response (the
  // "lingering close" of RFC 9112 §9.6).
  asio::awaitable<void> linger() {
    asio::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    set_deadline(linger_time);
    phase_ = phase::writing;
    std::size_t discarded = 0;
    while (discarded < linger_bytes) {
      auto space = parser_.read_space();
      auto [rec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      if (rec) break;
      discarded += n;
    }
  }

  void close() noexcept {
    asio::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  // The watchdog: one timer per connection, re-armed only when the deadline
  // moves earlier than the armed expiry, so the per-request cost is a clock
  // read, not a timer syscall.
  void set_deadline(std::chrono::milliseconds timeout) {
    deadline_ = clock::now() + timeout;
    if (deadline_ < armed_) arm(deadline_);
  }

  void no_deadline() noexcept { deadline_ = clock::time_point::max(); }

  void arm(clock::time_point at) {
    armed_ = at;
    timer_.expires_at(at);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) { self->on_timer(ec); });
  }

  void on_timer(const asio::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // re-armed or closed
    armed_ = clock::time_point::max();
    if (!socket_.is_open()) return;
    if (deadline_ == clock::time_point::max()) return;  // the handler is running: no deadline
    if (clock::now() < deadline_) {
      arm(deadline_);
      return;
    }
    timed_out_ = true;
    asio::error_code ignored;
    socket_.cancel(ignored);
  }

  static constexpr std::size_t flush_threshold = 64 * 1024;
  static constexpr std::size_t linger_bytes = 64 * 1024;
  static constexpr std::chrono::milliseconds linger_time{2000};

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  server_state& state_;
  request_parser parser_;
  std::string out_;
  clock::time_point deadline_ = clock::time_point::max();
  clock::time_point armed_ = clock::time_point::max();
  phase phase_ = phase::idle;
  bool busy_ = false;
  bool timed_out_ = false;
};

}  // namespace cluster::detail
