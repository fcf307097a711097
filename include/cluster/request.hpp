// The request a handler receives.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/endpoint.hpp>
#include <cluster/headers.hpp>

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace cluster {

/// Thrown by request::read_some() and request::read_body() when the body
/// cannot be received. status() is what the server answers if the handler
/// lets the exception escape before its response has started: 400 (malformed
/// or cut short), 408 (body_timeout passed) or 413 (larger than max_body).
/// The connection is closed after it.
class http_error : public std::runtime_error {
 public:
  http_error(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  /// The HTTP status that describes the failure.
  int status() const noexcept { return status_; }

 private:
  int status_;
};

namespace detail {
class message_builder;

/// Where a streaming handler's request body comes from: its connection.
class body_source {
 public:
  virtual asio::awaitable<std::string_view> read_some() = 0;
  virtual asio::awaitable<std::string_view> read_body() = 0;

 protected:
  ~body_source() = default;
};
/// The two ends of the TCP connection a request came on: its connection.
class connection_ends {
 public:
  virtual endpoint peer() const noexcept = 0;
  virtual endpoint local() const noexcept = 0;

 protected:
  ~connection_ends() = default;
};
}  // namespace detail

/// An HTTP request as seen by a handler. Every view (method, target, headers,
/// body) points into storage owned by the connection and stays valid until the
/// handler's response has been produced; copy what must outlive it.
class request {
 public:
  /// The method token, e.g. "GET".
  std::string_view method() const noexcept { return method_; }
  /// The request-target exactly as received, e.g. "/search?q=x".
  std::string_view target() const noexcept { return target_; }
  /// The target up to (not including) the first '?'; not percent-decoded.
  std::string_view path() const noexcept { return target_.substr(0, target_.find('?')); }
  /// The target after the first '?', or empty; not percent-decoded.
  std::string_view query() const noexcept {
    auto q = target_.find('?');
    return q == std::string_view::npos ? std::string_view{} : target_.substr(q + 1);
  }
  /// HTTP major version (1).
  int version_major() const noexcept { return major_; }
  /// HTTP minor version (0 or 1).
  int version_minor() const noexcept { return minor_; }

  /// Every header field, in the order received, names as sent.
  std::span<const header_field> headers() const noexcept { return headers_; }

  /// The value of the first field called `name` (case-insensitive), or an
  /// empty view when absent.
  std::string_view header(std::string_view name) const noexcept {
    for (const auto& f : headers_)
      if (iequals(f.name, name)) return f.value;
    return {};
  }

  /// True when a field called `name` is present (case-insensitive).
  bool has_header(std::string_view name) const noexcept {
    for (const auto& f : headers_)
      if (iequals(f.name, name)) return true;
    return false;
  }

  /// The request body, de-chunked; empty when there is none. A streaming
  /// handler (see handler.hpp) is called before the body is read: for it,
  /// body() is empty until read_body() completed.
  std::string_view body() const noexcept { return body_; }

  /// The next piece of the body, de-chunked; an empty view once the body is
  /// over (and on every later call). The piece stays valid until the next
  /// read. In a streaming handler the body is read from the connection as
  /// this is awaited, so an upload need not fit in memory: max_body still
  /// applies, body_timeout limits each wait, and a client waiting for
  /// "100 Continue" is sent it first. In other handlers the whole body comes
  /// as one piece. Throws http_error when the body cannot be received.
  asio::awaitable<std::string_view> read_some() {
    if (source_) return source_->read_some();
    return buffered_piece();
  }

  /// Reads the rest of the body (at most max_body bytes in all) and returns
  /// it; body() returns it too from then on. Throws http_error like
  /// read_some().
  asio::awaitable<std::string_view> read_body() {
    if (source_) return source_->read_body();
    return buffered_body();
  }

  /// Moves the buffered body out of the connection's storage (no copy: a
  /// large upload can become a response body or be kept without costing its
  /// size twice); body() is empty afterwards. In a streaming handler, call
  /// it after read_body().
  std::string take_body() noexcept {
    body_ = {};
    return body_store_ ? std::move(*body_store_) : std::string();
  }

  /// The client: the address and port at the other end of the connection.
  /// Behind a proxy or a balancer this is the proxy; the client's own
  /// address is then in a field the proxy sets (`Forwarded`, RFC 7239, or
  /// `X-Forwarded-For`), to be trusted only when it comes from a proxy you
  /// run. Empty over a Unix-domain socket. The first call on a connection
  /// costs one getpeername(2); later ones none.
  endpoint peer() const noexcept { return ends_ ? ends_->peer() : endpoint{}; }

  /// The address and port of this end of the connection (which of the
  /// host's addresses the client reached, e.g. with --host 0.0.0.0). Each
  /// call costs one getsockname(2). Empty over a Unix-domain socket.
  endpoint local() const noexcept { return ends_ ? ends_->local() : endpoint{}; }

  /// True when the connection stays open after this request's response
  /// (HTTP/1.1 without "Connection: close", or HTTP/1.0 with keep-alive).
  bool keep_alive() const noexcept { return keep_alive_; }

 private:
  friend class detail::message_builder;

  asio::awaitable<std::string_view> buffered_piece() {
    std::string_view piece = body_read_ ? std::string_view{} : body_;
    body_read_ = true;
    co_return piece;
  }
  asio::awaitable<std::string_view> buffered_body() {
    body_read_ = true;
    co_return body_;
  }

  std::string_view method_;
  std::string_view target_;
  std::span<const header_field> headers_;
  std::string_view body_;
  std::string* body_store_ = nullptr;      // what body_ views, when it is buffered
  detail::body_source* source_ = nullptr;  // set for streaming handlers
  const detail::connection_ends* ends_ = nullptr;  // set once per connection
  bool body_read_ = false;                 // read_some() has returned the buffered body
  int major_ = 1;
  int minor_ = 1;
  bool keep_alive_ = true;
};

}  // namespace cluster
