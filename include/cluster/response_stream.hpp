// The response of a streaming handler: written in pieces, as they become
// ready, instead of returned whole.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/response.hpp>

#include <string_view>
#include <utility>

namespace cluster {

namespace detail {

/// What a response_stream writes through: its connection.
class stream_sink {
 public:
  virtual asio::awaitable<void> stream_start(response head) = 0;
  virtual asio::awaitable<void> stream_write(std::string_view data) = 0;
  virtual asio::awaitable<void> stream_finish() = 0;
  virtual asio::awaitable<void> stream_send(response res) = 0;
  virtual bool stream_started() const noexcept = 0;

 protected:
  ~stream_sink() = default;
};

}  // namespace detail

/// The response of a streaming handler,
/// `asio::awaitable<void>(cluster::request&, cluster::response_stream&)`.
///
/// Either send() one complete response, or start() a response whose length is
/// not known in advance and write() its body in pieces: HTTP/1.1 clients get
/// it chunked, HTTP/1.0 clients get it unframed and the connection closes
/// after it. Every operation completes once the socket accepted the bytes, so
/// a client that reads slowly slows the handler down instead of making the
/// server buffer; write_timeout still closes a connection whose client stops
/// reading. The response ends when the handler returns (or at finish()).
///
/// Await each operation before starting the next. Writes after the client
/// went away throw std::system_error; an exception escaping the handler after
/// start() cuts the response short (the client sees an incomplete body), one
/// escaping before start() is answered with 500, or with the status of an
/// http_error. A handler that returns without sending anything is a bug,
/// answered with 500 and logged.
class response_stream {
 public:
  /// Made by the connection for each request of a streaming handler.
  explicit response_stream(detail::stream_sink& sink) noexcept : sink_(sink) {}
  response_stream(const response_stream&) = delete;
  response_stream& operator=(const response_stream&) = delete;

  /// Sends the status line and header fields of `head` now (and its body,
  /// if any, as the first piece). Status must be 200..999; the server adds
  /// Date, Transfer-Encoding and Connection. HEAD requests and 204/304
  /// responses get the header section only. Throws std::logic_error when the
  /// response has already started, std::invalid_argument for a bad status
  /// or a file body (send() one), std::system_error when the client is gone.
  asio::awaitable<void> start(response head = {}) { return sink_.stream_start(std::move(head)); }

  /// Writes `data` as the next piece of the body (starting a 200 response
  /// first if start() was not called). `data` must stay valid until the write
  /// completes. Empty pieces are skipped; for HEAD requests the body is
  /// dropped. Throws std::logic_error after finish() or for a 204/304,
  /// std::system_error when the client is gone or write_timeout passed.
  asio::awaitable<void> write(std::string_view data) { return sink_.stream_write(data); }

  /// Ends the body now (the last chunk, or the connection's close for
  /// HTTP/1.0) instead of when the handler returns. A stream that was not
  /// started becomes an empty 200 response. Later calls do nothing.
  asio::awaitable<void> finish() { return sink_.stream_finish(); }

  /// Sends `res` as one complete response, as a non-streaming handler's
  /// return value would be (with Content-Length). Throws std::logic_error
  /// when the response has already started, std::invalid_argument for a bad
  /// status, std::system_error when the client is gone.
  asio::awaitable<void> send(response res) { return sink_.stream_send(std::move(res)); }

  /// True once the status line was sent (by start(), write(), send() or
  /// finish()).
  bool started() const noexcept { return sink_.stream_started(); }

 private:
  detail::stream_sink& sink_;
};

}  // namespace cluster
