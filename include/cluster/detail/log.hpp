// Lifecycle log lines: one line per event on stderr, with a UTC timestamp and
// the writing process, written with a single write(2) so lines from the
// master and its workers never interleave. Text by default; with
// options::log_format "json", one JSON object per line for log shippers.
#pragma once

#include <cluster/detail/json_text.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include <unistd.h>

namespace cluster::detail {

/// How log lines are written.
enum class log_style { text, json };

/// The process's log style: set by cluster::run from options::log_format
/// before anything is forked, so every worker inherits it. The log's only
/// mutable global.
inline log_style& process_log_style() noexcept {
  static log_style style = log_style::text;
  return style;
}

/// Writes "2026-11-25T09:39:49.123Z cluster[1234] <role>: <message>\n", or
/// {"time":"2026-11-25T09:39:49.123Z","pid":1234,"role":"<role>","message":"<message>"}
/// in the json style.
inline void log_line(std::string_view role, std::string_view message) noexcept {
  try {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[32];
    int n = std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
    const std::string_view time(stamp, n > 0 ? static_cast<std::size_t>(n) : 0);
    const std::string pid = std::to_string(::getpid());
    std::string line;
    line.reserve(64 + role.size() + message.size());
    if (process_log_style() == log_style::json) {
      line += "{\"time\":\"";
      line += time;
      line += "\",\"pid\":";
      line += pid;
      line += ",\"role\":\"";
      append_json_escaped(line, role);
      line += "\",\"message\":\"";
      append_json_escaped(line, message);
      line += "\"}\n";
    } else {
      line += time;
      line += " cluster[";
      line += pid;
      line += "] ";
      line += role;
      line += ": ";
      line += message;
      line += '\n';
    }
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
