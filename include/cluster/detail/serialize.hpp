// Response serialisation: status line, the server's framing fields, the
// handler's fields and the body, appended to a connection's output buffer.
#pragma once

#include <cluster/response.hpp>

#include <charconv>
#include <string>
#include <string_view>

namespace cluster::detail {

/// How a response is framed for the request it answers.
struct framing {
  bool head = false;        ///< the request was HEAD: headers only
  bool close = false;       ///< the connection closes after this response
  bool keep_alive_10 = false;  ///< HTTP/1.0 keep-alive: say so explicitly
};

/// RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
constexpr bool status_has_body(int status) noexcept {
  return status >= 200 && status != 204 && status != 304;
}

/// True when the handler asked for the connection to close after `res`.
inline bool wants_close(const response& res) noexcept {
  std::string_view v = res.headers.get("Connection");
  return !v.empty() && iequals(v, "close");
}

/// Appends the wire form of `res` to `out`. `date` is a complete Date line.
inline void serialize(std::string& out, const response& res, framing f, std::string_view date) {
  int status = res.status;
  char digits[24];
  out += "HTTP/1.1 ";
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  (void)ec;
  out.append(digits, end);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!res.headers.contains("Date")) out += date;
  bool body_allowed = status_has_body(status);
  if (body_allowed) {
    out += "Content-Length: ";
    auto [e2, ec2] = std::to_chars(digits, digits + sizeof digits, res.body.size());
    (void)ec2;
    out.append(digits, e2);
    out += "\r\n";
  }
  if (f.close)
    out += "Connection: close\r\n";
  else if (f.keep_alive_10)
    out += "Connection: keep-alive\r\n";
  if (res.headers.contains("Connection")) {
    // The server decides persistence; the handler's Connection field only
    // asks for close, which `f.close` already reflects.
    res.headers.for_each([&](std::string_view n, std::string_view v) {
      if (iequals(n, "Connection")) return;
      out += n;
      out += ": ";
      out += v;
      out += "\r\n";
    });
  } else {
    out += res.headers.view();
  }
  out += "\r\n";
  if (body_allowed && !f.head) out += res.body;
}

/// Appends a complete server-generated error response (e.g. 400, 408, 413)
/// that closes the connection.
inline void serialize_error(std::string& out, int status, std::string_view date) {
  response res;
  res.status = status;
  res.headers.set("Content-Type", "text/plain; charset=utf-8");
  res.body = reason_phrase(status);
  res.body += '\n';
  serialize(out, res, framing{.close = true}, date);
}

}  // namespace cluster::detail
