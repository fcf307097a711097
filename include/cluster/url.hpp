// Percent-decoding (RFC 3986 §2.1) of paths and query strings: the public
// cluster::url_decode, and the allocation-free pieces the request and the
// router decode with.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cluster {

/// What a '+' means in the text being decoded.
enum class url_plus {
  literal,  ///< a '+' (paths, RFC 3986)
  space,    ///< a space (query strings, application/x-www-form-urlencoded)
};

namespace detail {

/// The value of a hex digit, or -1.
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// The byte "%XY" at `in[i]` stands for, or -1 when `in[i]` does not start a
/// valid escape.
constexpr int escaped_byte(std::string_view in, std::size_t i) noexcept {
  if (in[i] != '%' || i + 2 >= in.size()) return -1;
  int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/// How decoding treats a '%' that does not start a valid escape.
enum class bad_escape {
  refuse,  ///< the whole text is refused (paths: the router answers 400)
  keep,    ///< it stays as it is, as WHATWG URL's percent-decode does (query strings)
};

/// Decodes `in` into `out` (at least in.size() bytes); returns the decoded
/// length, or npos when `policy` is refuse and an escape is malformed.
/// Decoded text is never longer than the encoded text.
constexpr std::size_t percent_decode(std::string_view in, char* out, url_plus plus, bad_escape policy) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int b = escaped_byte(in, i);
      if (b >= 0) {
        out[n++] = static_cast<char>(b);
        i += 2;
        continue;
      }
      if (policy == bad_escape::refuse) return std::string_view::npos;
    } else if (c == '+' && plus == url_plus::space) {
      c = ' ';
    }
    out[n++] = c;
  }
  return n;
}

}  // namespace detail

/// Percent-decodes `encoded` ("caf%C3%A9" -> "café"); with url_plus::space a
/// '+' becomes a space too (query strings and HTML form bodies). Returns
/// nothing when a '%' is not followed by two hex digits. The bytes are
/// returned as decoded: check them for UTF-8 (or NUL) where that matters.
inline std::optional<std::string> url_decode(std::string_view encoded, url_plus plus = url_plus::literal) {
  std::string out(encoded.size(), '\0');
  std::size_t n = detail::percent_decode(encoded, out.data(), plus, detail::bad_escape::refuse);
  if (n == std::string_view::npos) return std::nullopt;
  out.resize(n);
  return out;
}

}  // namespace cluster
