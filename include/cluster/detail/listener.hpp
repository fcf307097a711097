// Listening sockets, one at a time: resolving the address, opening, binding
// and listening (SO_REUSEPORT for slots), claiming the port before any slot
// binds, and reading back the address of a socket the master adopts. Which
// sockets the slots hold is slot_sockets.hpp's job.
#pragma once

#include <cluster/options.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cluster::detail {

/// A resolved listening address.
struct listen_address {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const noexcept { return storage.ss_family; }

  void set_port(int port) noexcept {
    if (family() == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(static_cast<std::uint16_t>(port));
    else
      reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(static_cast<std::uint16_t>(port));
  }

  /// "127.0.0.1:8080" or "[::1]:8080".
  std::string to_string(int port) const {
    char text[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text, sizeof text);
      return "[" + std::string(text) + "]:" + std::to_string(port);
    }
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(port);
  }
};

/// Resolves `host` (a numeric address or a name such as "localhost") for
/// listening on `port`. Throws option_error naming "host".
inline listen_address resolve_listen_address(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr)
    throw option_error("host", "cannot resolve '" + host + "' to a local address (" + gai_strerror(rc) +
                                   "); use a numeric address such as 0.0.0.0, ::, 127.0.0.1");
  listen_address a;
  std::memcpy(&a.storage, found->ai_addr, found->ai_addrlen);
  a.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return a;
}

/// Opens, binds and listens one socket (SO_REUSEPORT unless told otherwise).
/// Throws std::system_error whose message names the address.
inline int open_listener(const listen_address& address, int port, int backlog, bool reuseport = true) {
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cluster: socket()");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if ((reuseport && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      ::bind(fd, address.get(), address.length) != 0 || ::listen(fd, backlog) != 0) {
    int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(),
                            "cluster: cannot listen on " + address.to_string(port));
  }
  return fd;
}

/// Makes sure no other program listens on `address` (port `port`, 0 for
/// one the kernel picks) and returns the port. SO_REUSEPORT would let a second
/// cluster join the first one's group silently (and share or steal its
/// traffic), so the check binds a probe socket without it, which any socket
/// already on the port refuses; the probe is closed before the slots bind.
/// Throws std::system_error (EADDRINUSE) naming the address.
inline int claim_port(listen_address address, int port) {
  address.set_port(port);
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cluster: socket()");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // TIME_WAIT leftovers are no owners
  if (::bind(fd, address.get(), address.length) != 0) {
    int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(),
                            "cluster: cannot listen on " + address.to_string(port) +
                                (err == EADDRINUSE ? " (another program already serves this port)" : ""));
  }
  int claimed = port;
  if (port == 0) {
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len);
    claimed = ntohs(s.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&s)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&s)->sin_port);
  }
  ::close(fd);
  return claimed;
}

/// The address a socket is bound to (its port included): what a master
/// learns of a socket it adopts instead of binding. Throws std::system_error.
inline listen_address address_of(int fd) {
  listen_address a;
  a.length = sizeof a.storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length) != 0)
    throw std::system_error(errno, std::generic_category(), "cluster: getsockname()");
  return a;
}

/// The port a bound socket got (useful after binding port 0).
inline int bound_port(int fd) {
  sockaddr_storage s{};
  socklen_t len = sizeof s;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0)
    throw std::system_error(errno, std::generic_category(), "cluster: getsockname()");
  if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&s)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
}

}  // namespace cluster::detail
