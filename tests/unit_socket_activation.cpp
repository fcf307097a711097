// Unit tests: reading the sockets a service manager passes (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES), with descriptors this test places at
// consecutive numbers, as systemd places them from 3 on.
#include <doctest/doctest.h>

#include <cluster/detail/socket_activation.hpp>

#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using cluster::detail::parse_activated_sockets;

constexpr int base = 700;  // far above what the test runner has open

// Places a socket of `type` (listening or not) at descriptor `at`.
void place(int at, int type, bool listen) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (listen) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
  }
  REQUIRE(::dup2(fd, at) == at);
  ::close(fd);
}

struct placed {
  explicit placed(int n) : n_(n) {}
  ~placed() {
    for (int i = 0; i < n_; ++i) ::close(base + i);
  }
  int n_;
};

std::string pid_text(pid_t p) { return std::to_string(p); }

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("socket activation: the passed listening sockets are taken in order, with their names") {
    placed guard(2);
    place(base, SOCK_STREAM, true);
    place(base + 1, SOCK_STREAM, true);
    ::fcntl(base, F_SETFD, 0);
    auto s = parse_activated_sockets(pid_text(::getpid()).c_str(), "2", "http:admin", ::getpid(), base);
    REQUIRE(s.size() == 2);
    CHECK(s[0].fd == base);
    CHECK(s[0].name == "http");
    CHECK(s[1].fd == base + 1);
    CHECK(s[1].name == "admin");
    CHECK((::fcntl(base, F_GETFD) & FD_CLOEXEC) != 0);  // not inherited by programs the service starts
    auto unnamed = parse_activated_sockets(pid_text(::getpid()).c_str(), "1", nullptr, ::getpid(), base);
    REQUIRE(unnamed.size() == 1);
    CHECK(unnamed[0].name == "unknown");  // systemd's default name
  }

  TEST_CASE("socket activation: variables meant for another process, or absent, pass nothing") {
    CHECK(parse_activated_sockets(nullptr, nullptr, nullptr, ::getpid(), base).empty());
    CHECK(parse_activated_sockets(pid_text(::getpid() + 1).c_str(), "1", nullptr, ::getpid(), base).empty());
    CHECK(parse_activated_sockets(pid_text(::getpid()).c_str(), "0", nullptr, ::getpid(), base).empty());
  }

  TEST_CASE("socket activation: malformed variables are refused, naming the variable") {
    const std::string me = pid_text(::getpid());
    auto message = [&](const char* pid, const char* fds, const char* names) {
      try {
        parse_activated_sockets(pid, fds, names, ::getpid(), base);
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      }
      return std::string("(accepted)");
    };
    CHECK(message("12x", "1", nullptr).starts_with("LISTEN_PID=12x"));
    CHECK(message(me.c_str(), "-1", nullptr).starts_with("LISTEN_FDS=-1: expected a number in 0..64"));
    CHECK(message(me.c_str(), "65", nullptr).starts_with("LISTEN_FDS=65"));
    CHECK(message(me.c_str(), "", nullptr).starts_with("LISTEN_FDS="));
    placed guard(2);
    place(base, SOCK_STREAM, true);
    place(base + 1, SOCK_STREAM, true);
    CHECK(message(me.c_str(), "2", "http").starts_with("LISTEN_FDNAMES=http: names 1 sockets, LISTEN_FDS passes 2"));
    CHECK(message(me.c_str(), "1", "a:b").starts_with("LISTEN_FDNAMES=a:b"));
  }

  TEST_CASE("socket activation: a descriptor that is not a listening stream socket is refused, naming it") {
    const std::string me = pid_text(::getpid());
    auto message = [&]() {
      try {
        parse_activated_sockets(me.c_str(), "1", "web", ::getpid(), base);
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      }
      return std::string("(accepted)");
    };
    placed guard(1);
    ::close(base);
    CHECK(message() == "passed descriptor 700 (web) is not a socket");
    int p[2];
    REQUIRE(::pipe(p) == 0);
    REQUIRE(::dup2(p[0], base) == base);
    ::close(p[0]);
    ::close(p[1]);
    CHECK(message() == "passed descriptor 700 (web) is not a socket");
    place(base, SOCK_DGRAM, false);
    CHECK(message().starts_with("passed descriptor 700 (web) is not a stream socket"));
    place(base, SOCK_STREAM, false);
    CHECK(message().starts_with("passed descriptor 700 (web) is not listening"));
  }
}
