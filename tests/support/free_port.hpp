// A free TCP port for a program that binds its own listening socket and
// cannot report the one it got (a balancer, systemd-socket-activate): bound
// to port 0 and closed at once, so it is free unless another program takes
// it in between, which on a loopback address nobody else serves is unlikely.
#pragma once

#include <cstdint>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "process.hpp"

namespace test_support {

/// A port on `host` (a numeric IPv4 address) that was free a moment ago;
/// throws if none can be had.
inline std::uint16_t free_port(const std::string& host = "127.0.0.1") {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) throw std::invalid_argument("not an IPv4 address: " + host);
  socklen_t len = sizeof a;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("bind " + host + ":0");
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) throw_errno("getsockname");
  return ntohs(a.sin_port);
}

}  // namespace test_support
