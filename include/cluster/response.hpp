// The response a handler returns.
#pragma once

#include <cluster/headers.hpp>
#include <cluster/status.hpp>

#include <string>
#include <string_view>

namespace cluster {

/// An HTTP response. The server owns the framing: it adds Date,
/// Content-Length and Connection itself, so handlers set only the status, their
/// own fields and the body. A handler may set "Connection: close" to close the
/// connection after this response.
struct response {
  /// Status code, 100..999 (see cluster::status for names).
  int status = 200;
  /// Fields sent after the server's own (Date, Content-Length, Connection).
  response_headers headers;
  /// The body; not sent for HEAD requests or for 1xx, 204 and 304 statuses.
  std::string body;

  /// A response with the given status and body and a Content-Type.
  static response with(int status, std::string body, std::string_view content_type) {
    return make(status, std::move(body), content_type, false);
  }

  /// A text/plain (UTF-8) response.
  static response text(std::string body, int status = 200) {
    return make(status, std::move(body), "text/plain; charset=utf-8", true);
  }
  /// A text/plain (UTF-8) response with a named status.
  static response text(std::string body, cluster::status code) {
    return text(std::move(body), static_cast<int>(code));
  }

  /// A text/html (UTF-8) response.
  static response html(std::string body, int status = 200) {
    return make(status, std::move(body), "text/html; charset=utf-8", true);
  }

  /// An application/json response; `body` must already be JSON.
  static response json(std::string body, int status = 200) {
    return make(status, std::move(body), "application/json", true);
  }

  /// A response with no body and no Content-Type, e.g. 204 or a redirect.
  static response empty(int status) {
    response r;
    r.status = status;
    return r;
  }
  /// A response with no body, with a named status.
  static response empty(cluster::status code) { return empty(static_cast<int>(code)); }

  /// Sets a header field (replacing earlier ones of that name); chainable.
  /// Throws std::invalid_argument for an invalid name or value.
  response& set(std::string_view name, std::string_view value) {
    headers.set(name, value);
    return *this;
  }

 private:
  // `known`: one of the library's own content types, valid without a check.
  static response make(int status, std::string body, std::string_view content_type, bool known) {
    response r;
    r.status = status;
    if (known)
      r.headers.append_known("Content-Type", content_type);
    else
      r.headers.set("Content-Type", content_type);
    r.body = std::move(body);
    return r;
  }
};

}  // namespace cluster
