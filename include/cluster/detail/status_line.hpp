// The status line of a response ("HTTP/1.1 200 OK\r\n"), made at compile
// time for every status with a reason phrase, so that writing one is a
// single copy instead of a number conversion and three pieces.
#pragma once

#include <cluster/status.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cluster::detail {

namespace status_lines {
inline constexpr int first = 100, last = 599;
inline constexpr std::size_t count = last - first + 1;
inline constexpr std::string_view prefix = "HTTP/1.1 ";

constexpr bool known(int status) noexcept { return reason_phrase(status) != "Unknown"; }

/// Length of the line of `status`: prefix, three digits, SP, reason, CRLF.
constexpr std::size_t length(int status) noexcept {
  return known(status) ? prefix.size() + 4 + reason_phrase(status).size() + 2 : 0;
}

constexpr std::size_t total() noexcept {
  std::size_t n = 0;
  for (int s = first; s <= last; ++s) n += length(s);
  return n;
}

/// The lines one after another; line i is text[start[i], start[i + 1]).
struct packed {
  std::array<char, total()> text{};
  std::array<std::uint16_t, count + 1> start{};
};

constexpr packed make() noexcept {
  packed t;
  std::size_t at = 0;
  auto put = [&](std::string_view s) {
    for (char c : s) t.text[at++] = c;
  };
  for (int s = first; s <= last; ++s) {
    t.start[static_cast<std::size_t>(s - first)] = static_cast<std::uint16_t>(at);
    if (!known(s)) continue;
    const char digits[3] = {static_cast<char>('0' + s / 100), static_cast<char>('0' + s / 10 % 10),
                            static_cast<char>('0' + s % 10)};
    put(prefix);
    put({digits, 3});
    put(" ");
    put(reason_phrase(s));
    put("\r\n");
  }
  t.start[count] = static_cast<std::uint16_t>(at);
  return t;
}

inline constexpr packed table = make();
}  // namespace status_lines

/// The complete status line for `status`, CRLF included; empty for a status
/// outside 100..599 or without a reason phrase of its own (the caller then
/// writes "HTTP/1.1 <status> Unknown\r\n" itself).
constexpr std::string_view status_line(int status) noexcept {
  using namespace status_lines;
  if (status < first || status > last) return {};
  const auto i = static_cast<std::size_t>(status - first);
  return {table.text.data() + table.start[i], static_cast<std::size_t>(table.start[i + 1] - table.start[i])};
}

static_assert(status_line(200) == "HTTP/1.1 200 OK\r\n");
static_assert(status_line(431) == "HTTP/1.1 431 Request Header Fields Too Large\r\n");
static_assert(status_line(299).empty() && status_line(600).empty() && status_line(99).empty());

}  // namespace cluster::detail
