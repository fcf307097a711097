// One HTTP/1.1 connection as read → parse → dispatch → write: a coroutine
// reads into the request parser, answers each parsed request in order by
// calling the handler (dispatch.hpp), and writes the answers of a pipelined
// batch in one write (response_writer.hpp), while the deadline watchdog
// enforces the timeouts. A streaming handler reads its body through the
// connection as it goes.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/deadline_watchdog.hpp>
#include <cluster/detail/dispatch.hpp>
#include <cluster/detail/request_parser.hpp>
#include <cluster/detail/response_writer.hpp>
#include <cluster/detail/server_state.hpp>
#include <cluster/endpoint.hpp>
#include <cluster/handler.hpp>
#include <cluster/request.hpp>
#include <cluster/router.hpp>

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace cluster::detail {

/// True for a cluster::router, which the connection asks per request how
/// it answers (a plain route without a coroutine, like a plain handler).
template <class Handler>
inline constexpr bool is_router = std::is_same_v<std::remove_cv_t<Handler>, router>;

/// One HTTP/1.1 connection over a `Socket` (asio::ip::tcp::socket in a
/// worker; an in-memory stream in the fuzzer and the unit tests).
template <class Socket>
class basic_connection final : public open_connection,
                               public std::enable_shared_from_this<basic_connection<Socket>>,
                               private body_source,
                               private connection_ends {
 public:
  basic_connection(Socket socket, server_state& state)
      : socket_(std::move(socket)),
        state_(state),
        parser_(state.opts),
        watchdog_(socket_, state, *this),
        writer_(socket_, watchdog_, state, parser_) {
    parser_.set_connection_ends(this);
    state_.opened(*this);
  }

  ~basic_connection() { state_.closed(*this); }

  basic_connection(const basic_connection&) = delete;
  basic_connection& operator=(const basic_connection&) = delete;

  /// Serves the connection until it closes.
  template <class Handler>
  static asio::awaitable<void> serve(std::shared_ptr<basic_connection> self, Handler& handler) {
    co_await self->run(handler);
    self->close();
  }

  /// The socket's descriptor (a forked child closes inherited ones); -1 for
  /// a socket without one.
  int native_handle() noexcept override {
    if constexpr (requires(Socket& s) { s.native_handle(); })
      return socket_.native_handle();
    else
      return -1;
  }

  /// Asks the connection to finish: one waiting for its next request closes
  /// after a short grace; one reading a request, running a handler or
  /// writing answers closes after its current response (which then says
  /// "Connection: close"). See deadline_watchdog::drain().
  void drain() override { watchdog_.drain(); }

 private:
  using watchdog = deadline_watchdog<Socket, basic_connection>;

  template <class Handler>
  asio::awaitable<void> run(Handler& handler) {
    if constexpr (is_router<Handler>)
      parser_.set_streaming(route_access::streams(handler));  // then every request comes at its head
    else
      parser_.set_streaming(stream_handler<Handler>);
    // For write_now(); asynchronous operations are not affected.
    asio::error_code ignored;
    socket_.non_blocking(true, ignored);
    for (;;) {
      // Parse and answer what the last read completed.
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
            if (writer_.lost()) co_return;
            head_answered_ = true;
            parser_.skip_body();  // what the handler left unread is dropped
            break;
          case parse_state::message:
            if constexpr (is_router<Handler>) {
              if (!head_answered_) {
                request& req = parser_.current();
                if (route_access::prepare(handler, req) == answer_shape::at_once) {
                  route_access::at_once plain{handler};
                  close = answer_now(plain, req);  // no coroutine frame, as for a plain handler
                } else {
                  route_access::whole coroutine{handler};
                  close = co_await answer(coroutine, req);
                }
              }
            } else if constexpr (sync_handler<Handler> && !async_handler<Handler> && !stream_handler<Handler>)
              close = answer_now(handler, parser_.current());  // no coroutine frame
            else if (!head_answered_)
              close = co_await answer(handler, parser_.current());
            if (writer_.lost()) co_return;
            head_answered_ = false;
            parser_.consume();
            break;
          case parse_state::body:
          case parse_state::need_more: break;
        }
        // A large body goes out before the next answer is appended after it.
        if (!close && writer_.should_flush() && !writer_.write_now() && !co_await writer_.flush()) co_return;
      }
      // The body is read before the handler runs: ask the client for it.
      if (!close && !head_answered_) writer_.continue_if_due();
      // Write the batch.
      if (!writer_.empty() && !writer_.write_now() && !co_await writer_.flush()) co_return;
      if (close) {
        co_await linger();
        co_return;
      }
      // Read. Draining, requests the client has already sent are still
      // answered (the next answer says "Connection: close"): closing on them
      // would reset the connection under answers the client has yet to read.
      if (parser_.idle())
        watchdog_.wait_for(waiting_for::request);
      else if (!parser_.headers_done())
        watchdog_.wait_for(waiting_for::headers);
      else
        watchdog_.wait_for(waiting_for::body);
      auto space = parser_.read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      if (ec) {
        if (watchdog_.expired() && !parser_.idle() && !head_answered_) {
          answer_error(408);
          watchdog_.take_expired();
          if (co_await writer_.flush()) co_await linger();
        }
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
    if constexpr (stream_handler<Handler>) {
      parser_.set_body_source(this);
      close = co_await answer_streaming(handler, req, writer_);
    } else {
      close = co_await answer_whole(handler, req, writer_);
    }
    end_answer(started);
    co_return close;
  }

  // answer() for a handler that answers at once, without a coroutine.
  template <class Handler>
  bool answer_now(Handler& handler, const request& req) {
    clock::time_point started = begin_answer();
    bool close = detail::answer_now(handler, req, writer_);
    end_answer(started);
    return close;
  }

  clock::time_point begin_answer() noexcept {
    watchdog_.wait_for(waiting_for::handler);
    writer_.begin_answer();
    return clock::now();
  }

  void end_answer(clock::time_point started) noexcept { state_.count_request(writer_.status(), started); }

  // An unknown method: 501, and the connection goes on.
  bool answer_refused(const request& req) {
    bool close = writer_.append_refusal(req, parser_.error_status());
    state_.count_request(parser_.error_status(), clock::now());
    return close;
  }

  // The server's own answer to input it refuses (400, 408, 413, 414, 431,
  // 501, 505, ...), after which the connection closes; counted like a
  // handler's response, timed from the request's first read when it spanned
  // several.
  void answer_error(int status) {
    writer_.append_error(status);
    waiting_for w = watchdog_.waiting();
    bool spanned = w == waiting_for::headers || w == waiting_for::body;
    state_.count_request(status, spanned ? watchdog_.request_began() : clock::now());
  }

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
      // The handler asks for the body: now the client may send it.
      if (!writer_.stream_started() && writer_.continue_if_due() && !co_await writer_.flush()) {
        writer_.client_gone();
        throw http_error(400, "cluster: the connection was lost");
      }
      if (eof_) throw http_error(400, "cluster: the client closed the connection before the end of the body");
      watchdog_.wait_for(waiting_for::body);
      auto space = parser_.read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      watchdog_.wait_for(waiting_for::handler);
      if (ec) {
        if (watchdog_.take_expired())
          throw http_error(408, "cluster: the request body stalled for longer than body_timeout");
        if (ec == asio::error::eof)
          eof_ = true;
        else
          writer_.client_gone();
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

  // --- the end --------------------------------------------------------------

  // After a final response: stop sending, then read and discard what the
  // client still sends (e.g. requests pipelined behind the last answer) until
  // it closes or the linger deadline passed. Closing with unread input makes
  // the kernel reset the connection and drop the answers the client has not
  // read yet (the "lingering close" of RFC 9112 §9.6); time, not a byte
  // count, bounds the wait, as nginx's lingering_time does.
  asio::awaitable<void> linger() {
    asio::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_send, ec);
    if (ec) co_return;
    watchdog_.wait_for(waiting_for::linger);
    // The discarded bytes go to a scratch buffer, never through the parser:
    // after an error its buffer holds a refused message (possibly at its
    // size limit) whose state must not be touched again.
    std::size_t discarded = 0;
    while (discarded < linger_bytes && !eof_ && !watchdog_.expired()) {
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
    watchdog_.stop();
    socket_.close(ignored);
  }

  static constexpr std::size_t linger_bytes = std::size_t{64} << 20;  // a safety net; time is the bound

  Socket socket_;
  server_state& state_;
  request_parser parser_;
  watchdog watchdog_;
  response_writer<Socket, watchdog> writer_;
  mutable endpoint peer_;  // cached by peer()
  mutable bool peer_known_ = false;
  bool head_answered_ = false;  // streaming: the current message was answered at its head
  bool eof_ = false;            // the client has half-closed
};

/// A worker's connection: TCP.
using connection = basic_connection<asio::ip::tcp::socket>;

}  // namespace cluster::detail
