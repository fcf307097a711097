// Response serialisation: status line, the server's framing fields, the
// handler's fields and the body, appended to a connection's output buffer;
// and the pieces of a streamed (chunked) body.
#pragma once

#include <cluster/detail/status_line.hpp>
#include <cluster/response.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cluster::detail {

/// How a response's body is delimited on the wire (RFC 9112 §6.3).
enum class body_framing : std::uint8_t {
  length,   ///< Content-Length: a response whose body is known
  chunked,  ///< Transfer-Encoding: chunked: a streamed response to HTTP/1.1
  close,    ///< neither: the body ends when the connection closes (a stream to HTTP/1.0)
};

/// How a response is framed for the request it answers.
struct framing {
  bool head = false;           ///< the request was HEAD: headers only
  bool close = false;          ///< the connection closes after this response
  bool keep_alive_10 = false;  ///< HTTP/1.0 keep-alive: say so explicitly
  body_framing body = body_framing::length;
};

/// RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
constexpr bool status_has_body(int status) noexcept {
  return status >= 200 && status != 204 && status != 304;
}

/// True when `status` may answer a request: a final one (RFC 9110 §15).
constexpr bool is_final_status(int status) noexcept { return status >= 200 && status <= 999; }

/// True when the handler asked for the connection to close after `res`.
inline bool wants_close(const response& res) noexcept {
  if (!res.headers.contains("Connection")) return false;  // the usual case, known without a scan
  std::string_view v = res.headers.get("Connection");
  return !v.empty() && iequals(v, "close");
}

/// The interim response that tells a client to send its body (RFC 9110 §15.2.1).
inline constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

/// The chunk that ends a chunked body, with an empty trailer section.
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

/// Writes the size line of a chunk of `n` bytes ("1f4\r\n") into `buf` and
/// returns its length.
inline std::size_t chunk_size_line(char (&buf)[24], std::size_t n) noexcept {
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf - 2, n, 16);
  (void)ec;
  *end++ = '\r';
  *end++ = '\n';
  return static_cast<std::size_t>(end - buf);
}

/// Appends the status line and header section of a response (through the
/// empty line) to `out`. `date` is a complete Date line; `content_length` is
/// used when `f.body` is length.
inline void serialize_head(std::string& out, int status, const response_headers& headers, framing f,
                           std::string_view date, std::size_t content_length) {
  constexpr std::string_view close_line = "Connection: close\r\n";
  constexpr std::string_view keep_alive_line = "Connection: keep-alive\r\n";
  constexpr std::string_view length_name = "Content-Length: ";
  constexpr std::string_view chunked_line = "Transfer-Encoding: chunked\r\n";
  constexpr std::size_t number_room = 24;  // "HTTP/1.1 " and a status, or a length, and their CRLF
  // Precomputed for every status with a reason phrase.
  const std::string_view line = status_line(status);
  // Both questions are answered from the marks response_headers keeps as
  // fields are set: no scan of the handler's fields.
  const bool own_date = !headers.contains("Date");
  // The server decides persistence; a handler's Connection field only asks
  // for close, which `f.close` already reflects, so it is left out.
  const bool filter = headers.contains("Connection");
  const std::string_view fields = filter ? std::string_view{} : headers.view();
  const bool framed = status_has_body(status);

  // One resize to a tight upper bound, then plain copies: no per-piece
  // growth checks or strlen.
  const std::size_t at = out.size();
  std::size_t bound = (line.empty() ? number_room + reason_phrase(status).size() : line.size()) + fields.size() + 2;
  if (own_date) bound += date.size();
  if (framed) bound += f.body == body_framing::length ? length_name.size() + number_room : chunked_line.size();
  if (f.close || f.keep_alive_10) bound += keep_alive_line.size();
  out.resize(at + bound);
  char* p = out.data() + at;
  auto put = [&p](std::string_view s) {
    if (s.empty()) return;  // a null data() must not reach memcpy
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  if (!line.empty()) {
    put(line);
  } else {  // a status without a reason phrase of its own
    put("HTTP/1.1 ");
    p = std::to_chars(p, p + number_room, status).ptr;
    *p++ = ' ';
    put(reason_phrase(status));
    put("\r\n");
  }
  if (own_date) put(date);
  if (framed) {
    // A HEAD response states the framing the GET would have (RFC 9110 §9.3.2).
    if (f.body == body_framing::length) {
      put(length_name);
      p = std::to_chars(p, p + number_room, content_length).ptr;
      put("\r\n");
    } else if (f.body == body_framing::chunked) {
      put(chunked_line);
    }
  }
  if (f.close)
    put(close_line);
  else if (f.keep_alive_10)
    put(keep_alive_line);
  put(fields);
  if (!filter) put("\r\n");
  out.resize(static_cast<std::size_t>(p - out.data()));
  if (filter) {
    headers.for_each([&](std::string_view n, std::string_view v) {
      if (iequals(n, "Connection")) return;
      out += n;
      out += ": ";
      out += v;
      out += "\r\n";
    });
    out += "\r\n";
  }
}

/// Appends the wire form of a complete response `res` to `out`. `date` is a
/// complete Date line.
inline void serialize(std::string& out, const response& res, framing f, std::string_view date) {
  serialize_head(out, res.status, res.headers, f, date, res.body.size());
  if (status_has_body(res.status) && !f.head) out += res.body;
}

/// Appends a server-generated error response (e.g. 400, 408, 413); by
/// default one that closes the connection.
inline void serialize_error(std::string& out, int status, std::string_view date, framing f = {.close = true}) {
  response res;
  res.status = status;
  res.headers.set("Content-Type", "text/plain; charset=utf-8");
  res.body = reason_phrase(status);
  res.body += '\n';
  f.body = body_framing::length;
  serialize(out, res, f, date);
}

}  // namespace cluster::detail
