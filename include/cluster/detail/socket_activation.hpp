// Socket activation (sd_listen_fds(3)): the listening sockets systemd (or
// systemd-socket-activate) opened for the service and passed from descriptor
// 3 on, described by LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. Read once by
// the master, checked (each must be a listening stream socket), and removed
// from the environment so the workers and any program they start do not
// take them for their own.
#pragma once

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cluster::detail {

/// One passed socket and its name (LISTEN_FDNAMES; systemd's default name is
/// "unknown", a .socket unit's FileDescriptorName= sets it).
struct activated_socket {
  int fd = -1;
  std::string name;
};

/// First descriptor systemd passes (SD_LISTEN_FDS_START).
inline constexpr int listen_fds_start = 3;

/// Most passed sockets accepted: far more than any service needs, few enough
/// that a corrupt LISTEN_FDS cannot make the master walk the descriptor table.
inline constexpr int max_activated_sockets = 64;

/// Throws std::invalid_argument("<what> is not ...") unless `fd` is a
/// listening stream socket: what a master can adopt instead of binding.
inline void check_listening_socket(int fd, const std::string& what) {
  struct stat st{};
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) throw std::invalid_argument(what + " is not a socket");
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
    throw std::invalid_argument(what + " is not a stream socket (ListenStream= in a .socket unit)");
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
    throw std::invalid_argument(what + " is not listening (Accept=no in a .socket unit)");
}

/// Parses the three variables as given (null: unset) for the process `self`.
/// Returns nothing when LISTEN_PID is unset or names another process (the
/// variables were meant for a parent). Throws std::invalid_argument naming
/// the variable or descriptor at fault.
inline std::vector<activated_socket> parse_activated_sockets(const char* listen_pid, const char* listen_fds,
                                                             const char* listen_fdnames, pid_t self,
                                                             int first_fd = listen_fds_start) {
  auto number = [](const char* text, const char* variable, long long lo, long long hi) {
    std::string_view s(text);
    long long v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi)
      throw std::invalid_argument(std::string(variable) + "=" + std::string(s) + ": expected a number in " +
                                  std::to_string(lo) + ".." + std::to_string(hi));
    return v;
  };
  if (!listen_pid || !listen_fds) return {};
  if (number(listen_pid, "LISTEN_PID", 1, 1LL << 31) != self) return {};
  const int count = static_cast<int>(number(listen_fds, "LISTEN_FDS", 0, max_activated_sockets));

  std::vector<std::string> names;
  if (listen_fdnames) {
    std::string_view rest(listen_fdnames);
    for (;;) {
      auto colon = rest.find(':');
      names.emplace_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    if (static_cast<int>(names.size()) != count)
      throw std::invalid_argument("LISTEN_FDNAMES=" + std::string(listen_fdnames) + ": names " +
                                  std::to_string(names.size()) + " sockets, LISTEN_FDS passes " +
                                  std::to_string(count));
  }

  std::vector<activated_socket> out;
  for (int i = 0; i < count; ++i) {
    activated_socket s{first_fd + i, listen_fdnames ? names[static_cast<std::size_t>(i)] : "unknown"};
    check_listening_socket(s.fd, "passed descriptor " + std::to_string(s.fd) + " (" + s.name + ")");
    // Not for programs the service may start; the workers get it by fork.
    ::fcntl(s.fd, F_SETFD, FD_CLOEXEC);
    out.push_back(std::move(s));
  }
  return out;
}

/// The sockets passed to this process, taken from the environment (the
/// variables are removed, as sd_listen_fds(1) does). Throws
/// std::invalid_argument naming the variable or descriptor at fault.
inline std::vector<activated_socket> take_activated_sockets() {
  auto sockets = parse_activated_sockets(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                                         std::getenv("LISTEN_FDNAMES"), ::getpid());
  for (const char* v : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(v);
  return sockets;
}

}  // namespace cluster::detail
