// The Date header field (RFC 9110 §6.6.1), formatted at most once per second.
#pragma once

#include <ctime>
#include <string_view>

namespace cluster::detail {

/// Keeps "Date: <IMF-fixdate>\r\n" for the current second. The coarse clock is
/// read from the vDSO, so checking it per response costs no system call.
class date_cache {
 public:
  /// The complete header line for now, CRLF included.
  std::string_view line() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != second_) format(ts.tv_sec);
    return {line_, length};
  }

 private:
  static constexpr std::size_t length = sizeof("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n") - 1;

  // IMF-fixdate is defined in English regardless of locale, so no strftime.
  void format(std::time_t now) noexcept {
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::tm tm{};
    gmtime_r(&now, &tm);
    char* p = line_;
    auto put = [&p](const char* s, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) *p++ = s[i];
    };
    auto two = [&p](int v) {
      *p++ = static_cast<char>('0' + v / 10);
      *p++ = static_cast<char>('0' + v % 10);
    };
    put("Date: ", 6);
    put(days[tm.tm_wday], 3);
    put(", ", 2);
    two(tm.tm_mday);
    *p++ = ' ';
    put(months[tm.tm_mon], 3);
    *p++ = ' ';
    int year = tm.tm_year + 1900;
    two(year / 100);
    two(year % 100);
    *p++ = ' ';
    two(tm.tm_hour);
    *p++ = ':';
    two(tm.tm_min);
    *p++ = ':';
    two(tm.tm_sec);
    put(" GMT\r\n", 6);
    second_ = now;
  }

  std::time_t second_ = -1;
  char line_[length + 1] = {};
};

}  // namespace cluster::detail
