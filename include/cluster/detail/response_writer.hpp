// The output side of a connection: the one place that decides how a response
// is framed (Content-Length, chunked or close-delimited; HEAD; Connection:
// close; HTTP/1.0 keep-alive), the one place that sends "100 Continue", the
// output buffer that batches pipelined answers, large bodies written from
// their own storage, flushing, and a streaming handler's response_stream.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/deadline_watchdog.hpp>
#include <cluster/detail/request_parser.hpp>
#include <cluster/detail/serialize.hpp>
#include <cluster/detail/server_state.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace cluster::detail {

/// Writes a connection's responses to `Socket`, in request order.
template <class Socket, class Watchdog>
class response_writer final : public stream_sink {
 public:
  response_writer(Socket& socket, Watchdog& watchdog, server_state& state, request_parser& parser)
      : socket_(socket), watchdog_(watchdog), state_(state), parser_(parser) {}

  response_writer(const response_writer&) = delete;
  response_writer& operator=(const response_writer&) = delete;

  // --- framing: the one place it is decided --------------------------------

  /// How a response with `status` to a request (HEAD or not, HTTP/1.`minor`)
  /// is framed; `close`: the connection closes after it; `streamed`: the
  /// length is unknown (chunked for HTTP/1.1; HTTP/1.0 has no chunked coding,
  /// RFC 9112 §7, so the body runs until the connection closes).
  static framing frame(bool head, int minor, int status, bool close, bool streamed) noexcept {
    framing f;
    f.head = head;
    if (streamed && minor >= 1) {
      f.body = body_framing::chunked;
    } else if (streamed) {
      f.body = body_framing::close;
      if (status_has_body(status) && !head) close = true;
    }
    f.close = close;
    f.keep_alive_10 = !close && minor == 0;  // HTTP/1.0 keeps the connection only when told
    return f;
  }

  /// True when the connection closes after the response to `req`:
  /// `forced`, the client asked, or the server drains or is leaving.
  bool closes_after(const request& req, bool forced) const noexcept {
    return forced || !req.keep_alive() || state_.draining || state_.closing;
  }

  /// True when the connection cannot carry another request after the
  /// current response: the body was refused, or the client still waits for
  /// "100 Continue" before sending a body nobody read, so what comes next is
  /// unknowable (RFC 9110 §10.1.1).
  bool body_forces_close() const noexcept { return parser_.failed() || parser_.continue_due(); }

  // --- whole responses --------------------------------------------------------

  /// Starts the answer to a request: until a response is appended, its
  /// status (for the metrics) is 500.
  void begin_answer() noexcept { status_ = 500; }
  /// The status of the last response appended or started.
  int status() const noexcept { return status_; }

  /// Appends a complete response to `req`; true when the connection closes
  /// after it. A large body is not copied into the output buffer: it goes to
  /// body_out_ (moved there when `res` is an rvalue) and leaves with the
  /// buffered head in one gathered write.
  template <class Response>
  bool append(Response&& res, const request& req, bool forced_close) {
    status_ = res.status;
    bool close = closes_after(req, forced_close) || wants_close(res);
    framing f = frame(req.method() == "HEAD", req.version_minor(), res.status, close, false);
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

  /// Appends the server's own answer with `status` to the request being
  /// parsed (refused input, or a timeout), after which the connection closes.
  void append_error(int status) {
    serialize_error(out_, status, state_.dates.line(), frame(parser_.head_request(), 1, status, true, false));
  }

  /// Appends the server's own answer with `status` to a complete `req` (an
  /// unknown method: 501); true when the connection closes after it.
  bool append_refusal(const request& req, int status) {
    bool close = closes_after(req, false);
    serialize_error(out_, status, state_.dates.line(),
                    frame(req.method() == "HEAD", req.version_minor(), status, close, false));
    return close;
  }

  /// Appends "100 Continue" when the client waits for it before sending the
  /// body (RFC 9110 §15.2.1); true when it did.
  bool continue_if_due() {
    if (!parser_.continue_due()) return false;
    out_ += continue_response;
    parser_.continue_sent();
    return true;
  }

  // --- flushing -------------------------------------------------------------

  /// True when nothing waits to be written.
  bool empty() const noexcept { return out_.empty() && body_out_.empty(); }

  /// True when what is buffered should go out before the next answer is
  /// appended after it (a large body, or a full batch).
  bool should_flush() const noexcept { return out_.size() >= flush_threshold || !body_out_.empty(); }

  /// Writes the output buffer now if the socket takes all of it (the usual
  /// case: no coroutine, no trip through the reactor); false when bytes are
  /// left for flush(), which also reports an error.
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

  /// Writes everything buffered; false when the connection is lost.
  asio::awaitable<bool> flush() {
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_), asio::buffer(body_out_)};
    asio::error_code ec = co_await write_all(buffers);
    out_.clear();
    body_out_ = std::string();  // give a large body's memory back at once
    co_return !ec;
  }

  // --- a streaming handler's response -----------------------------------------

  /// Starts the response of a streaming handler's request.
  void begin_stream() noexcept { stream_ = stream_state{}; }

  /// The client is gone (a write or a read failed): nothing more is written.
  void client_gone() noexcept { lost_ = true; }
  /// True once the client is gone.
  bool lost() const noexcept { return lost_; }

  /// After a streaming handler returned normally: ends a started body (the
  /// last chunk goes with the next batch); true when the connection closes.
  bool end_stream() {
    if (stream_.progress != stream_progress::finished) {
      stream_.progress = stream_progress::finished;
      if (stream_.chunked) out_ += last_chunk;
    }
    return stream_.close || parser_.failed();
  }

  /// A streaming handler refused its request with `status` before its
  /// response started: the server's answer, then close.
  void refuse_stream(const request& req, int status) {
    status_ = status;
    serialize_error(out_, status, state_.dates.line(), frame(req.method() == "HEAD", 1, status, true, false));
  }

  bool stream_started() const noexcept override { return stream_.progress != stream_progress::not_started; }

  asio::awaitable<void> stream_start(response head) override {
    if (stream_started()) throw std::logic_error("cluster::response_stream::start: the response has already started");
    check_status(head.status, "start");
    const request& req = parser_.current();
    bool close = closes_after(req, parser_.failed()) || wants_close(head);
    framing f = frame(req.method() == "HEAD", req.version_minor(), head.status, close, true);
    // A handler that starts streaming before reading the body means to read
    // it: let a client waiting for "100 Continue" send it.
    continue_if_due();
    serialize_head(out_, head.status, head.headers, f, state_.dates.line(), 0);
    status_ = head.status;
    stream_.progress = stream_progress::started;
    stream_.head = f.head;
    stream_.no_body = f.head || !status_has_body(head.status);
    stream_.chunked = f.body == body_framing::chunked && !stream_.no_body;
    stream_.close = f.close;
    // Sent at once: the client of an event stream wants to see it begin.
    co_await write_piece(head.body);
  }

  asio::awaitable<void> stream_write(std::string_view data) override {
    if (!stream_started()) {
      // A named response, not a temporary: g++ 12 mis-destroys a prvalue
      // passed by value to a coroutine inside co_await.
      response defaults;
      co_await stream_start(std::move(defaults));
    }
    if (stream_.progress == stream_progress::finished)
      throw std::logic_error("cluster::response_stream::write: the response is finished");
    if (stream_.no_body && !stream_.head && !data.empty())
      throw std::logic_error("cluster::response_stream::write: a 204 or 304 response has no body");
    co_await write_piece(data);
  }

  asio::awaitable<void> stream_finish() override {
    if (!stream_started()) {
      response empty;  // named: see stream_write()
      co_await stream_send(std::move(empty));
      co_return;
    }
    if (stream_.progress == stream_progress::finished) co_return;
    stream_.progress = stream_progress::finished;
    if (stream_.chunked) out_ += last_chunk;
    co_await write_piece({});
  }

  asio::awaitable<void> stream_send(response res) override {
    if (stream_started()) throw std::logic_error("cluster::response_stream::send: the response has already started");
    check_status(res.status, "send");
    stream_.progress = stream_progress::finished;
    stream_.close = append(std::move(res), parser_.current(), body_forces_close());
    co_await write_piece({});
  }

 private:
  enum class stream_progress : std::uint8_t { not_started, started, finished };

  // The response of a streaming handler, while it is written.
  struct stream_state {
    stream_progress progress = stream_progress::not_started;
    bool chunked = false;  // pieces are framed as chunks
    bool no_body = false;  // HEAD, 204, 304: the header section is the whole response
    bool head = false;     // a HEAD request: pieces are dropped
    bool close = false;    // the connection closes after this response
  };

  static void check_status(int status, const char* operation) {
    if (!is_final_status(status))
      throw std::invalid_argument(std::string("cluster::response_stream::") + operation + ": status " +
                                  std::to_string(status) + " is not a final status (200..999)");
  }

  // Writes what out_ holds and then `data` as the next piece of the stream's
  // body, in one gathered write; throws when the client is gone.
  asio::awaitable<void> write_piece(std::string_view data) {
    if (lost_) throw std::system_error(asio::error::broken_pipe, "cluster::response_stream: the client is gone");
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
    watchdog_.wait_for(waiting_for::handler);
    if (ec) {
      lost_ = true;
      throw std::system_error(ec, "cluster::response_stream: the client is gone");
    }
  }

  // Writes every byte of `buffers`. The write timeout limits a stall, not
  // the whole transfer: every completed write moves the deadline, so a slow
  // reader that keeps reading is never cut off.
  template <class Buffers>
  asio::awaitable<asio::error_code> write_all(const Buffers& buffers) {
    auto progress = [this](const asio::error_code& error, std::size_t) -> std::size_t {
      if (error) return 0;
      watchdog_.wait_for(waiting_for::write);
      return max_write;
    };
    auto [ec, n] = co_await asio::async_write(socket_, buffers, progress, use_tuple);
    state_.count_bytes(&worker_cell::bytes_out, n);
    if (ec && watchdog_.take_expired()) ec = asio::error::timed_out;
    co_return ec;
  }

  static constexpr std::size_t flush_threshold = 64 * 1024;
  // A response body this large is written from its own storage, not copied.
  static constexpr std::size_t large_body = 16 * 1024;
  static constexpr std::size_t max_write = 64 * 1024;  // per write(2), as asio::transfer_all

  Socket& socket_;
  Watchdog& watchdog_;
  server_state& state_;
  request_parser& parser_;
  std::string out_;
  std::string body_out_;  // a large body that follows out_ on the wire
  stream_state stream_;
  int status_ = 0;     // of the response being answered, for the metrics
  bool lost_ = false;  // the client is gone
};

}  // namespace cluster::detail
