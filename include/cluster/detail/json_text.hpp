// Text as the contents of a JSON string (RFC 8259 section 7), valid JSON
// whatever the bytes: the one escaper of the admin endpoint's /status and
// of the JSON log. Text that reaches a log can come from a client or a
// user's hook, so it may hold any byte: a byte that does not start a valid
// UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF) becomes U+FFFD, so a log shipper never meets invalid JSON.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cluster::detail {

/// The length of the valid UTF-8 sequence at the start of `s`, or 0.
constexpr std::size_t utf8_sequence_length(std::string_view s) noexcept {
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b = at(0);
  std::size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
  if (n == 0 || n > s.size()) return 0;
  for (std::size_t i = 1; i < n; ++i)
    if ((at(i) & 0xc0) != 0x80) return 0;
  if (n == 2 && b < 0xc2) return 0;                                 // overlong
  if (n == 3 && b == 0xe0 && at(1) < 0xa0) return 0;                // overlong
  if (n == 3 && b == 0xed && at(1) >= 0xa0) return 0;               // a surrogate
  if (n == 4 && ((b == 0xf0 && at(1) < 0x90) || b > 0xf4 || (b == 0xf4 && at(1) >= 0x90))) return 0;
  return n;
}

/// Appends `text` escaped for the inside of a JSON string (no quotes).
inline void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  while (!text.empty()) {
    const unsigned char c = static_cast<unsigned char>(text.front());
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(text);
      if (n == 0) {
        out += "\\ufffd";
        text.remove_prefix(1);
      } else {
        out.append(text.data(), n);
        text.remove_prefix(n);
      }
      continue;
    } else {
      out += static_cast<char>(c);
    }
    text.remove_prefix(1);
  }
}

/// `text` escaped for the inside of a JSON string (no quotes).
inline std::string json_escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  append_json_escaped(out, text);
  return out;
}

}  // namespace cluster::detail
