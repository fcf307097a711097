// systemd's service notification protocol (sd_notify(3)), written by hand so
// the core needs no libsystemd: one datagram of "KEY=value" lines per state
// change, sent to the AF_UNIX socket named by $NOTIFY_SOCKET. Outside systemd
// (no such variable) every call is a no-op.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cluster/detail/log.hpp>

namespace cluster::detail {

/// Sends READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 and MAINPID=
/// for the master. Not copyable: it owns its datagram socket.
class service_notifier {
 public:
  /// Disabled: every call does nothing.
  service_notifier() = default;

  /// Sends to `socket_path`: a file system path ("/run/...") or an abstract
  /// address ("@name"). `watchdog` is the service's WatchdogSec (0: none).
  service_notifier(std::string_view socket_path, std::chrono::microseconds watchdog) : watchdog_(watchdog) {
    if (socket_path.empty()) return;
    if ((socket_path[0] != '/' && socket_path[0] != '@') || socket_path.size() >= sizeof(address_.sun_path)) {
      log_line("master", "NOTIFY_SOCKET=" + std::string(socket_path) +
                             " is not an AF_UNIX path or @abstract name; no notifications will be sent");
      return;
    }
    address_.sun_family = AF_UNIX;
    std::memcpy(address_.sun_path, socket_path.data(), socket_path.size());
    if (socket_path[0] == '@') address_.sun_path[0] = '\0';  // abstract namespace
    address_size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) log_line("master", std::string("cannot open the notification socket: ") + std::strerror(errno));
  }

  /// From the environment systemd gives a Type=notify service: NOTIFY_SOCKET,
  /// and WATCHDOG_USEC when WATCHDOG_PID is unset or names this process.
  static service_notifier from_environment() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    if (!socket) return {};
    std::chrono::microseconds watchdog{0};
    const char* usec = std::getenv("WATCHDOG_USEC");
    const char* pid = std::getenv("WATCHDOG_PID");
    if (usec && (!pid || std::strtoll(pid, nullptr, 10) == ::getpid())) {
      char* end = nullptr;
      long long v = std::strtoll(usec, &end, 10);
      if (end && *end == '\0' && v > 0) watchdog = std::chrono::microseconds(v);
    }
    return service_notifier(socket, watchdog);
  }

  service_notifier(service_notifier&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), address_(o.address_), address_size_(o.address_size_), watchdog_(o.watchdog_) {}
  service_notifier& operator=(service_notifier&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
      address_ = o.address_;
      address_size_ = o.address_size_;
      watchdog_ = o.watchdog_;
    }
    return *this;
  }
  ~service_notifier() { close(); }

  /// True when notifications go somewhere.
  bool enabled() const noexcept { return fd_ >= 0; }

  /// How often to send WATCHDOG=1: half the service's watchdog timeout, as
  /// sd_watchdog_enabled(3) advises; zero when no watchdog is configured.
  std::chrono::microseconds watchdog_interval() const noexcept { return watchdog_ / 2; }

  /// Every slot has a ready worker (also: a reload has ended).
  void ready(std::string_view status) { send("READY=1\nSTATUS=" + std::string(status)); }

  /// A rolling reload begins; Type=notify-reload requires the monotonic time
  /// of the request with it (sd_notify(3), RELOADING=1).
  void reloading(std::string_view status) {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    auto usec = static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1'000;
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + std::string(status));
  }

  /// The graceful stop has begun.
  void stopping(std::string_view status) { send("STOPPING=1\nSTATUS=" + std::string(status)); }

  /// A free-form status line for `systemctl status`.
  void status(std::string_view status) { send("STATUS=" + std::string(status)); }

  /// The master's loop is alive (only call it from that loop).
  void watchdog() { send("WATCHDOG=1"); }

  /// Another process is now the service's main process (binary upgrade).
  void main_pid(pid_t pid) { send("MAINPID=" + std::to_string(pid)); }

  /// Sends one datagram; returns false when it could not be sent (logged once:
  /// a missing systemd must not flood the log).
  bool send(std::string_view state) noexcept {
    if (fd_ < 0) return false;
    ssize_t n = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address_),
                         address_size_);
    if (n == static_cast<ssize_t>(state.size())) return true;
    if (!failure_logged_) {
      failure_logged_ = true;
      log_line("master", std::string("cannot notify systemd: ") + std::strerror(errno));
    }
    return false;
  }

 private:
  void close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  sockaddr_un address_{};
  socklen_t address_size_ = 0;
  std::chrono::microseconds watchdog_{0};
  bool failure_logged_ = false;
};

}  // namespace cluster::detail
