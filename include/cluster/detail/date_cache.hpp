// The Date header field (RFC 9110 §6.6.1), formatted at most once per second.
#pragma once

#include <cluster/detail/http_date.hpp>

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

  void format(std::time_t now) noexcept {
    char* p = line_;
    for (char c : std::string_view("Date: ")) *p++ = c;
    p = format_imf_fixdate(now, p);
    *p++ = '\r';
    *p++ = '\n';
    second_ = now;
  }

  std::time_t second_ = -1;
  char line_[length + 1] = {};
};

}  // namespace cluster::detail
