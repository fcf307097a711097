// A raw-socket HTTP/1.1 client for integration tests: it sends exactly the
// bytes a test gives it and reads what comes back with the tests' one
// response reader (response_parser.hpp), a whole response, a head, a chunk at
// a time or raw bytes, so tests can see framing details a real client would
// hide. Every wait is a poll with a deadline; a missed deadline or a
// malformed response throws, which fails the test.
#pragma once

#include "response_parser.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace test_support {

using namespace std::chrono_literals;

/// "GET <target> HTTP/1.1" with a Host field and nothing else.
inline std::string get_request(std::string_view target = "/") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

/// "POST <target> HTTP/1.1" with `body` framed by Content-Length.
inline std::string post_request(std::string_view target, std::string_view body) {
  return "POST " + std::string(target) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

/// "<method> <target> HTTP/1.1" with a Host field, then `fields` (each
/// ending in CRLF), the empty line and `body`, all as given: no framing is
/// added, so a test can send any combination.
inline std::string request(std::string_view method, std::string_view target, std::string_view fields = "",
                           std::string_view body = "") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + std::string(fields) +
         "\r\n" + std::string(body);
}

/// `data` as one chunk of a chunked body (RFC 9112 §7.1).
inline std::string chunk(std::string_view data) {
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return std::string(size, static_cast<std::size_t>(n)) + std::string(data) + "\r\n";
}

/// Where a Unix-domain stream socket listens, for http_client.
struct unix_socket {
  std::string path;
};

/// One TCP connection to 127.0.0.1 or another IPv4 address (or to a
/// Unix-domain stream socket).
class http_client {
 public:
  static constexpr std::chrono::milliseconds default_timeout = 5s;

  /// Connects to 127.0.0.1:`port` within `timeout`; throws if it cannot.
  explicit http_client(std::uint16_t port, std::chrono::milliseconds timeout = default_timeout)
      : http_client("127.0.0.1", port, timeout) {}

  /// Connects to `host` (a numeric IPv4 address, e.g. 127.0.0.2):`port`
  /// within `timeout`; throws if it cannot.
  http_client(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout = default_timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail_errno("socket");
    try {
      connect(host, port, timeout);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }

  /// As above, with the socket's receive buffer set to `receive_buffer`
  /// bytes before connecting (SO_RCVBUF; the kernel doubles it), so that a
  /// client that does not read soon stalls the server's writes.
  http_client(std::uint16_t port, std::chrono::milliseconds timeout, int receive_buffer) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail_errno("socket");
    try {
      if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) != 0)
        fail_errno("setsockopt(SO_RCVBUF)");
      connect("127.0.0.1", port, timeout);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }

  /// Connects to the Unix-domain stream socket `where` within `timeout`;
  /// throws if it cannot.
  explicit http_client(const unix_socket& where, std::chrono::milliseconds timeout = default_timeout) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail_errno("socket");
    try {
      connect_unix(where.path, timeout);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }

  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;
  ~http_client() {
    if (fd_ >= 0) ::close(fd_);
  }

  /// Sends all of `bytes` within `timeout`.
  void send(std::string_view bytes, std::chrono::milliseconds timeout = default_timeout) {
    const auto deadline = clock::now() + timeout;
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        if (!wait_for(POLLOUT, deadline)) throw std::runtime_error("send timed out");
      } else {
        fail_errno("send");
      }
    }
  }

  /// Half-closes the connection: the server reads end of file after what was
  /// sent, and can still answer.
  void shutdown_write() {
    if (::shutdown(fd_, SHUT_WR) != 0) fail_errno("shutdown(SHUT_WR)");
  }

  /// Reads one complete response within `timeout`. `head` says it answers a
  /// HEAD request, which has no body whatever its Content-Length says.
  http_response read_response(std::chrono::milliseconds timeout = default_timeout, bool head = false) {
    reader_.restart(head ? [](std::size_t, const http_response&) { return true; } : head_predicate());
    read_until(response_reader::stop_at::message, clock::now() + timeout);
    return without_trailing_whitespace(std::move(reader_.responses().back()));
  }

  /// Reads `count` responses in order.
  std::vector<http_response> read_responses(std::size_t count, std::chrono::milliseconds timeout = default_timeout) {
    const auto deadline = clock::now() + timeout;
    std::vector<http_response> all;
    for (std::size_t i = 0; i < count; ++i)
      all.push_back(
          read_response(std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()), 0ms)));
    return all;
  }

  /// True if the server closes the connection (end of file or reset) within
  /// `timeout` and sent nothing more before it; false if the connection is
  /// still open when the time is up, or more bytes arrived.
  bool server_closed(std::chrono::milliseconds timeout) {
    if (!in_.empty()) return false;
    if (eof_) return true;
    const auto deadline = clock::now() + timeout;
    for (int i = 0; i < 1000; ++i) {
      if (!wait_for(POLLIN, deadline)) return false;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return eof_ = true;
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
        return false;
      }
      if (errno != EINTR && errno != EAGAIN) fail_errno("recv");
    }
    return false;
  }

  /// Bytes received but not yet parsed into a response.
  const std::string& unread() const noexcept { return in_; }

  /// True if the server has already closed the connection (end of file or
  /// reset) and sent nothing unread; never waits. A client checks this
  /// before reusing a keep-alive connection, as real clients do, so that a
  /// connection closed between two requests is told apart from a request
  /// the server dropped.
  bool server_closed_now() {
    if (!in_.empty()) return false;
    if (eof_) return true;
    char byte;
    ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) return eof_ = true;
    return false;
  }

  /// The client's own port (the server sees the connection as coming from it).
  std::uint16_t local_port() const {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) fail_errno("getsockname");
    return ntohs(addr.sin_port);
  }

  // --- Lower-level access, for tests of framing, timing and flow control ---

  /// Sends as much of `bytes` as the server takes: stops when all is sent or
  /// when the socket stays unwritable for `stall`. Returns the bytes sent.
  std::size_t send_some(std::string_view bytes, std::chrono::milliseconds stall) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        if (!wait_for(POLLOUT, clock::now() + stall)) break;
      } else {
        fail_errno("send");
      }
    }
    return sent;
  }

  /// Reads the status line and header fields of the next response and leaves
  /// its body unread, for read_chunk() or read_exactly().
  http_response read_head(std::chrono::milliseconds timeout = default_timeout) {
    reader_.restart();
    read_until(response_reader::stop_at::head, clock::now() + timeout);
    return without_trailing_whitespace(reader_.responses().back());
  }

  /// Reads the next chunk of a chunked body whose head read_head() returned:
  /// its data, or nothing for the last chunk (its trailer section is read too).
  std::optional<std::string> read_chunk(std::chrono::milliseconds timeout = default_timeout) {
    read_until(response_reader::stop_at::chunk, clock::now() + timeout);
    if (reader_.responses().back().complete) return std::nullopt;
    std::string data(reader_.last_chunk());
    reader_.responses().back().body.clear();  // a stream may run long
    return data;
  }

  /// Reads exactly `n` raw bytes (e.g. of a body whose head read_head() returned).
  std::string read_exactly(std::size_t n, std::chrono::milliseconds timeout = default_timeout) {
    return take(n, clock::now() + timeout);
  }

  /// Reads and drops whatever arrives until the server closes the connection
  /// (end of file or reset); true if it did within `timeout`. `dropped`, if
  /// given, receives how many bytes were dropped.
  bool drain_until_closed(std::chrono::milliseconds timeout, std::size_t* dropped = nullptr) {
    const auto deadline = clock::now() + timeout;
    std::size_t total = std::exchange(in_, {}).size();
    bool closed = eof_;
    for (int i = 0; i < 1'000'000 && !closed; ++i) {
      if (!wait_for(POLLIN, deadline)) break;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        total += static_cast<std::size_t>(n);
      } else if (n == 0 || errno == ECONNRESET) {
        closed = eof_ = true;
      } else if (errno != EINTR && errno != EAGAIN) {
        fail_errno("recv");
      }
    }
    if (dropped) *dropped = total;
    return closed;
  }

  /// True when bytes, or the end of the connection, arrive within `timeout`
  /// (or are already waiting); nothing is consumed.
  bool has_data(std::chrono::milliseconds timeout) {
    if (!in_.empty() || eof_) return true;
    return wait_for(POLLIN, clock::now() + timeout);
  }

  /// Closes the connection abortively: the server sees a reset, not an
  /// orderly end of file. The client is unusable afterwards.
  void reset() {
    linger abort{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  using clock = std::chrono::steady_clock;

  [[noreturn]] static void fail_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
  }
  [[noreturn]] void malformed(const std::string& what) const {
    throw std::runtime_error("malformed response: " + what);
  }

  void connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    const std::string where = host + ":" + std::to_string(port);
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
      throw std::invalid_argument("not a numeric IPv4 address: " + host);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      if (errno != EINPROGRESS) fail_errno("connect to " + where);
      if (!wait_for(POLLOUT, clock::now() + timeout)) throw std::runtime_error("connect to " + where + " timed out");
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        errno = err;
        fail_errno("connect to " + where);
      }
    }
  }

  void connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::invalid_argument("unix socket path too long: " + path);
    std::copy(path.begin(), path.end(), addr.sun_path);
    const auto deadline = clock::now() + timeout;
    // A full accept queue makes a non-blocking connect fail with EAGAIN: retry
    // until the deadline.
    for (int attempt = 0; attempt < 1000; ++attempt) {
      if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return;
      if (errno != EAGAIN && errno != EINTR) fail_errno("connect to unix:" + path);
      if (clock::now() >= deadline) break;
      wait_for(POLLOUT, std::min(deadline, clock::now() + 10ms));
    }
    throw std::runtime_error("connect to unix:" + path + " timed out");
  }

  // Waits for `events` until `deadline`; false when the time is up.
  bool wait_for(short events, clock::time_point deadline) const {
    for (int i = 0; i < 1000; ++i) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r > 0) return true;
      if (r == 0) return false;
      if (errno != EINTR) fail_errno("poll");
    }
    return false;
  }

  // Appends what the socket has to in_; false at end of file. Throws when the
  // deadline passes first.
  bool fill(clock::time_point deadline) {
    if (eof_) return false;
    for (int i = 0; i < 1000; ++i) {
      if (!wait_for(POLLIN, deadline))
        throw std::runtime_error("timed out waiting for the server; received and not yet parsed: \"" + in_ + "\"");
      char buf[16384];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) {
        eof_ = true;
        return false;
      }
      if (errno != EINTR && errno != EAGAIN) fail_errno("recv");
    }
    return false;
  }

  // llhttp leaves the whitespace that may end a field value in it; a client
  // drops it (RFC 9110 §5.5), and tests compare values without it.
  static http_response without_trailing_whitespace(http_response res) {
    for (auto& [name, value] : res.headers)
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    return res;
  }

  // Feeds the reader what has arrived, and more as it comes, until it stops
  // at `where`; what follows the stop stays unread. Throws on a malformed
  // response, a close before its end and at the deadline.
  void read_until(response_reader::stop_at where, clock::time_point deadline) {
    std::size_t parsed = 0;  // bytes of this read, for the messages
    for (int i = 0; i < 1'000'000; ++i) {
      auto step = reader_.feed(in_, where);
      if (!reader_.error().empty()) malformed(reader_.error() + " after " + std::to_string(parsed) + " bytes");
      parsed += step.used;
      in_.erase(0, step.used);
      if (step.stopped) return;
      if (fill(deadline)) continue;
      // The server closed: the end of a body delimited by the close, or a
      // response cut short.
      if (!reader_.responses().empty() && reader_.finish() && reader_.responses().back().complete) return;
      malformed("connection closed after " + std::to_string(parsed) + " bytes of a response");
    }
    malformed("a response of more than a million reads");
  }

  std::string take(std::size_t n, clock::time_point deadline) {
    while (in_.size() < n)
      if (!fill(deadline))
        malformed("connection closed after " + std::to_string(in_.size()) + " of " + std::to_string(n) + " body bytes");
    std::string bytes = in_.substr(0, n);
    in_.erase(0, n);
    return bytes;
  }

  int fd_ = -1;
  std::string in_;  // received, not yet parsed
  bool eof_ = false;
  response_reader reader_;
};

}  // namespace test_support
