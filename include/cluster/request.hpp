// The request a handler receives.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/endpoint.hpp>
#include <cluster/headers.hpp>
#include <cluster/query.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
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

/// One named parameter of the route a request matched: for the pattern
/// "/users/:id" and the path "/users/42", name "id" and value "42"
/// (percent-decoded).
struct route_param {
  std::string_view name;
  std::string_view value;
};

class route;

namespace detail {
class message_builder;
struct route_access;

/// Most named parameters a route pattern may have.
inline constexpr std::size_t max_route_params = 8;
/// Longest request id a request carries (request::id()).
inline constexpr std::size_t max_request_id = 64;

/// What routing and middleware keep per request, in the request itself
/// (one per connection, reused): fixed-size arrays and one string whose
/// capacity is kept from request to request, so a warm connection routes
/// without allocating.
struct route_state {
  /// The decoded path, then the decoded query. Reserved to the target's
  /// size before anything is written (decoding never lengthens), so views
  /// into it stay valid for the request's lifetime.
  std::string text;
  std::array<route_param, max_route_params> params{};
  std::uint8_t param_count = 0;
  bool query_decoded = false;
  std::size_t query_at = 0;            ///< where the decoded query starts in text
  const cluster::route* route = nullptr;  ///< the route chosen for this request, if any
  std::uint16_t methods = 0;              ///< without a route: what the path allows (the Allow field)
  std::uint16_t status = 0;               ///< without a route: the router's own answer
  bool streamed = false;                  ///< the response is streamed: its head is all after() sees
  std::chrono::steady_clock::time_point started{};  ///< set by middleware that times requests
  std::uint8_t id_length = 0;
  std::array<char, max_request_id> id{};

  /// Forgets the last request, keeping text's capacity.
  void reset() noexcept {
    text.clear();
    param_count = 0;
    query_decoded = false;
    route = nullptr;
    methods = 0;
    status = 0;
    streamed = false;
    id_length = 0;
  }
  /// Makes room for everything decoded from `target`.
  void reserve_for(std::string_view target) {
    if (text.capacity() < target.size()) text.reserve(target.size());
  }
};

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
  /// The value of the route parameter `name` (percent-decoded), or an empty
  /// view when the route has none of that name. Set by cluster::router.
  std::string_view param(std::string_view name) const noexcept {
    for (const route_param& p : params())
      if (p.name == name) return p.value;
    return {};
  }
  /// Every parameter of the matched route, in pattern order; a trailing
  /// wildcard comes last, named "*".
  std::span<const route_param> params() const noexcept { return {route_.params.data(), route_.param_count}; }

  /// The value of the first query field called `name`, percent-decoded ('+'
  /// as a space; a malformed escape is kept as it is), or an empty view.
  /// "?limit=10" gives query_param("limit") == "10". The first call on a
  /// request decodes the query once; the views stay valid as long as the
  /// request's others do.
  std::string_view query_param(std::string_view name) const { return query_params().get(name); }
  /// True when the query has a field called `name`, even without a value.
  bool has_query_param(std::string_view name) const { return query_params().contains(name); }
  /// Every field of the query, in order, decoded as by query_param():
  /// `for (auto [name, value] : req.query_params())`.
  query_fields query_params() const {
    if (!route_.query_decoded) {
      route_.reserve_for(target_);
      std::string_view raw = query();
      route_.query_at = route_.text.size();
      route_.text.resize(route_.query_at + raw.size());
      route_.text.resize(route_.query_at + detail::decode_query(raw, route_.text.data() + route_.query_at));
      route_.query_decoded = true;
    }
    return {query(), std::string_view(route_.text).substr(route_.query_at)};
  }

  /// The request's id, as the cluster::request_id middleware set it (taken
  /// from the client's X-Request-Id or made); empty without it.
  std::string_view id() const noexcept { return {route_.id.data(), route_.id_length}; }

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
  friend struct detail::route_access;

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
  mutable detail::route_state route_;  // mutable: the query is decoded on first read
};

}  // namespace cluster
