// Escaping what a client sent (a target, a method) for a common-log line,
// so that no input can end a line early or forge a field (JSON lines use
// json_text.hpp, the one JSON escaper).
#pragma once

#include <cstddef>
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

}  // namespace cluster::detail
