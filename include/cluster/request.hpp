// The request a handler receives.
#pragma once

#include <cluster/headers.hpp>

#include <span>
#include <string_view>

namespace cluster {

namespace detail {
class request_parser;
}

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

  /// The request body, de-chunked; empty when there is none.
  std::string_view body() const noexcept { return body_; }

  /// True when the connection stays open after this request's response
  /// (HTTP/1.1 without "Connection: close", or HTTP/1.0 with keep-alive).
  bool keep_alive() const noexcept { return keep_alive_; }

 private:
  friend class detail::request_parser;

  std::string_view method_;
  std::string_view target_;
  std::span<const header_field> headers_;
  std::string_view body_;
  int major_ = 1;
  int minor_ = 1;
  bool keep_alive_ = true;
};

}  // namespace cluster
