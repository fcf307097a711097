// Child processes for integration tests: spawn a program with posix_spawn
// (never fork the test runner), read its output with bounded waits, and stop
// it by PID from a destructor so that a failed assertion leaves nothing
// running. `cluster_process` adds what a cluster master needs on top: the
// ready line, the port, its workers (found through /proc) and its log.
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
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

#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
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

/// What /proc/<pid>/stat says about a process.
struct process_status {
  char state = 0;  ///< R, S, D, Z, ...
  pid_t ppid = 0;
  unsigned long long cpu_ticks = 0;  ///< utime + stime, in clock ticks (sysconf(_SC_CLK_TCK) a second)
};

/// The state and parent of `pid`, or nothing if there is no such process.
inline std::optional<process_status> read_process_status(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(file, stat)) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close_paren + 1));
  process_status st;
  if (!(rest >> st.state >> st.ppid)) return std::nullopt;
  // pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt, then utime stime.
  std::string skipped;
  for (int i = 0; i < 9; ++i) rest >> skipped;
  unsigned long long utime = 0, stime = 0;
  if (rest >> utime >> stime) st.cpu_ticks = utime + stime;
  return st;
}

/// True while `pid` names a process that is not a zombie.
inline bool process_alive(pid_t pid) {
  auto st = read_process_status(pid);
  return st && st->state != 'Z' && st->state != 'X';
}

/// Open descriptors of `pid` (entries of /proc/PID/fd), or 0 if it is gone.
inline std::size_t count_fds(pid_t pid) {
  std::size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

/// Live processes whose parent is `parent`, read from /proc. Zombies are left
/// out: they are dead, only not yet reaped.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = ::opendir("/proc");
  if (!proc) throw_errno("opendir(/proc)");
  while (dirent* entry = ::readdir(proc)) {
    pid_t pid = 0;
    std::string_view name = entry->d_name;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc{} || end != name.data() + name.size()) continue;
    auto st = read_process_status(pid);  // nothing if it exited meanwhile
    if (st && st->ppid == parent && st->state != 'Z' && st->state != 'X') children.push_back(pid);
  }
  ::closedir(proc);
  return children;
}

/// Live processes in process group `group`, read from /proc (zombies left
/// out). A child_process is the leader of its own group and its workers
/// inherit it, so this finds what a cluster left behind, even reparented.
inline std::vector<pid_t> group_members(pid_t group) {
  std::vector<pid_t> members;
  DIR* proc = ::opendir("/proc");
  if (!proc) throw_errno("opendir(/proc)");
  while (dirent* entry = ::readdir(proc)) {
    pid_t pid = 0;
    std::string_view name = entry->d_name;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc{} || end != name.data() + name.size()) continue;
    std::ifstream file("/proc/" + std::string(name) + "/stat");
    std::string stat;
    if (!std::getline(file, stat)) continue;  // exited meanwhile
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(close_paren + 1));
    char state = 0;
    pid_t ppid = 0, pgrp = 0;
    if (rest >> state >> ppid >> pgrp && pgrp == group && state != 'Z' && state != 'X') members.push_back(pid);
  }
  ::closedir(proc);
  return members;
}

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

/// A cluster master started with `--host 127.0.0.1 --port 0 --workers N`,
/// ready (every worker accepting) when the constructor returns.
class cluster_process {
 public:
  static constexpr auto ready_timeout = 10s;

  /// Starts `binary` and waits for its ready line; throws with the master's
  /// stderr if it does not come within ready_timeout.
  /// `extra_env` ("NAME=value" entries) is added to the runner's environment.
  /// `launcher`, if given, is a command that execs the rest in the same
  /// process (e.g. {"/usr/bin/prlimit", "--nofile=64:64"}).
  explicit cluster_process(const std::string& binary, int workers = 2, std::vector<std::string> extra_args = {},
                           const std::vector<std::string>& extra_env = {}, std::vector<std::string> launcher = {})
      : child_(arguments(std::move(launcher), binary, workers, std::move(extra_args)), output::capture,
               output::capture, extra_env),
        workers_(workers) {
    auto line = child_.read_stdout_line(ready_timeout);
    if (!line) {
      auto status = child_.wait_exit(500ms);  // did it exit, or is it stuck?
      throw std::runtime_error("no ready line from " + binary + " (" +
                               (status ? "it exited with wait status " + std::to_string(*status)
                                       : "still running after " + std::to_string(ready_timeout.count()) + " s") +
                               "); its stderr:\n" + child_.stderr_text());
    }
    ready_line_ = *line;
    // "cluster: master <PID> listening on http://127.0.0.1:<PORT> with <N> workers"
    const std::string master = "cluster: master " + std::to_string(child_.pid()) + " listening on ";
    const std::string address = "http://127.0.0.1:";
    auto at = ready_line_.find(address);
    if (!ready_line_.starts_with(master) || at == std::string::npos)
      throw std::runtime_error("unexpected ready line: " + ready_line_);
    const char* digits = ready_line_.data() + at + address.size();
    auto [end, ec] = std::from_chars(digits, ready_line_.data() + ready_line_.size(), port_);
    if (ec != std::errc{} || port_ <= 0 || port_ > 65535)
      throw std::runtime_error("no port in ready line: " + ready_line_);
    std::string_view rest(end);
    const std::string announced = " with " + std::to_string(workers) + " workers";
    if (!rest.starts_with(announced))
      throw std::runtime_error("ready line does not announce " + std::to_string(workers) + " workers: " + ready_line_);
    rest.remove_prefix(announced.size());
    // With --admin: "..., admin on http://127.0.0.1:<PORT>" or ", admin on unix:<PATH>".
    if (constexpr std::string_view admin = ", admin on "; rest.starts_with(admin)) {
      admin_url_ = std::string(rest.substr(admin.size()));
      rest = {};
    }
    if (!rest.empty()) throw std::runtime_error("unexpected end of the ready line: " + ready_line_);
  }

  cluster_process(const cluster_process&) = delete;
  cluster_process& operator=(const cluster_process&) = delete;

  /// Kills the cluster (child_process does), and fails the running test if a
  /// sanitizer reported anything in the cluster's log: UBSan keeps the
  /// process running, so no other assertion would notice.
  ~cluster_process() {
    std::string log = child_.stderr_text();
    if (log.find("Sanitizer") != std::string::npos || log.find("runtime error:") != std::string::npos)
      FAIL_CHECK("sanitizer report in the cluster's log:\n", log);
  }

  pid_t pid() const noexcept { return child_.pid(); }
  std::uint16_t port() const noexcept { return static_cast<std::uint16_t>(port_); }
  int workers() const noexcept { return workers_; }
  const std::string& ready_line() const noexcept { return ready_line_; }

  /// The admin endpoint announced in the ready line ("http://127.0.0.1:9090",
  /// "unix:/run/x.sock"), empty without --admin.
  const std::string& admin_url() const noexcept { return admin_url_; }

  /// The admin endpoint's TCP port on 127.0.0.1; throws if the ready line
  /// announced none.
  std::uint16_t admin_port() const {
    const std::string prefix = "http://127.0.0.1:";
    int port = 0;
    if (admin_url_.starts_with(prefix)) {
      const char* digits = admin_url_.data() + prefix.size();
      auto [end, ec] = std::from_chars(digits, admin_url_.data() + admin_url_.size(), port);
      if (ec == std::errc{} && end == admin_url_.data() + admin_url_.size() && port > 0 && port <= 65535)
        return static_cast<std::uint16_t>(port);
    }
    throw std::runtime_error("no admin endpoint on 127.0.0.1 in the ready line: " + ready_line_);
  }

  /// The master's live children: its workers.
  std::vector<pid_t> worker_pids() const { return children_of(child_.pid()); }

  /// Sends `signo` to the master.
  void signal(int signo) const { child_.signal(signo); }

  /// Waits up to `timeout` for the master to exit; its wait status, if it did.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) { return child_.wait_exit(timeout); }

  /// The master's and workers' lifecycle log so far.
  std::string stderr_text() const { return child_.stderr_text(); }

  /// Waits up to `timeout` for the log to contain `text`.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
    return wait_until([&] { return stderr_text().find(text) != std::string::npos; }, timeout);
  }

 private:
  static std::vector<std::string> arguments(std::vector<std::string> argv, const std::string& binary, int workers,
                                            std::vector<std::string> extra) {
    argv.insert(argv.end(), {binary, "--host", "127.0.0.1", "--port", "0", "--workers", std::to_string(workers)});
    argv.insert(argv.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
    return argv;
  }

  child_process child_;
  int workers_;
  int port_ = 0;
  std::string ready_line_;
  std::string admin_url_;
};

}  // namespace test_support
