// Lifecycle log lines: one line per event on stderr, with a UTC timestamp and
// the writing process, written with a single write(2) so lines from the
// master and its workers never interleave.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include <unistd.h>

namespace cluster::detail {

/// Writes "2026-11-25T09:39:49.123Z cluster[1234] <role>: <message>\n".
inline void log_line(std::string_view role, std::string_view message) noexcept {
  try {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[64];
    int n = std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ cluster[%d] ",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          static_cast<int>(ms % 1000), static_cast<int>(::getpid()));
    std::string line(stamp, n > 0 ? static_cast<std::size_t>(n) : 0);
    line += role;
    line += ": ";
    line += message;
    line += '\n';
    std::size_t off = 0;
    while (off < line.size()) {
      ssize_t w = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
  } catch (...) {
    // Logging must never take a process down.
  }
}

}  // namespace cluster::detail
