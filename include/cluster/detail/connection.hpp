// One HTTP/1.1 connection in a worker: a coroutine that reads, parses, calls
// the handler one request at a time and writes the responses of a pipelined
// batch in one write, with a watchdog timer enforcing the timeouts. Streaming
// handlers read the body and write the response through it as they go.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/date_cache.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/parser.hpp>
#include <cluster/detail/serialize.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <array>
#include <chrono>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
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

  /// Records an answered request in this process's cell (no system call:
  /// single-writer stores to shared memory).
  void count_request(int status, clock::time_point started) noexcept {
    if (!cell) return;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count();
    cell->record(status, us);
    if (request_limit != 0 && cell->requests.load(std::memory_order_relaxed) == request_limit && on_request_limit)
      on_request_limit(owner);
  }
  void count_bytes(std::atomic<std::uint64_t> worker_cell::*counter, std::size_t n) noexcept {
    if (cell) worker_cell::bump(cell->*counter, n);
  }
  void count_connection(int delta) noexcept {
    if (!cell) return;
    if (delta > 0) worker_cell::bump(cell->connections);
    cell->open_connections.store(cell->open_connections.load(std::memory_order_relaxed) + delta,
                                 std::memory_order_relaxed);
  }
};

/// One HTTP/1.1 connection over a `Socket` (asio::ip::tcp::socket in a
/// worker; an in-memory stream in the fuzzer and the unit tests).
template <class Socket>
class basic_connection final : public connection_link,
                               public std::enable_shared_from_this<basic_connection<Socket>>,
                               private body_source,
                               private stream_sink,
                               private connection_ends {
 public:
  basic_connection(Socket socket, server_state& state)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), state_(state), parser_(state.opts) {
    parser_.set_connection_ends(this);
    insert_after(state_.connections);
    ++state_.open;
    state_.count_connection(+1);
  }

  ~basic_connection() {
    unlink();
    --state_.open;
    state_.count_connection(-1);
    if (state_.on_close) state_.on_close(state_.owner);
  }

  basic_connection(const basic_connection&) = delete;
  basic_connection& operator=(const basic_connection&) = delete;

  /// Serves the connection until it closes.
  template <class Handler>
  static asio::awaitable<void> serve(std::shared_ptr<basic_connection> self, Handler& handler) {
    co_await self->run(handler);
    self->close();
  }

  /// The socket's descriptor (a forked child closes inherited ones).
  int native_handle() noexcept { return socket_.native_handle(); }

  /// Asks the connection to finish: one waiting for its next request closes
  /// now; one reading a request, running a handler or writing answers closes
  /// after its current response (which then says "Connection: close").
  void drain() {
    // Not at once: its client may be writing its next request right now, and
    // that request would meet the close. One that comes within the grace is
    // answered, with "Connection: close".
    if (!busy_ && phase_ == phase::idle && parser_.idle()) set_deadline(drain_grace());
    // A header block still arriving gets the grace too, then 408: a client
    // that trickles one (slowloris) must not hold a graceful stop until
    // shutdown_timeout kills the worker. Bodies and handlers are left to run.
    if (!busy_ && phase_ == phase::headers) set_deadline(drain_grace());
  }

 private:
  enum class phase { idle, headers, body, busy, writing };

  /// The response of a streaming handler, while it is written.
  struct stream_state {
    bool started = false;   // the status line is out (or in out_)
    bool finished = false;  // finish() or send() done: nothing more may be written
    bool chunked = false;   // pieces are framed as chunks
    bool no_body = false;   // HEAD, 204, 304: the header section is the whole response
    bool head = false;      // a HEAD request: pieces are dropped
    bool close = false;     // the connection closes after this response
    bool lost = false;      // a write failed: the client is gone
  };

  template <class Handler>
  asio::awaitable<void> run(Handler& handler) {
    parser_.set_streaming(stream_handler<Handler>);
    // For write_now(); asynchronous operations are not affected.
    asio::error_code ignored;
    socket_.non_blocking(true, ignored);
    set_deadline(state_.opts.idle_timeout);
    for (;;) {
      bool close = false;
      while (!close) {
        parse_state st = parser_.next();
        if (st == parse_state::need_more) break;
        switch (st) {
          case parse_state::error:
            // After a streamed answer the response is out; nothing more to say.
            if (!head_answered_) answer_error(parser_.error_status());
            close = true;
            break;
          case parse_state::refused:
            close = answer_refused(parser_.current());
            parser_.consume();
            break;
          case parse_state::head:  // streaming: answered before its body is read
            if constexpr (stream_handler<Handler>) close = co_await answer(handler, parser_.current());
            if (lost_) co_return;
            head_answered_ = true;
            parser_.skip_body();  // what the handler left unread is dropped
            break;
          case parse_state::message:
            if constexpr (sync_handler<Handler> && !async_handler<Handler> && !stream_handler<Handler>)
              close = answer_now(handler, parser_.current());  // no coroutine frame
            else if (!head_answered_)
              close = co_await answer(handler, parser_.current());
            if (lost_) co_return;
            head_answered_ = false;
            parser_.consume();
            break;
          case parse_state::body:
          case parse_state::need_more: break;
        }
        // A large body goes out before the next answer is appended after it.
        if (!close && (out_.size() >= flush_threshold || !body_out_.empty()) && !write_now() && !co_await flush())
          co_return;
      }
      if (!close && !head_answered_ && parser_.continue_due()) {
        // The body is read before the handler runs: ask the client for it.
        out_ += continue_response;
        parser_.continue_sent();
      }
      if (!out_.empty() && !write_now() && !co_await flush()) co_return;
      if (close) {
        co_await linger();
        co_return;
      }
      // Draining: requests the client has already sent are still answered
      // (the next answer says "Connection: close"); closing on them would
      // reset the connection under answers the client has yet to read.
      if (parser_.idle()) {
        if (state_.draining)
          set_deadline(drain_grace()), phase_ = phase::idle;
        else if (phase_ != phase::idle)
          set_deadline(state_.opts.idle_timeout), phase_ = phase::idle;
      } else if (!parser_.headers_done()) {
        // The header deadline runs from the request's first byte and is never
        // extended: a client trickling bytes cannot hold the slot (slowloris).
        if (phase_ != phase::headers) {
          auto timeout = state_.draining ? drain_grace() : state_.opts.header_timeout;  // see drain()
          set_deadline(timeout);
          request_begun_ = deadline_ - timeout;
          phase_ = phase::headers;
        }
      } else {
        set_deadline(state_.opts.body_timeout);  // inactivity: extended per read
        if (phase_ != phase::headers && phase_ != phase::body) request_begun_ = deadline_ - state_.opts.body_timeout;
        phase_ = phase::body;
      }

      auto space = parser_.read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      if (ec) {
        if (timed_out_ && !parser_.idle() && !head_answered_) {
          answer_error(408);
          timed_out_ = false;
          if (co_await flush()) co_await linger();
        }
        // drain() cancelled the wait for a request that has just arrived.
        if (ec == asio::error::operation_aborted && !timed_out_ && state_.draining && request_pending()) continue;
        co_return;
      }
      parser_.commit(n);
      state_.count_bytes(&worker_cell::bytes_in, n);
    }
  }

  // Calls the handler and appends (or, streaming, writes) its response;
  // returns true when the connection must close after it.
  template <class Handler>
  asio::awaitable<bool> answer(Handler& handler, request& req) {
    clock::time_point started = begin_answer();
    bool close = false;
    if constexpr (stream_handler<Handler>)
      close = co_await answer_streaming(handler, req);
    else
      close = co_await answer_whole(handler, req);
    end_answer(started);
    co_return close;
  }

  // answer() for a handler that answers at once, without a coroutine.
  template <class Handler>
  bool answer_now(Handler& handler, const request& req) {
    clock::time_point started = begin_answer();
    bool close = false;
    try {
      if constexpr (std::is_same_v<std::invoke_result_t<Handler&, const request&>, response>) {
        close = settle(handler(req), req);  // a prvalue: its body can be moved, not copied
      } else {
        const response& res = handler(req);  // a reference, or a type convertible to response
        close = settle(res, req);
      }
    } catch (...) {
      log_handler_exception();
      close = settle_failed(req);
    }
    end_answer(started);
    return close;
  }

  template <class Handler>
  asio::awaitable<bool> answer_whole(Handler& handler, request& req) {
    response res;
    try {
      res = co_await handler(req);
    } catch (...) {
      log_handler_exception();
      co_return settle_failed(req);
    }
    co_return settle(std::move(res), req);
  }

  clock::time_point begin_answer() noexcept {
    busy_ = true;
    phase_ = phase::busy;
    no_deadline();
    status_ = 500;
    return clock::now();
  }

  void end_answer(clock::time_point started) noexcept {
    busy_ = false;
    state_.count_request(status_, started);
  }

  // Appends the handler's response, or a 500 in its place when its status is
  // not a final one; true when the connection closes after it.
  template <class Response>
  bool settle(Response&& res, const request& req) {
    if (is_final_status(res.status)) return append_response(std::forward<Response>(res), req, false);
    log_line("worker", "handler returned status " + std::to_string(res.status) +
                           " (a final status must be 200..999); answered 500");
    return settle_failed(req);
  }

  bool settle_failed(const request& req) {
    return append_response(response::text("Internal Server Error\n", 500), req, false);
  }

  // Logs the exception being handled (call from a catch block).
  static void log_handler_exception() noexcept {
    try {
      throw;
    } catch (const std::exception& e) {
      log_line("worker", std::string("handler threw: ") + e.what() + "; answered 500");
    } catch (...) {
      log_line("worker", "handler threw a non-standard exception; answered 500");
    }
  }

  template <class Handler>
  asio::awaitable<bool> answer_streaming(Handler& handler, request& req) {
    stream_ = stream_state{};
    parser_.set_body_source(this);
    response_stream out(*this);
    int refused = 0;
    bool failed = false;
    try {
      co_await handler(req, out);
    } catch (const http_error& e) {
      refused = e.status();
    } catch (const std::exception& e) {
      failed = true;
      if (!stream_.lost)
        log_line("worker", std::string("handler threw: ") + e.what() +
                               (stream_.started ? "; response cut short" : "; answered 500"));
    } catch (...) {
      failed = true;
      log_line("worker", std::string("handler threw a non-standard exception") +
                             (stream_.started ? "; response cut short" : "; answered 500"));
    }
    if (stream_.lost) {
      lost_ = true;
      co_return true;
    }
    if (!stream_.started) {
      if (refused != 0) {
        status_ = refused;
        serialize_error(out_, refused, state_.dates.line(), framing{.head = req.method() == "HEAD", .close = true});
        co_return true;
      }
      if (!failed) log_line("worker", "streaming handler returned without a response; answered 500");
      co_return append_response(response::text("Internal Server Error\n", 500), req, body_forces_close());
    }
    if (refused != 0 || failed) {
      // The status line is out: all we can do is cut the body short, which
      // the client sees as an incomplete response.
      co_return true;
    }
    if (!stream_.finished) {
      stream_.finished = true;
      if (stream_.chunked) out_ += last_chunk;  // sent with the next batch
    }
    co_return stream_.close || parser_.failed();
  }

  // An unknown method: 501, and the connection goes on.
  bool answer_refused(const request& req) {
    bool close = !req.keep_alive() || state_.draining;
    serialize_error(out_, parser_.error_status(), state_.dates.line(),
                    framing{.close = close, .keep_alive_10 = !close && req.version_minor() == 0});
    state_.count_request(parser_.error_status(), clock::now());
    return close;
  }

  // The server's own answer to input it refuses (400, 408, 413, 414, 431,
  // 501, 505, ...), after which the connection closes; counted like a
  // handler's response, timed from the request's first read when it spanned
  // several.
  void answer_error(int status) {
    serialize_error(out_, status, state_.dates.line(), framing{.head = parser_.head_request(), .close = true});
    bool spanned = phase_ == phase::headers || phase_ == phase::body;
    state_.count_request(status, spanned ? request_begun_ : clock::now());
  }

  // Appends a complete response to `req`; true when the connection closes
  // after it. A large body is not copied into the output buffer: it goes to
  // body_out_ (moved there when `res` is an rvalue) and leaves with the
  // buffered head in one gathered write.
  template <class Response>
  bool append_response(Response&& res, const request& req, bool must_close) {
    status_ = res.status;
    bool close = must_close || !req.keep_alive() || state_.draining || wants_close(res);
    framing f;
    f.head = req.method() == "HEAD";
    f.close = close;
    f.keep_alive_10 = !close && req.version_minor() == 0;
    if (res.body.size() < large_body || f.head || !status_has_body(res.status)) {
      serialize(out_, res, f, state_.dates.line());
      return close;
    }
    serialize_head(out_, res.status, res.headers, f, state_.dates.line(), res.body.size());
    if constexpr (std::is_rvalue_reference_v<Response&&> && !std::is_const_v<std::remove_reference_t<Response>>)
      body_out_ = std::move(res.body);
    else
      body_out_ = res.body;
    return close;
  }

  // True when bytes of a next request wait in the socket.
  bool request_pending() {
    asio::error_code ec;
    return socket_.available(ec) != 0 && !ec;
  }

  static constexpr bool is_final_status(int status) noexcept { return status >= 200 && status <= 999; }

  // True when the connection cannot carry another request after the current
  // response: the body was refused, or the client still waits for
  // "100 Continue" before sending a body nobody read, so what comes next is
  // unknowable (RFC 9110 §10.1.1).
  bool body_forces_close() const noexcept { return parser_.failed() || parser_.continue_due(); }

  // --- body_source: a streaming handler reads its request body -------------

  asio::awaitable<std::string_view> read_some() override {
    for (;;) {
      switch (parser_.next()) {
        case parse_state::body: co_return parser_.body_piece();
        case parse_state::error:
          throw http_error(parser_.error_status(),
                           "cluster: request body refused with status " + std::to_string(parser_.error_status()));
        case parse_state::need_more: break;
        default: co_return std::string_view{};  // the body is over
      }
      if (parser_.continue_due() && !stream_.started) {
        // The handler asks for the body: now the client may send it.
        out_ += continue_response;
        parser_.continue_sent();
        if (!co_await flush()) {
          stream_.lost = true;
          throw http_error(400, "cluster: the connection was lost");
        }
      }
      if (eof_) throw http_error(400, "cluster: the client closed the connection before the end of the body");
      set_deadline(state_.opts.body_timeout);
      phase_ = phase::body;
      auto space = parser_.read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      no_deadline();
      phase_ = phase::busy;
      if (ec) {
        if (timed_out_) {
          timed_out_ = false;
          throw http_error(408, "cluster: the request body stalled for longer than body_timeout");
        }
        if (ec == asio::error::eof)
          eof_ = true;
        else
          stream_.lost = true;
        throw http_error(400, "cluster: the client closed the connection before the end of the body");
      }
      parser_.commit(n);
      state_.count_bytes(&worker_cell::bytes_in, n);
    }
  }

  asio::awaitable<std::string_view> read_body() override {
    std::string_view whole = parser_.current().body();
    for (;;) {
      std::string_view piece = co_await read_some();
      if (piece.empty()) break;
      whole = parser_.keep_body(piece);
    }
    co_return whole;
  }

  // --- connection_ends: the request's peer() and local() --------------------

  endpoint peer() const noexcept override {
    if (!peer_known_) {
      peer_ = socket_address(::getpeername);
      peer_known_ = true;
    }
    return peer_;
  }

  endpoint local() const noexcept override { return socket_address(::getsockname); }

  // getpeername or getsockname of the socket; empty for a socket type
  // without a descriptor (the in-memory one of the tests and the fuzzer).
  endpoint socket_address(int (*query)(int, sockaddr*, socklen_t*)) const noexcept {
    if constexpr (requires(Socket& s) { s.native_handle(); }) {
      sockaddr_storage address{};
      socklen_t length = sizeof address;
      auto& socket = const_cast<Socket&>(socket_);  // native_handle() is not const in Asio
      if (query(socket.native_handle(), reinterpret_cast<sockaddr*>(&address), &length) == 0)
        return endpoint::from(reinterpret_cast<const sockaddr*>(&address), length);
    }
    return {};
  }

  // --- stream_sink: a streaming handler writes its response ---------------

  asio::awaitable<void> stream_start(response head) override {
    if (stream_.started) throw std::logic_error("cluster::response_stream::start: the response has already started");
    check_status(head.status, "start");
    const request& req = parser_.current();
    bool is_head = req.method() == "HEAD";
    bool body_allowed = status_has_body(head.status);
    framing f;
    f.head = is_head;
    f.close = !req.keep_alive() || state_.draining || wants_close(head) || parser_.failed();
    if (req.version_minor() >= 1) {
      f.body = body_framing::chunked;
    } else {
      // HTTP/1.0 has no chunked coding (RFC 9112 §7): the body runs until the
      // connection closes.
      f.body = body_framing::close;
      if (body_allowed && !is_head) f.close = true;
    }
    f.keep_alive_10 = !f.close && req.version_minor() == 0;
    // A handler that starts streaming before reading the body means to read
    // it: let a client waiting for "100 Continue" send it.
    if (parser_.continue_due()) {
      out_ += continue_response;
      parser_.continue_sent();
    }
    serialize_head(out_, head.status, head.headers, f, state_.dates.line(), 0);
    status_ = head.status;
    stream_.started = true;
    stream_.head = is_head;
    stream_.no_body = is_head || !body_allowed;
    stream_.chunked = f.body == body_framing::chunked && !stream_.no_body;
    stream_.close = f.close;
    // Sent at once: the client of an event stream wants to see it begin.
    co_await write_piece(head.body);
  }

  asio::awaitable<void> stream_write(std::string_view data) override {
    if (!stream_.started) {
      // A named response, not a temporary: g++ 12 mis-destroys a prvalue
      // passed by value to a coroutine inside co_await.
      response defaults;
      co_await stream_start(std::move(defaults));
    }
    if (stream_.finished) throw std::logic_error("cluster::response_stream::write: the response is finished");
    if (stream_.no_body && !stream_.head && !data.empty())
      throw std::logic_error("cluster::response_stream::write: a 204 or 304 response has no body");
    co_await write_piece(data);
  }

  asio::awaitable<void> stream_finish() override {
    if (!stream_.started) {
      response empty;  // named: see stream_write()
      co_await stream_send(std::move(empty));
      co_return;
    }
    if (stream_.finished) co_return;
    stream_.finished = true;
    if (stream_.chunked) out_ += last_chunk;
    co_await write_piece({});
  }

  asio::awaitable<void> stream_send(response res) override {
    if (stream_.started) throw std::logic_error("cluster::response_stream::send: the response has already started");
    check_status(res.status, "send");
    stream_.started = stream_.finished = true;
    stream_.close = append_response(std::move(res), parser_.current(), body_forces_close());
    co_await write_piece({});
  }

  bool stream_started() const noexcept override { return stream_.started; }

  static void check_status(int status, const char* operation) {
    if (!is_final_status(status))
      throw std::invalid_argument(std::string("cluster::response_stream::") + operation + ": status " +
                                  std::to_string(status) + " is not a final status (200..999)");
  }

  // Writes what out_ holds and then `data` as the next piece of the stream's
  // body, in one gathered write; throws when the client is gone.
  asio::awaitable<void> write_piece(std::string_view data) {
    if (stream_.lost) throw std::system_error(asio::error::broken_pipe, "cluster::response_stream: the client is gone");
    std::array<asio::const_buffer, 5> buffers;
    std::size_t count = 0;
    char size_line[24];
    if (!out_.empty()) buffers[count++] = asio::buffer(out_);
    if (!body_out_.empty()) buffers[count++] = asio::buffer(body_out_);
    if (!data.empty() && !stream_.no_body) {
      if (stream_.chunked) buffers[count++] = asio::buffer(size_line, chunk_size_line(size_line, data.size()));
      buffers[count++] = asio::buffer(data);
      if (stream_.chunked) buffers[count++] = asio::buffer("\r\n", 2);
    }
    if (count == 0) co_return;
    asio::error_code ec = co_await write_all(std::span<const asio::const_buffer>(buffers.data(), count));
    out_.clear();
    body_out_ = std::string();
    no_deadline();
    phase_ = phase::busy;
    if (ec) {
      stream_.lost = true;
      throw std::system_error(ec, "cluster::response_stream: the client is gone");
    }
  }

  // --- I/O -----------------------------------------------------------------

  // Writes every byte of `buffers`. The write timeout limits a stall, not
  // the whole transfer: every completed write moves the deadline, so a slow
  // reader that keeps reading is never cut off.
  template <class Buffers>
  asio::awaitable<asio::error_code> write_all(const Buffers& buffers) {
    phase_ = phase::writing;
    auto progress = [this](const asio::error_code& error, std::size_t) -> std::size_t {
      if (error) return 0;
      set_deadline(state_.opts.write_timeout);
      return max_write;
    };
    auto [ec, n] = co_await asio::async_write(socket_, buffers, progress, use_tuple);
    state_.count_bytes(&worker_cell::bytes_out, n);
    if (ec && timed_out_) {
      timed_out_ = false;
      ec = asio::error::timed_out;
    }
    co_return ec;
  }

  // Writes the output buffer now if the socket takes all of it (the usual
  // case: no coroutine, no trip through the reactor); false when bytes are
  // left for flush(), which also reports an error.
  bool write_now() {
    if (!body_out_.empty()) return false;  // large: written by flush(), gathered
    asio::error_code ec;
    std::size_t n = socket_.write_some(asio::buffer(out_), ec);
    if (ec) return false;
    state_.count_bytes(&worker_cell::bytes_out, n);
    if (n == out_.size()) {
      out_.clear();
      return true;
    }
    out_.erase(0, n);
    return false;
  }

  // Writes the output buffer; false when the connection is lost.
  asio::awaitable<bool> flush() {
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_), asio::buffer(body_out_)};
    asio::error_code ec = co_await write_all(buffers);
    out_.clear();
    body_out_ = std::string();  // give a large body's memory back at once
    co_return !ec;
  }

  // After a final response: stop sending, then read and discard what the
  // client still sends (e.g. requests pipelined behind the last answer) until
  // it closes or linger_time has passed. Closing with unread input makes the
  // kernel reset the connection and drop the answers the client has not read
  // yet (the "lingering close" of RFC 9112 §9.6); time, not a byte count,
  // bounds the wait, as nginx's lingering_time does.
  asio::awaitable<void> linger() {
    asio::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_send, ec);
    if (ec) co_return;
    // A draining worker is about to exit: a short linger, so that a client
    // that keeps sending cannot hold the stop.
    set_deadline(state_.draining ? drain_grace() * 2 : linger_time);
    phase_ = phase::writing;
    // The discarded bytes go to a scratch buffer, never through the parser:
    // after an error its buffer holds a refused message (possibly at its
    // size limit) whose state must not be touched again.
    std::size_t discarded = 0;
    while (discarded < linger_bytes && !eof_ && !timed_out_) {
      std::span<char> sink = discard_buffer();
      auto [rec, n] = co_await socket_.async_read_some(asio::buffer(sink.data(), sink.size()), use_tuple);
      if (rec || n == 0) break;
      discarded += n;
    }
  }

  // Where lingering reads put what they throw away: one buffer per thread
  // (a worker or the master runs one), shared by its connections, since
  // nobody reads what lands there.
  static std::span<char> discard_buffer() noexcept {
    static thread_local std::array<char, 16 * 1024> sink;
    return sink;
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
    timer_.async_wait([self = this->shared_from_this()](const asio::error_code& ec) { self->on_timer(ec); });
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
  // A response body this large is written from its own storage, not copied.
  static constexpr std::size_t large_body = 16 * 1024;
  static constexpr std::size_t max_write = 64 * 1024;                 // per write(2), as asio::transfer_all
  static constexpr std::size_t linger_bytes = std::size_t{64} << 20;  // a safety net; time is the bound
  static constexpr std::chrono::milliseconds linger_time{2000};
  // How long a draining connection waits for a next request before closing.
  std::chrono::milliseconds drain_grace() const { return std::min(std::chrono::milliseconds(250), state_.opts.idle_timeout); }

  Socket socket_;
  asio::steady_timer timer_;
  server_state& state_;
  request_parser parser_;
  std::string out_;
  std::string body_out_;  // a large body that follows out_ on the wire
  clock::time_point deadline_ = clock::time_point::max();
  clock::time_point armed_ = clock::time_point::max();
  phase phase_ = phase::idle;
  stream_state stream_;
  clock::time_point request_begun_{};  // first read of a request that spans several
  mutable endpoint peer_;              // cached by peer()
  mutable bool peer_known_ = false;
  bool busy_ = false;
  int status_ = 0;  // of the response being answered, for the metrics
  bool timed_out_ = false;
  bool head_answered_ = false;  // streaming: the current message was answered at its head
  bool lost_ = false;           // the client is gone: stop at once
  bool eof_ = false;            // the client has half-closed
};

/// A worker's connection: TCP.
using connection = basic_connection<asio::ip::tcp::socket>;

}  // namespace cluster::detail
