// One end of a connection: an IP address and a port, as a small value (no
// allocation), for request::peer() and request::local().
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace cluster {

/// An IPv4 or IPv6 address and a port; empty when unknown (a Unix-domain
/// socket, an in-memory connection, or a socket that is already gone).
class endpoint {
 public:
  endpoint() = default;

  /// From a socket address of `length` bytes, as getpeername(2) returns it;
  /// other families, or a length too short for the family, give an empty
  /// endpoint.
  static endpoint from(const sockaddr* address, socklen_t length) noexcept {
    endpoint e;
    if (address == nullptr) return e;
    sockaddr_storage copy{};
    std::memcpy(&copy, address, std::min<std::size_t>(length, sizeof copy));
    if (copy.ss_family == AF_INET && length >= sizeof(sockaddr_in)) {
      const auto& a = reinterpret_cast<const sockaddr_in&>(copy);
      e.family_ = AF_INET;
      std::memcpy(e.bytes_.data(), &a.sin_addr, 4);
      e.port_ = ntohs(a.sin_port);
    } else if (copy.ss_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
      const auto& a = reinterpret_cast<const sockaddr_in6&>(copy);
      e.family_ = AF_INET6;
      std::memcpy(e.bytes_.data(), &a.sin6_addr, 16);
      e.port_ = ntohs(a.sin6_port);
    }
    return e;
  }

  /// True when no address is known.
  bool empty() const noexcept { return family_ == 0; }
  bool is_v4() const noexcept { return family_ == AF_INET; }
  bool is_v6() const noexcept { return family_ == AF_INET6; }
  /// The port, in host byte order (0 when empty).
  std::uint16_t port() const noexcept { return port_; }
  /// The address in network byte order: 4 bytes for IPv4, 16 for IPv6.
  std::string_view bytes() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.data()), is_v4() ? 4u : is_v6() ? 16u : 0u};
  }

  /// Longest text address() and to_string() write, with the terminating NUL.
  static constexpr std::size_t max_text = INET6_ADDRSTRLEN + 8;

  /// Writes the address ("192.0.2.7", "2001:db8::1"; "" when empty) into
  /// `out` without allocating; returns its length.
  std::size_t address(char (&out)[max_text]) const noexcept {
    out[0] = '\0';
    if (empty() || ::inet_ntop(family_, bytes_.data(), out, sizeof out) == nullptr) return 0;
    return std::strlen(out);
  }

  /// The address as a string ("192.0.2.7", "2001:db8::1"; "" when empty).
  std::string address() const {
    char text[max_text];
    return std::string(text, address(text));
  }

  /// "192.0.2.7:54321" or "[2001:db8::1]:54321"; "" when empty.
  std::string to_string() const {
    if (empty()) return {};
    char text[max_text];
    std::size_t n = address(text);
    std::string out;
    out.reserve(n + 8);
    if (is_v6()) out += '[';
    out.append(text, n);
    if (is_v6()) out += ']';
    char port[8];
    auto end = std::to_chars(port, port + sizeof port, port_).ptr;
    out += ':';
    out.append(port, end);
    return out;
  }

  friend bool operator==(const endpoint&, const endpoint&) = default;

 private:
  std::array<unsigned char, 16> bytes_{};
  std::uint16_t port_ = 0;
  std::uint8_t family_ = 0;
};

}  // namespace cluster
