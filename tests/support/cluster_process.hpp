// The fixture of the integration tests: one cluster per test, started from
// one of the programs tests/meson.build builds with `--host 127.0.0.1
// --port 0 --workers N` (or another loopback address and a given port: a
// host of a fleet, restarted where its balancer expects it) and the test's
// options, ready (its ready line read,
// its port, admin endpoint and PID known) when the constructor returns, its
// log attached to every assertion that fails while it runs, and killed by PID
// (with its whole process group) in the destructor, whatever the test did.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "proc.hpp"
#include "process.hpp"

namespace test_support {

/// The programs the integration tests run, built by tests/meson.build.
enum class program {
  hello,      ///< examples/hello
  echo,       ///< examples/echo
  sse,        ///< examples/sse
  counter,    ///< examples/counter
  rest,       ///< examples/rest
  static_files,  ///< examples/static
  lifecycle,  ///< tests/servers/lifecycle.cpp
  messaging,  ///< tests/servers/messaging.cpp
};

/// The path of `p`, from the environment tests/meson.build sets; throws
/// saying how to run the tests when it is not set.
inline std::string path_of(program p) {
  switch (p) {
    case program::hello: return binary_from_env("CLUSTER_HELLO");
    case program::echo: return binary_from_env("CLUSTER_ECHO");
    case program::sse: return binary_from_env("CLUSTER_SSE");
    case program::counter: return binary_from_env("CLUSTER_COUNTER");
    case program::rest: return binary_from_env("CLUSTER_REST");
    case program::static_files: return binary_from_env("CLUSTER_STATIC");
    case program::lifecycle: return binary_from_env("CLUSTER_LIFECYCLE");
    case program::messaging: return binary_from_env("CLUSTER_MESSAGING");
  }
  throw std::invalid_argument("path_of: no such program");
}

/// The master's PID in a ready line ("cluster: master <PID> listening on
/// ..."), such as a new master's after a binary upgrade; 0 if there is none.
inline pid_t master_in_ready_line(const std::string& line) {
  pid_t pid = 0;
  return std::sscanf(line.c_str(), "cluster: master %d listening", &pid) == 1 ? pid : 0;
}

/// Where a cluster_process listens: `--host` and `--port`.
struct listen_at {
  std::string host = "127.0.0.1";  ///< a numeric IPv4 address; any of 127.0.0.0/8 needs no setup on Linux
  std::uint16_t port = 0;          ///< 0: one the kernel picks
};

/// A cluster master started with `--host HOST --port PORT --workers N`
/// (127.0.0.1 and port 0 unless told), ready (every worker accepting) when
/// the constructor returns.
class cluster_process {
 public:
  static constexpr auto ready_timeout = 10s;

  /// Starts `binary` and waits for its ready line; throws with the master's
  /// stderr if it does not come within ready_timeout.
  /// `extra_env` ("NAME=value" entries) is added to the runner's environment.
  /// `launcher`, if given, is a command that execs the rest in the same
  /// process (e.g. {"/usr/bin/prlimit", "--nofile=64:64"}). `where` gives
  /// `--host` and `--port`.
  explicit cluster_process(program binary, int workers = 2, std::vector<std::string> extra_args = {},
                           const std::vector<std::string>& extra_env = {}, std::vector<std::string> launcher = {},
                           const listen_at& where = {})
      : cluster_process(path_of(binary), workers, std::move(extra_args), extra_env, std::move(launcher), where) {}

  /// As above, for a program given by its path.
  explicit cluster_process(const std::string& binary, int workers = 2, std::vector<std::string> extra_args = {},
                           const std::vector<std::string>& extra_env = {}, std::vector<std::string> launcher = {},
                           const listen_at& where = {})
      : binary_(binary), extra_env_(extra_env), launcher_(std::move(launcher)), workers_(workers), host_(where.host) {
    start(where.port, std::move(extra_args));
  }

  /// Kills what is left of the cluster (its whole process group), keeps its
  /// log, and starts the same program again on the same address and port
  /// with `extra_args`: a host coming back where its balancer expects it.
  /// Throws as the constructor does.
  void restart(std::vector<std::string> extra_args) {
    if (child_) earlier_logs_ += child_->stderr_text() + "--- restarted on the same address and port ---\n";
    child_.reset();
    start(static_cast<std::uint16_t>(port_), std::move(extra_args));
  }

  cluster_process(const cluster_process&) = delete;
  cluster_process& operator=(const cluster_process&) = delete;

  /// Kills the cluster (child_process does), and fails the running test if a
  /// sanitizer reported anything in the cluster's log: UBSan keeps the
  /// process running, so no other assertion would notice.
  ~cluster_process() {
    std::string log = stderr_text();
    if (log.find("Sanitizer") != std::string::npos || log.find("runtime error:") != std::string::npos)
      FAIL_CHECK("sanitizer report in the cluster's log:\n", log);
  }

  pid_t pid() const noexcept { return child_->pid(); }
  /// The address it listens on (`--host`).
  const std::string& host() const noexcept { return host_; }
  std::uint16_t port() const noexcept { return static_cast<std::uint16_t>(port_); }
  int workers() const noexcept { return workers_; }
  const std::string& ready_line() const noexcept { return ready_line_; }

  /// The admin endpoint announced in the ready line ("http://127.0.0.1:9090",
  /// "unix:/run/x.sock"), empty without --admin.
  const std::string& admin_url() const noexcept { return admin_url_; }

  /// The admin endpoint's TCP port on the address it listens on (host());
  /// throws if the ready line announced none there.
  std::uint16_t admin_port() const {
    const std::string prefix = "http://" + host_ + ":";
    int port = 0;
    if (admin_url_.starts_with(prefix)) {
      const char* digits = admin_url_.data() + prefix.size();
      auto [end, ec] = std::from_chars(digits, admin_url_.data() + admin_url_.size(), port);
      if (ec == std::errc{} && end == admin_url_.data() + admin_url_.size() && port > 0 && port <= 65535)
        return static_cast<std::uint16_t>(port);
    }
    throw std::runtime_error("no admin endpoint on " + host_ + " in the ready line: " + ready_line_);
  }

  /// The master's live children: its workers.
  std::vector<pid_t> worker_pids() const { return children_of(child_->pid()); }

  /// True when the master has exactly `n` live workers, none of them in
  /// `gone`, and the log says each of them is ready.
  bool workers_ready(std::size_t n, const std::set<pid_t>& gone = {}) const {
    auto pids = worker_pids();
    if (pids.size() != n) return false;
    std::string log = stderr_text();
    return std::ranges::all_of(pids, [&](pid_t p) {
      return !gone.contains(p) && log.find("(pid " + std::to_string(p) + ") ready") != std::string::npos;
    });
  }

  /// Sends `signo` to the master.
  void signal(int signo) const { child_->signal(signo); }

  /// Waits up to `timeout` for the master to exit; its wait status, if it did.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) { return child_->wait_exit(timeout); }

  /// The next line the master (or a process it started) printed on stdout,
  /// such as a new master's ready line after a binary upgrade.
  std::optional<std::string> next_stdout_line(std::chrono::milliseconds timeout) {
    return child_->read_stdout_line(timeout);
  }

  /// The master's and workers' lifecycle log so far, earlier runs (before a
  /// restart()) included.
  std::string stderr_text() const { return earlier_logs_ + child_->stderr_text(); }

  /// Waits up to `timeout` for the log to contain `text`.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const {
    return wait_until([&] { return stderr_text().find(text) != std::string::npos; }, timeout);
  }

 private:
  // Spawns the program on host_:`port` and reads its ready line.
  void start(std::uint16_t port, std::vector<std::string> extra_args) {
    child_.emplace(arguments(launcher_, binary_, workers_, {host_, port}, std::move(extra_args)), output::capture,
                   output::capture, extra_env_);
    auto line = child_->read_stdout_line(ready_timeout);
    if (!line) {
      auto status = child_->wait_exit(500ms);  // did it exit, or is it stuck?
      throw std::runtime_error("no ready line from " + binary_ + " (" +
                               (status ? "it exited with wait status " + std::to_string(*status)
                                       : "still running after " + std::to_string(ready_timeout.count()) + " s") +
                               "); its stderr:\n" + child_->stderr_text());
    }
    parse_ready_line(*line);
  }

  void parse_ready_line(const std::string& line) {
    ready_line_ = line;
    admin_url_.clear();
    // "cluster: master <PID> listening on http://<HOST>:<PORT> with <N> workers"
    const std::string master = "cluster: master " + std::to_string(child_->pid()) + " listening on ";
    const std::string address = "http://" + host_ + ":";
    auto at = ready_line_.find(address);
    if (!ready_line_.starts_with(master) || at == std::string::npos)
      throw std::runtime_error("unexpected ready line: " + ready_line_);
    const char* digits = ready_line_.data() + at + address.size();
    auto [end, ec] = std::from_chars(digits, ready_line_.data() + ready_line_.size(), port_);
    if (ec != std::errc{} || port_ <= 0 || port_ > 65535)
      throw std::runtime_error("no port in ready line: " + ready_line_);
    std::string_view rest(end);
    const std::string announced = " with " + std::to_string(workers_) + " workers";
    if (!rest.starts_with(announced))
      throw std::runtime_error("ready line does not announce " + std::to_string(workers_) + " workers: " + ready_line_);
    rest.remove_prefix(announced.size());
    // With --admin: "..., admin on http://<ADDR>:<PORT>" or ", admin on unix:<PATH>".
    if (constexpr std::string_view admin = ", admin on "; rest.starts_with(admin)) {
      admin_url_ = std::string(rest.substr(admin.size()));
      rest = {};
    }
    if (!rest.empty()) throw std::runtime_error("unexpected end of the ready line: " + ready_line_);
  }

  static std::vector<std::string> arguments(std::vector<std::string> argv, const std::string& binary, int workers,
                                            const listen_at& where, std::vector<std::string> extra) {
    argv.insert(argv.end(), {binary, "--host", where.host, "--port", std::to_string(where.port), "--workers",
                             std::to_string(workers)});
    argv.insert(argv.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
    return argv;
  }

  // What an INFO("cluster log:\n", stderr_text()) in the test would add to
  // a failed assertion's report; doctest's INFO() is this same scope object.
  // doctest keeps these scopes on a stack: a fixture restarted in place
  // keeps its one scope, so several fixtures of a test may restart in any
  // order.
  struct log_context {
    const cluster_process* self;
    void operator()(std::ostream* s) const { *s << "cluster log:\n" << self->stderr_text(); }
  };

  std::string binary_;
  std::vector<std::string> extra_env_;
  std::vector<std::string> launcher_;
  int workers_;
  std::string host_;
  std::optional<child_process> child_;  // always set once constructed
  std::string earlier_logs_;            // of the runs before a restart()
  int port_ = 0;
  std::string ready_line_;
  std::string admin_url_;
  doctest::detail::ContextScope<log_context> log_scope_{log_context{this}};  // last: gone first
};

}  // namespace test_support
