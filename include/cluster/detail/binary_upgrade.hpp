// The binary upgrade handover (SIGUSR2), nginx's way: the running master
// starts the program file as it is on disk now, passing its listening
// sockets by descriptor number in the environment, and waits on a pipe for
// the new master to say that every slot has a ready worker. This file holds
// what both sides need: the program's path and arguments captured at start,
// the environment encoding, the spawn, and the readiness word.
#pragma once

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <cluster/detail/socket_activation.hpp>

extern char** environ;

namespace cluster::detail {

/// Slot sockets handed to a new master, in slot order: "7,8,9".
inline constexpr const char* upgrade_listeners_env = "CLUSTER_UPGRADE_LISTENERS";
/// The admin listener handed over, when there is one.
inline constexpr const char* upgrade_admin_env = "CLUSTER_UPGRADE_ADMIN";
/// The write end of the old master's readiness pipe.
inline constexpr const char* upgrade_ready_fd_env = "CLUSTER_UPGRADE_READY_FD";

/// The byte a new master writes on the pipe once every slot has a ready
/// worker; the pipe closing without it means the new master failed.
inline constexpr char upgrade_ready_byte = 'R';

/// What to start again: the program file's path and the arguments, taken at
/// start. The path is resolved then because after a new build is moved over
/// the file, /proc/self/exe names the old, deleted inode.
struct program_image {
  std::string path;
  std::vector<std::string> arguments;  ///< argv, argv[0] included

  /// The running program's (from /proc/self). Throws std::runtime_error.
  static program_image of_this_process() {
    program_image image;
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw std::runtime_error(std::string("cluster: cannot resolve the program file: ") + std::strerror(errno));
    image.path.assign(buf, static_cast<std::size_t>(n));
    std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    for (std::size_t at = 0; at < all.size();) {
      std::size_t end = all.find('\0', at);
      if (end == std::string::npos) end = all.size();
      image.arguments.push_back(all.substr(at, end - at));
      at = end + 1;
    }
    if (image.arguments.empty()) image.arguments.push_back(image.path);
    return image;
  }
};

/// The sockets a new master takes over from the old one.
struct handed_over {
  std::vector<int> slots;  ///< listening sockets, slot 0 first
  int admin = -1;          ///< the admin listener, or -1
  int ready_fd = -1;       ///< where to write upgrade_ready_byte, or -1

  bool empty() const noexcept { return slots.empty(); }
};

/// "7,8,9".
inline std::string encode_descriptors(const std::vector<int>& fds) {
  std::string s;
  for (int fd : fds) {
    if (!s.empty()) s += ',';
    s += std::to_string(fd);
  }
  return s;
}

/// Parses the handover variables (null: unset). Every descriptor must be a
/// listening stream socket (the ready pipe excepted). Throws
/// std::invalid_argument naming the variable at fault.
inline handed_over parse_handover(const char* listeners, const char* admin, const char* ready_fd) {
  auto descriptor = [](std::string_view text, const char* variable) {
    int fd = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || fd < 0)
      throw std::invalid_argument(std::string(variable) + ": \"" + std::string(text) + "\" is not a descriptor number");
    return fd;
  };
  handed_over h;
  if (!listeners) return h;
  std::string_view rest(listeners);
  for (;;) {
    auto comma = rest.find(',');
    int fd = descriptor(rest.substr(0, comma), upgrade_listeners_env);
    check_listening_socket(fd, std::string(upgrade_listeners_env) + " descriptor " + std::to_string(fd));
    h.slots.push_back(fd);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (admin) {
    h.admin = descriptor(admin, upgrade_admin_env);
    check_listening_socket(h.admin, std::string(upgrade_admin_env) + " descriptor " + std::to_string(h.admin));
  }
  if (ready_fd) h.ready_fd = descriptor(ready_fd, upgrade_ready_fd_env);
  for (int fd : h.slots) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (h.admin >= 0) ::fcntl(h.admin, F_SETFD, FD_CLOEXEC);
  if (h.ready_fd >= 0) ::fcntl(h.ready_fd, F_SETFD, FD_CLOEXEC);
  return h;
}

/// The handover this process was started with, if any; the variables are
/// removed so that the workers (and a later upgrade) do not see them.
inline handed_over take_handover() {
  auto h = parse_handover(std::getenv(upgrade_listeners_env), std::getenv(upgrade_admin_env),
                          std::getenv(upgrade_ready_fd_env));
  for (const char* v : {upgrade_listeners_env, upgrade_admin_env, upgrade_ready_fd_env}) ::unsetenv(v);
  return h;
}

/// Tells the old master that every slot is ready (once; closes the pipe).
inline void announce_upgrade_ready(handed_over& h) noexcept {
  if (h.ready_fd < 0) return;
  ssize_t ignored = ::write(h.ready_fd, &upgrade_ready_byte, 1);
  (void)ignored;
  ::close(h.ready_fd);
  h.ready_fd = -1;
}

/// Starts `image` as a new master holding `pass` (descriptors stay open across
/// exec, their numbers in the environment). Returns the child's pid, or -1
/// with errno set. Safe inside an event handler of the single-threaded
/// master (unlike a worker's fork): the child only adjusts descriptors and
/// signals, then execs, and never returns into Asio code.
inline pid_t spawn_upgrade(const program_image& image, const handed_over& pass) {
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_text;
  for (char** e = environ; e && *e; ++e) {
    std::string_view v(*e);
    if (v.starts_with("CLUSTER_UPGRADE_") || v.starts_with("LISTEN_")) continue;
    env_text.emplace_back(v);
  }
  env_text.push_back(std::string(upgrade_listeners_env) + "=" + encode_descriptors(pass.slots));
  if (pass.admin >= 0) env_text.push_back(std::string(upgrade_admin_env) + "=" + std::to_string(pass.admin));
  if (pass.ready_fd >= 0) env_text.push_back(std::string(upgrade_ready_fd_env) + "=" + std::to_string(pass.ready_fd));
  std::vector<char*> envp, argv;
  for (auto& s : env_text) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = image.arguments;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<int> keep = pass.slots;
  if (pass.admin >= 0) keep.push_back(pass.admin);
  if (pass.ready_fd >= 0) keep.push_back(pass.ready_fd);

  pid_t pid = ::fork();
  if (pid != 0) return pid;
  for (int fd : keep) ::fcntl(fd, F_SETFD, 0);
  // The new master must not inherit the old one's blocked signals.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);  // ignored by the old master; exec would keep that
  ::execve(image.path.c_str(), argv.data(), envp.data());
  ::_exit(127);
}

}  // namespace cluster::detail
