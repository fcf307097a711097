// Child processes for integration tests: spawn a program with posix_spawn
// (never fork the test runner), read its output with bounded waits, and stop
// it by PID from a destructor so that a failed assertion leaves nothing
// running. A cluster under test is cluster_process (cluster_process.hpp);
// what /proc says about a process is in proc.hpp.
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace test_support {

using namespace std::chrono_literals;
using test_clock = std::chrono::steady_clock;

/// Polls `condition` every `interval` until it holds or `timeout` passes;
/// returns whether it held. The readiness wait of every test: never a fixed
/// sleep standing in for synchronisation.
template <class Condition>
bool wait_until(Condition condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 5ms) {
  const auto deadline = test_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (test_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

/// The path in environment variable `name` (set by tests/meson.build), or an
/// exception saying how to run the tests.
inline std::string binary_from_env(const char* name) {
  const char* path = std::getenv(name);
  if (!path || !*path)
    throw std::runtime_error(std::string(name) +
                             " is not set: run the integration tests with `meson test -C build integration`");
  return path;
}

/// Installs the program file `build` as `program` the way a deploy does: a
/// new file renamed over the old one, so that a running master keeps the
/// old inode and the next start or binary upgrade runs the new build.
inline void install_program(const std::string& build, const std::string& program) {
  const std::string next = program + ".next";
  std::filesystem::copy_file(build, next, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(next, std::filesystem::perms::owner_all);
  std::filesystem::rename(next, program);
}

/// A launcher (see cluster_process) that runs a program with at most `n`
/// open descriptors, and without CAP_SYS_RESOURCE so that a master running
/// as root cannot raise its hard limit: the descriptor exhaustion tests.
inline std::vector<std::string> with_descriptor_limit(int n) {
  return {"/usr/bin/prlimit", "--nofile=" + std::to_string(n) + ":" + std::to_string(n), "/usr/bin/setpriv",
          "--bounding-set=-sys_resource", "--inh-caps=-sys_resource"};
}

/// An owned file descriptor.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] inline void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

/// Where a child's standard output or error goes.
enum class output {
  inherit,  ///< the test runner's own stream
  capture,  ///< kept for the test to read
};

/// A spawned program, in its own process group. The destructor SIGKILLs the
/// group and reaps the child, whatever state the test left it in.
class child_process {
  static constexpr const char* setpriv = "/usr/bin/setpriv";

 public:
  /// Starts `argv[0]` with arguments `argv`. The child gets default signal
  /// dispositions and an empty signal mask, whatever the test runner set, and
  /// the runner's environment with `extra_env` ("NAME=value" entries) added
  /// or overriding.
  child_process(const std::vector<std::string>& argv, output out, output err,
                const std::vector<std::string>& extra_env = {}) {
    if (argv.empty()) throw std::invalid_argument("child_process: empty argv");
    if (::access(argv[0].c_str(), X_OK) != 0) throw_errno("cannot execute " + argv[0]);
    unique_fd stdout_write;
    if (out == output::capture) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
      stdout_.reset(fds[0]);
      stdout_write.reset(fds[1]);
    }
    if (err == output::capture) {
      // A memory file, not a pipe: the child can never block on a full
      // buffer, and the test reads it whenever it likes.
      stderr_.reset(::memfd_create("child-stderr", MFD_CLOEXEC));
      if (!stderr_) throw_errno("memfd_create");
      // The master and its workers share this file: append, never overwrite.
      if (::fcntl(stderr_.get(), F_SETFL, O_APPEND) != 0) throw_errno("fcntl O_APPEND");
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    if (stdout_write) posix_spawn_file_actions_adddup2(&actions, stdout_write.get(), STDOUT_FILENO);
    if (stderr_) posix_spawn_file_actions_adddup2(&actions, stderr_.get(), STDERR_FILENO);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    // Its own process group, so that killing the group also reaches any
    // processes it forked.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    // The destructor cannot run if the test runner itself is killed (a
    // crash, a `meson test` timeout): through setpriv, the kernel then kills
    // the child too, and the workers follow their master. Without setpriv
    // (util-linux) only a runner that unwinds cleans up.
    std::vector<std::string> command;
    if (::access(setpriv, X_OK) == 0) command = {setpriv, "--pdeathsig", "KILL", "--"};
    command.insert(command.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (const std::string& a : command) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<char*> env;
    for (char** e = environ; *e; ++e) {
      std::string_view entry = *e;
      auto overridden = [&](const std::string& extra) {
        auto eq = extra.find('=');
        return entry.substr(0, entry.find('=')) == std::string_view(extra).substr(0, eq);
      };
      if (std::none_of(extra_env.begin(), extra_env.end(), overridden)) env.push_back(*e);
    }
    for (const std::string& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0], &actions, &attr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + argv[0]);
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() { kill_and_reap(); }

  pid_t pid() const noexcept { return pid_; }

  /// Sends `signo` to the child (not its group).
  void signal(int signo) const {
    if (!exited_ && ::kill(pid_, signo) != 0) throw_errno("kill " + std::to_string(pid_));
  }

  /// Waits up to `timeout` for the child to exit; returns its wait status, or
  /// nothing if it is still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    wait_until([this] { return try_reap(); }, timeout, 2ms);
    if (exited_) return status_;
    return std::nullopt;
  }

  /// Reads one line (without its '\n') from the captured stdout, waiting at
  /// most `timeout`; nothing if the deadline passes or stdout ends first.
  std::optional<std::string> read_stdout_line(std::chrono::milliseconds timeout) {
    const auto deadline = test_clock::now() + timeout;
    for (;;) {
      if (auto nl = stdout_buffer_.find('\n'); nl != std::string::npos) {
        std::string line = stdout_buffer_.substr(0, nl);
        stdout_buffer_.erase(0, nl + 1);
        return line;
      }
      if (!read_stdout_some(deadline)) return std::nullopt;
    }
  }

  /// Everything the child writes to stdout until it closes it, waiting at most
  /// `timeout` in all.
  std::string read_stdout_all(std::chrono::milliseconds timeout) {
    const auto deadline = test_clock::now() + timeout;
    while (read_stdout_some(deadline)) {
    }
    return std::exchange(stdout_buffer_, {});
  }

  /// What the child (and everything it forked) wrote to stderr so far.
  std::string stderr_text() const {
    if (!stderr_) return "(stderr not captured)";
    struct stat st{};
    if (::fstat(stderr_.get(), &st) != 0) return "(fstat failed)";
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    ssize_t n = ::pread(stderr_.get(), text.data(), text.size(), 0);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return text;
  }

 private:
  // Appends what stdout has before `deadline`; false at end of file, error
  // or deadline.
  bool read_stdout_some(test_clock::time_point deadline) {
    if (!stdout_) return false;
    for (int attempts = 0; attempts < 1000; ++attempts) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - test_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{stdout_.get(), POLLIN, 0};
      int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      char buf[4096];
      ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      stdout_buffer_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    return false;
  }

  bool try_reap() {
    if (exited_) return true;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
    }
    return exited_;
  }

  void kill_and_reap() noexcept {
    if (pid_ <= 0) return;
    // The group first (the master and its workers), then the child itself in
    // case it is no longer in its group.
    ::kill(-pid_, SIGKILL);
    if (exited_) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exited_ = true;
  }

  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  unique_fd stdout_;
  unique_fd stderr_;
  std::string stdout_buffer_;
};

/// While it lives, this test process adopts orphans (PR_SET_CHILD_SUBREAPER):
/// the new master of a binary upgrade outlives the old one, its parent, and
/// is then reaped here, by PID (stop_orphan, reap_orphan).
class subreaper {
 public:
  subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
  ~subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  subreaper(const subreaper&) = delete;
  subreaper& operator=(const subreaper&) = delete;
};

/// Waits up to `timeout` for adopted process `pid` to exit and reaps it;
/// its wait status, or nothing if it is still running (or not ours).
inline std::optional<int> reap_orphan(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  if (pid <= 0 || !wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout)) return std::nullopt;
  return status;
}

/// Stops a master this test did not start but adopted (by SIGTERM, then
/// SIGKILL after `timeout`) and reaps it; true when it exited 0 after SIGTERM.
inline bool stop_orphan(pid_t pid, std::chrono::milliseconds timeout = 10s) {
  if (pid <= 0) return false;
  ::kill(pid, SIGTERM);
  auto status = reap_orphan(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    status = reap_orphan(pid, timeout);
  }
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

/// Runs `argv` to completion with stdout and stderr captured.
struct finished_program {
  std::optional<int> status;  ///< wait status; nothing if it had to be killed
  std::string out;
  std::string err;
};

inline finished_program run_program(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  child_process child(argv, output::capture, output::capture);
  finished_program result;
  const auto deadline = test_clock::now() + timeout;
  result.out = child.read_stdout_all(timeout);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - test_clock::now());
  result.status = child.wait_exit(std::max(left, 0ms));
  result.err = child.stderr_text();
  return result;
}

/// Exit code of a wait status, or -1 when the process did not exit normally.
inline int exit_code(std::optional<int> status) {
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

}  // namespace test_support
