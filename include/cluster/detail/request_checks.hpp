// The conformance rules llhttp 8.1 leaves to us, as pure functions of a
// field value or a few bytes: the Host grammar, the transfer codings, the
// expectation and the line ends. The parser calls them from its callbacks.
#pragma once

#include <cluster/headers.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace cluster::detail {

/// Character classes of the Host grammar, one table lookup per byte.
namespace host_chars {
inline constexpr std::uint8_t reg_name = 1;    ///< unreserved, or a sub-delim but ','
inline constexpr std::uint8_t hex = 2;         ///< HEXDIG
inline constexpr std::uint8_t ip_literal = 4;  ///< inside "[...]": HEXDIG, ':', '.', 'v', 'V'
inline constexpr std::uint8_t digit = 8;       ///< DIGIT (a port)

inline constexpr std::array<std::uint8_t, 256> table = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    bool d = c >= '0' && c <= '9';
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool x = d || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    // RFC 3986 §2.3 unreserved, and §2.2 sub-delims except ',' (a list of
    // hosts is no host).
    bool name = d || alpha || c == '-' || c == '.' || c == '_' || c == '~' || c == '!' || c == '$' || c == '&' ||
                c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ';' || c == '=';
    std::uint8_t v = 0;
    if (name) v |= reg_name;
    if (x) v |= hex;
    if (x || c == ':' || c == '.' || c == 'v' || c == 'V') v |= ip_literal;
    if (d) v |= digit;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}();

inline bool is(char c, std::uint8_t cls) noexcept { return (table[static_cast<unsigned char>(c)] & cls) != 0; }
}  // namespace host_chars

/// RFC 9112 §3.2 / RFC 9110 §7.2: Host = uri-host [ ":" port ], one
/// authority, no userinfo, no path, no list. An empty value is allowed (a
/// target without authority).
inline bool valid_host(std::string_view v) noexcept {
  using namespace host_chars;
  std::size_t i = 0;
  const std::size_t n = v.size();
  if (n != 0 && v[0] == '[') {  // IP-literal
    std::size_t close = v.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (i = 1; i < close; ++i)
      if (!is(v[i], ip_literal)) return false;
    i = close + 1;
    if (i == n) return true;
    if (v[i] != ':') return false;
  } else {
    for (; i < n; ++i) {  // reg-name, or an IPv4 address (a subset)
      if (is(v[i], reg_name)) continue;
      if (v[i] != '%') break;
      // pct-encoded: both digits inside the name
      if (i + 2 >= n || !is(v[i + 1], hex) || !is(v[i + 2], hex)) return false;
      i += 2;
    }
    if (i == n) return true;
    if (v[i] != ':') return false;
  }
  for (++i; i < n; ++i)
    if (!is(v[i], digit)) return false;  // port = *DIGIT
  return true;
}

/// The transfer codings of a request's Transfer-Encoding field lines
/// (RFC 9112 §6.1), accumulated line by line.
struct transfer_codings {
  bool seen = false;          ///< a Transfer-Encoding field was present
  bool chunked_last = false;  ///< the last coding so far is chunked
  bool unknown = false;       ///< a coding other than chunked appeared
  bool malformed = false;     ///< chunked not final, repeated, or with parameters

  /// Adds the codings of one field line.
  void add(std::string_view list) noexcept {
    seen = true;
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string_view coding = trim(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      if (coding.empty()) continue;  // empty list elements are allowed (RFC 9110 §5.6.1)
      // chunked must be the final coding and applied once (RFC 9112 §7).
      if (chunked_last) malformed = true;
      if (iequals(coding, "chunked")) {
        chunked_last = true;
      } else {
        if (iequals(trim(coding.substr(0, coding.find(';'))), "chunked")) malformed = true;  // takes no parameters
        unknown = true;
        chunked_last = false;
      }
    }
  }

  /// The status that refuses the request's framing, 0 when it is fine:
  /// Transfer-Encoding in HTTP/1.0 means faulty framing (RFC 9112 §6.1); a
  /// final coding other than chunked leaves the length unknowable (§6.3):
  /// 400; a coding we cannot decode: 501 (§6.1: SHOULD).
  int refusal(int http_minor) const noexcept {
    if (!seen) return 0;
    if (http_minor == 0 || !chunked_last || malformed) return 400;
    return unknown ? 501 : 0;
  }

 private:
  static std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }
};

/// What a request's Expect fields ask for (RFC 9110 §10.1.1): 100-continue
/// is the only expectation there is.
enum class expectation : std::uint8_t { none, hundred_continue, unsupported };

/// `e` after one more Expect field with value `v`.
inline expectation add_expectation(expectation e, std::string_view v) noexcept {
  if (e == expectation::unsupported || !iequals(v, "100-continue")) return expectation::unsupported;
  return expectation::hundred_continue;
}

/// True when the field name `name` is `lower` (lower-case letters and '-'
/// only), compared case-insensitively. Setting bit 0x20 lowers a letter and
/// leaves '-'; no other byte becomes a lower-case letter or '-' that way
/// but CR, which a name never holds: exact, and without iequals' two-sided
/// case folding.
inline bool is_named(std::string_view name, std::string_view lower) noexcept {
  if (name.size() != lower.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if ((name[i] | 0x20) != lower[i]) return false;
  return true;
}

/// True when the two bytes before `at` (the start of a field line) are CRLF
/// (RFC 9112 §2.2: llhttp takes a bare LF after the request line).
inline bool follows_crlf(const char* base, std::size_t at) noexcept {
  return at >= 2 && base[at - 1] == '\n' && base[at - 2] == '\r';
}

/// True when the line starting at `from` ends in CRLF and an empty CRLF line
/// follows it (the end of a header section: llhttp takes bare LFs there).
inline bool ends_header_section(const char* from, const char* end) noexcept {
  const char* lf = static_cast<const char*>(std::memchr(from, '\n', static_cast<std::size_t>(end - from)));
  if (!lf || lf == from || lf[-1] != '\r') return false;
  return end - lf >= 3 && lf[1] == '\r' && lf[2] == '\n';
}

/// How far a method token at the start of `bytes` (after empty lines) has
/// arrived, for a method llhttp does not know.
enum class method_scan : std::uint8_t {
  incomplete,  ///< still arriving
  invalid,     ///< empty, or not followed by SP: 400
  too_long,    ///< longer than max_method: 501
  complete,    ///< a token followed by SP, at [start, stop)
};

/// Longest method token we wait for before answering 501.
inline constexpr std::size_t max_method = 32;

/// Scans the method token of the message in `bytes`; `start` and `stop`
/// receive its position when complete.
inline method_scan scan_method(std::string_view bytes, std::size_t& start, std::size_t& stop) noexcept {
  start = 0;
  while (bytes.substr(start, 2) == "\r\n") start += 2;  // empty lines before a request (RFC 9112 §2.2)
  stop = start;
  while (stop < bytes.size() && is_token_char(bytes[stop])) ++stop;
  if (stop - start > max_method) return method_scan::too_long;
  if (stop == bytes.size()) return method_scan::incomplete;
  if (stop == start || bytes[stop] != ' ') return method_scan::invalid;
  return method_scan::complete;
}

}  // namespace cluster::detail
