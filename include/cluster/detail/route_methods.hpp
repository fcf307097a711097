// The methods a route may answer, as a small bit set: what a router needs
// to say "405, Allow: GET, HEAD, OPTIONS" without building a string.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cluster::detail {

/// The methods of RFC 9110 §9 and PATCH (RFC 5789), in the order an Allow
/// field lists them.
inline constexpr std::array<std::string_view, 9> route_method_names = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};

/// A set of route_method_names, one bit each.
using method_set = std::uint16_t;

inline constexpr method_set method_get = 1u << 0;
inline constexpr method_set method_head = 1u << 1;
inline constexpr method_set method_options = 1u << 6;

/// The bit of `method`, or 0 when it is not one of route_method_names.
constexpr method_set method_bit(std::string_view method) noexcept {
  for (std::size_t i = 0; i < route_method_names.size(); ++i)
    if (route_method_names[i] == method) return static_cast<method_set>(1u << i);
  return 0;
}

/// Longest Allow value: every method, comma-separated.
inline constexpr std::size_t max_allow_length = 64;

/// Writes `methods` as an Allow value ("GET, HEAD, OPTIONS") into `out`;
/// returns its length.
constexpr std::size_t format_allow(method_set methods, std::array<char, max_allow_length>& out) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < route_method_names.size(); ++i) {
    if ((methods & (1u << i)) == 0) continue;
    if (n != 0) {
      out[n++] = ',';
      out[n++] = ' ';
    }
    for (char c : route_method_names[i]) out[n++] = c;
  }
  return n;
}

}  // namespace cluster::detail
