// Escaping what a client sent (a target, a method) for a log line, so that
// no input can end a line early, forge a field or make the JSON invalid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cluster::detail {

inline constexpr char hex_digits[] = "0123456789abcdef";

/// Appends `in` for a common-log field inside double quotes, as nginx does:
/// '"', '\' and every byte outside 0x20..0x7e become "\xHH", so a line
/// holds no CR, LF or quote it did not write itself.
inline void escape_common(std::string_view in, std::string& out) {
  for (char c : in) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b > 0x7e || c == '"' || c == '\\') {
      out += "\\x";
      out += hex_digits[b >> 4];
      out += hex_digits[b & 15];
    } else {
      out += c;
    }
  }
}

/// The length of the well-formed UTF-8 sequence (RFC 3629 §4: no overlong
/// forms, no surrogates, nothing above U+10FFFF) at the start of `in`, or 0.
constexpr std::size_t utf8_sequence(std::string_view in) noexcept {
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
  auto tail = [&](std::size_t i) { return i < in.size() && (at(i) & 0xc0) == 0x80; };
  const unsigned char b = at(0);
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return tail(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    if (!tail(1) || !tail(2)) return 0;
    if (b == 0xe0 && at(1) < 0xa0) return 0;  // overlong
    if (b == 0xed && at(1) > 0x9f) return 0;  // a surrogate
    return 3;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    if (!tail(1) || !tail(2) || !tail(3)) return 0;
    if (b == 0xf0 && at(1) < 0x90) return 0;  // overlong
    if (b == 0xf4 && at(1) > 0x8f) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

/// Appends `in` as the inside of a JSON string (RFC 8259 §7): quote,
/// backslash and control characters escaped, well-formed UTF-8 kept as it
/// is, and each byte that is not part of well-formed UTF-8 written as
/// "\u00HH" (the Latin-1 character of that byte), so the result is always
/// valid JSON and no byte is lost.
inline void escape_json(std::string_view in, std::string& out) {
  auto u00 = [&out](unsigned char b) {
    out += "\\u00";
    out += hex_digits[b >> 4];
    out += hex_digits[b & 15];
  };
  for (std::size_t i = 0; i < in.size();) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b == '"' || b == '\\') {
      out += '\\';
      out += in[i++];
    } else if (b < 0x20 || b == 0x7f) {
      u00(b);
      ++i;
    } else if (b < 0x80) {
      out += in[i++];
    } else if (std::size_t n = utf8_sequence(in.substr(i)); n != 0) {
      out.append(in.substr(i, n));
      i += n;
    } else {
      u00(b);
      ++i;
    }
  }
}

}  // namespace cluster::detail
