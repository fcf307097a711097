// IMF-fixdate (RFC 9110 §5.6.7), the one date format HTTP/1.1 senders use:
// for the Date field (date_cache.hpp) and a file's Last-Modified (response.hpp).
#pragma once

#include <cstddef>
#include <ctime>

namespace cluster::detail {

/// Characters of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
inline constexpr std::size_t imf_fixdate_length = 29;

/// Writes `t` (seconds since the epoch) as an IMF-fixdate into `p`, which
/// has room for imf_fixdate_length characters (no terminating NUL is
/// written); returns the end. IMF-fixdate is English whatever the locale,
/// hence no strftime.
inline char* format_imf_fixdate(std::time_t t, char* p) noexcept {
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&t, &tm);
  auto put = [&p](const char* s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) *p++ = s[i];
  };
  auto two = [&p](int v) {
    *p++ = static_cast<char>('0' + v / 10);
    *p++ = static_cast<char>('0' + v % 10);
  };
  put(days[tm.tm_wday], 3);
  put(", ", 2);
  two(tm.tm_mday);
  *p++ = ' ';
  put(months[tm.tm_mon], 3);
  *p++ = ' ';
  int year = tm.tm_year + 1900;
  two(year / 100 % 100);
  two(year % 100);
  *p++ = ' ';
  two(tm.tm_hour);
  *p++ = ':';
  two(tm.tm_min);
  *p++ = ':';
  two(tm.tm_sec);
  put(" GMT", 4);
  return p;
}

}  // namespace cluster::detail
