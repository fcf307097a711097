// One HTTP/1.1 connection as read → parse → dispatch → write: a coroutine
// reads into the request parser, answers each parsed request in order by
// calling the handler (dispatch.hpp), and writes the answers of a pipelined
// batch in one write (response_writer.hpp), while the deadline watchdog
// enforces the timeouts. A streaming handler reads its body through the
// connection as it goes. A keep-alive connection left idle gives back its
// buffers and its coroutine until the client sends again (parking).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/deadline_watchdog.hpp>
#include <cluster/detail/dispatch.hpp>
#include <cluster/detail/handler_slot.hpp>
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
#include <cstdint>
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
      : socket_(std::move(socket)), state_(state), watchdog_(socket_, state, *this) {
    state_.opened(*this);
  }

  ~basic_connection() { state_.closed(*this); }

  /// A new connection on `socket`, in `state`'s connection memory.
  static std::shared_ptr<basic_connection> open(Socket socket, server_state& state) {
    return std::allocate_shared<basic_connection>(pool_allocator<basic_connection>(state.connection_memory),
                                                  std::move(socket), state);
  }

  basic_connection(const basic_connection&) = delete;
  basic_connection& operator=(const basic_connection&) = delete;

  /// Serves the connection until it closes, or until it parks (see
  /// check_idle()): then a wait for the client's next bytes holds the
  /// connection, and serves it again when they come.
  template <class Handler>
  static asio::awaitable<void> serve(std::shared_ptr<basic_connection> self, Handler& handler) {
    basic_connection& c = *self;
    if (co_await c.run(handler) == run_end::parked)
      c.park(std::move(self), handler);
    else
      c.close();
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

  /// Parks the connection if it has waited for its next request since
  /// before `idle_before`: its session (parser, input buffer, output
  /// buffer) is freed and its coroutine ends, leaving a few hundred bytes, a
  /// wait for readability and its timer, both of whose operations live in
  /// the connection (nginx frees an idle keep-alive connection's buffers
  /// too). Parking happens only after idleness spanning a tick of the owner,
  /// so a connection in use keeps its buffers and allocates nothing per
  /// request. The timer keeps the idle deadline (and a drain's grace) as for
  /// any connection: it cancels the wait, and wake() closes.
  bool check_idle(clock::time_point idle_before) noexcept override {
    if constexpr (parkable) {
      if (!session_ || park_due_ || watchdog_.waiting() != waiting_for::request ||
          watchdog_.waiting_since() >= idle_before || !session_->parser.idle() || !session_->writer.empty())
        return false;
      // The coroutine waits in a read (waiting for a request is the last
      // thing it does before reading): cancel it, and run() parks.
      park_due_ = true;
      asio::error_code ignored;
      socket_.cancel(ignored);
      return true;
    } else {
      (void)idle_before;
      return false;
    }
  }

 private:
  using watchdog = deadline_watchdog<Socket, basic_connection>;
  using writer_type = response_writer<Socket, watchdog>;

  /// Sockets that can wait for readability without a buffer (TCP) park;
  /// the in-memory sockets of the tests and the fuzzer never do.
  static constexpr bool parkable = requires(Socket& s) {
    s.async_wait(asio::socket_base::wait_read, [](const asio::error_code&) {});
  };

  /// How run() ended: the connection is done, or it parked.
  enum class run_end : std::uint8_t { closed, parked };

  // What a connection needs only while it works on requests: the parser
  // (with its input buffer and the request) and the response writer (with
  // its output buffer). A parked connection has none.
  struct session {
    session(Socket& socket, watchdog& w, server_state& state)
        : parser(state.opts), writer(socket, w, state, parser) {}
    request_parser parser;
    writer_type writer;
    endpoint peer;  // cached by peer()
    bool peer_known = false;
  };

  // Makes the session, for a new connection or one that wakes.
  template <class Handler>
  void open_session(Handler& handler) {
    session_ = std::make_unique<session>(socket_, watchdog_, state_);
    request_parser& parser = session_->parser;
    parser.set_connection_ends(this);
    if constexpr (is_router<Handler>)
      parser.set_streaming(route_access::streams(handler));  // then every request comes at its head
    else
      parser.set_streaming(stream_handler<Handler>);
  }

  // The session is given back and the coroutine has ended: from now on the
  // connection is its socket, its timer (the idle deadline, or a drain's
  // grace) and a wait for the next bytes.
  template <class Handler>
  void park(std::shared_ptr<basic_connection> self, Handler& handler) {
    if constexpr (parkable) {
      session_.reset();
      // The wait's operation lives in the connection (handler_slot.hpp): a
      // parked connection leaves nothing in the heap but what Asio keeps
      // per socket.
      socket_.async_wait(asio::socket_base::wait_read,
                         in_slot(wake_slot_, [self = std::move(self), &handler](const asio::error_code& ec) mutable {
                           basic_connection& c = *self;
                           c.wake(std::move(self), handler, ec);
                         }));
    } else {
      (void)self;
      (void)handler;
    }
  }

  template <class Handler>
  void wake(std::shared_ptr<basic_connection> self, Handler& handler, const asio::error_code& ec) {
    // Cancelled: the idle deadline passed or the server drains; as for an
    // idle connection that was not parked, it closes without an answer.
    if (ec || !socket_.is_open()) {
      close();
      return;
    }
    auto executor = socket_.get_executor();
    asio::co_spawn(executor, serve(std::move(self), handler), asio::detached);
  }

  template <class Handler>
  asio::awaitable<run_end> run(Handler& handler) {
    if (!session_) {
      open_session(handler);
      // For write_now(); asynchronous operations are not affected.
      asio::error_code ignored;
      socket_.non_blocking(true, ignored);
    }
    for (;;) {
      // Parse and answer what the last read completed.
      bool close = false;
      while (!close) {
        parse_state st = parser().next();
        if (st == parse_state::need_more) break;
        switch (st) {
          case parse_state::error:
            // After a streamed answer the response is out; nothing more to say.
            if (!head_answered_) answer_error(parser().error_status());
            close = true;
            break;
          case parse_state::refused:
            close = answer_refused(parser().current());
            parser().consume();
            break;
          case parse_state::head:  // streaming: answered before its body is read
            if constexpr (stream_handler<Handler>) close = co_await answer(handler, parser().current());
            if (writer().lost()) co_return run_end::closed;
            head_answered_ = true;
            parser().skip_body();  // what the handler left unread is dropped
            break;
          case parse_state::message:
            if constexpr (is_router<Handler>) {
              if (!head_answered_) {
                request& req = parser().current();
                if (route_access::prepare(handler, req) == answer_shape::at_once) {
                  route_access::at_once plain{handler};
                  close = answer_now(plain, req);  // no coroutine frame, as for a plain handler
                } else {
                  route_access::whole coroutine{handler};
                  close = co_await answer(coroutine, req);
                }
              }
            } else if constexpr (sync_handler<Handler> && !async_handler<Handler> && !stream_handler<Handler>)
              close = answer_now(handler, parser().current());  // no coroutine frame
            else if (!head_answered_)
              close = co_await answer(handler, parser().current());
            if (writer().lost()) co_return run_end::closed;
            head_answered_ = false;
            parser().consume();
            break;
          case parse_state::body:
          case parse_state::need_more: break;
        }
        // A large body goes out before the next answer is appended after it.
        if (!close && writer().should_flush() && !writer().write_now() && !co_await writer().flush())
          co_return run_end::closed;
      }
      // The body is read before the handler runs: ask the client for it.
      if (!close && !head_answered_) writer().continue_if_due();
      // Write the batch.
      if (!writer().empty() && !writer().write_now() && !co_await writer().flush()) co_return run_end::closed;
      if (close) {
        co_await linger();
        co_return run_end::closed;
      }
      // Read. Draining, requests the client has already sent are still
      // answered (the next answer says "Connection: close"): closing on them
      // would reset the connection under answers the client has yet to read.
      if (parser().idle())
        watchdog_.wait_for(waiting_for::request);
      else if (!parser().headers_done())
        watchdog_.wait_for(waiting_for::headers);
      else
        watchdog_.wait_for(waiting_for::body);
      auto space = parser().read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      bool park = std::exchange(park_due_, false);
      if (ec) {
        if (park && ec == asio::error::operation_aborted && !watchdog_.expired() && parser().idle())
          co_return run_end::parked;
        if (watchdog_.expired() && !parser().idle() && !head_answered_) {
          answer_error(408);
          watchdog_.take_expired();
          if (co_await writer().flush()) co_await linger();
        }
        co_return run_end::closed;
      }
      parser().commit(n);
      state_.count_bytes(&worker_cell::bytes_in, n);
    }
  }

  // The session's parts; only while the connection has a session.
  request_parser& parser() noexcept { return session_->parser; }
  writer_type& writer() noexcept { return session_->writer; }

  // Calls the handler and appends (or, streaming, writes) its response;
  // returns true when the connection must close after it.
  template <class Handler>
  asio::awaitable<bool> answer(Handler& handler, request& req) {
    clock::time_point started = begin_answer();
    bool close = false;
    if constexpr (stream_handler<Handler>) {
      parser().set_body_source(this);
      close = co_await answer_streaming(handler, req, writer());
    } else {
      close = co_await answer_whole(handler, req, writer());
    }
    end_answer(started);
    co_return close;
  }

  // answer() for a handler that answers at once, without a coroutine.
  template <class Handler>
  bool answer_now(Handler& handler, const request& req) {
    clock::time_point started = begin_answer();
    bool close = detail::answer_now(handler, req, writer());
    end_answer(started);
    return close;
  }

  clock::time_point begin_answer() noexcept {
    watchdog_.wait_for(waiting_for::handler);
    writer().begin_answer();
    return clock::now();
  }

  void end_answer(clock::time_point started) noexcept { state_.count_request(writer().status(), started); }

  // An unknown method: 501, and the connection goes on.
  bool answer_refused(const request& req) {
    bool close = writer().append_refusal(req, parser().error_status());
    state_.count_request(parser().error_status(), clock::now());
    return close;
  }

  // The server's own answer to input it refuses (400, 408, 413, 414, 431,
  // 501, 505, ...), after which the connection closes; counted like a
  // handler's response, timed from the request's first read when it spanned
  // several.
  void answer_error(int status) {
    writer().append_error(status);
    waiting_for w = watchdog_.waiting();
    bool spanned = w == waiting_for::headers || w == waiting_for::body;
    state_.count_request(status, spanned ? watchdog_.request_began() : clock::now());
  }

  // --- body_source: a streaming handler reads its request body -------------

  asio::awaitable<std::string_view> read_some() override {
    for (;;) {
      switch (parser().next()) {
        case parse_state::body: co_return parser().body_piece();
        case parse_state::error:
          throw http_error(parser().error_status(),
                           "cluster: request body refused with status " + std::to_string(parser().error_status()));
        case parse_state::need_more: break;
        default: co_return std::string_view{};  // the body is over
      }
      // The handler asks for the body: now the client may send it.
      if (!writer().stream_started() && writer().continue_if_due() && !co_await writer().flush()) {
        writer().client_gone();
        throw http_error(400, "cluster: the connection was lost");
      }
      if (eof_) throw http_error(400, "cluster: the client closed the connection before the end of the body");
      watchdog_.wait_for(waiting_for::body);
      auto space = parser().read_space();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), use_tuple);
      watchdog_.wait_for(waiting_for::handler);
      if (ec) {
        if (watchdog_.take_expired())
          throw http_error(408, "cluster: the request body stalled for longer than body_timeout");
        if (ec == asio::error::eof)
          eof_ = true;
        else
          writer().client_gone();
        throw http_error(400, "cluster: the client closed the connection before the end of the body");
      }
      parser().commit(n);
      state_.count_bytes(&worker_cell::bytes_in, n);
    }
  }

  asio::awaitable<std::string_view> read_body() override {
    std::string_view whole = parser().current().body();
    for (;;) {
      std::string_view piece = co_await read_some();
      if (piece.empty()) break;
      whole = parser().keep_body(piece);
    }
    co_return whole;
  }

  // --- connection_ends: the request's peer() and local() --------------------

  endpoint peer() const noexcept override {
    // Asked by requests, which exist only while the connection has a session.
    session& s = *session_;
    if (!s.peer_known) {
      s.peer = socket_address(::getpeername);
      s.peer_known = true;
    }
    return s.peer;
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
  watchdog watchdog_;
  std::unique_ptr<session> session_;  // null while parked
  handler_slot<152> wake_slot_;       // a parked connection's wait for readability
  bool head_answered_ = false;  // streaming: the current message was answered at its head
  bool eof_ = false;            // the client has half-closed
  bool park_due_ = false;       // check_idle() cancelled the read for a request
};

/// A worker's connection: TCP.
using connection = basic_connection<asio::ip::tcp::socket>;

}  // namespace cluster::detail
