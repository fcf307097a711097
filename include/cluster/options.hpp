// Options of a cluster: a plain aggregate with documented defaults, validated
// before any worker is forked. One table (options::specs) describes every
// numeric option once: its name, flag, range and unit serve validate(),
// from_args() and usage() alike.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>

#include <cluster/detail/cpu_affinity.hpp>
#include <cluster/detail/limits.hpp>
#include <cluster/detail/option_values.hpp>
#include <cluster/detail/process_identity.hpp>
#include <cluster/option_error.hpp>
#include <cluster/messaging.hpp>

#include <sched.h>

namespace cluster {

/// How a worker process ended, as reported to options::on_worker_exit.
struct worker_exit {
  int slot = 0;         ///< the slot the worker served
  pid_t pid = 0;        ///< its process id
  int exit_code = -1;   ///< exit code, or -1 when killed by a signal
  int signal = 0;       ///< the signal that killed it, or 0
  std::chrono::milliseconds uptime{0};
  bool expected = false;  ///< true when the master asked it to go (stop, reload, scale, recycle)
};

/// Phases of a rolling reload, as reported to options::on_reload.
enum class reload_event { begun, finished, aborted };

/// How a cluster runs. Every field has a default; `validate()` (called by
/// `cluster::run` before anything is forked) refuses values out of range.
struct options {
  // --- Topology -------------------------------------------------------------
  /// Worker processes, 1..1024; 0 means one per CPU this process may run on.
  int workers = 0;
  /// Address to listen on (numeric IPv4 or IPv6, or "localhost").
  std::string host = "0.0.0.0";
  /// TCP port, 0..65535; 0 picks a free port shared by every worker.
  int port = 8080;
  /// Accept-queue length of each worker's listening socket, 1..65535.
  int backlog = 1024;

  /// Admin endpoint (metrics, status), off when empty: "HOST:PORT" (port 0
  /// picks a free one; prefer a loopback host) or "unix:PATH" (mode 0600).
  /// Never the service's port.
  std::string admin;

  /// The master's pid file, none when empty: written once every slot has a
  /// ready worker, removed at exit; during a binary upgrade (SIGUSR2) the old
  /// master's becomes PATH.oldbin and the new master writes PATH when ready.
  /// Its directory must exist.
  std::string pid_file;

  // --- The host's operator ------------------------------------------------------
  /// Workers run as this user (a name or a uid), switched to right after the
  /// fork, before any of your code runs; the master keeps its identity (it
  /// binds the ports first, and later re-executes the program for a binary
  /// upgrade and writes the pid file). Needs root. Empty: the master's user.
  std::string user;
  /// Workers' group (a name or a gid). Empty: the user's primary group and
  /// its supplementary groups; set: that group alone.
  std::string group;
  /// Pins each worker to one CPU: "auto" gives slot i the i-th CPU the
  /// master may run on (round robin), a list such as "0,2,4-7" the i-th CPU
  /// of the list. Empty: not pinned.
  std::string cpu_affinity;
  /// The lifecycle log on stderr: "text" (default) or "json" (one object per
  /// line: time, pid, role, message).
  std::string log_format = "text";

  // --- HTTP limits and timeouts ----------------------------------------------
  /// Longest request-target in bytes (longer: 414), 16..1 MiB.
  std::size_t max_target = 8 * 1024;
  /// Longest request line plus header block in bytes (longer: 431), 256..1 MiB.
  std::size_t max_header_bytes = 16 * 1024;
  /// Most header fields in a request (more: 431), 1..10,000.
  std::size_t max_headers = 100;
  /// Largest request body in bytes (larger: 413), 0..4 GiB.
  std::uint64_t max_body = 1024 * 1024;
  /// Most open connections per worker, 1..1,000,000; at the limit a worker
  /// stops accepting until one closes.
  int max_connections = 10'000;
  /// Time allowed to receive a request's line and header block once its first
  /// byte arrived (exceeded: 408 and close), 1 ms..1 h.
  std::chrono::milliseconds header_timeout{10'000};
  /// Longest pause while receiving a request body (exceeded: 408 and close),
  /// 1 ms..1 h.
  std::chrono::milliseconds body_timeout{30'000};
  /// How long a keep-alive connection may wait for its next request, 1 ms..1 h.
  std::chrono::milliseconds idle_timeout{5'000};
  /// Longest pause while the client does not read a response (exceeded: the
  /// connection is closed), 1 ms..1 h.
  std::chrono::milliseconds write_timeout{30'000};

  // --- Lifecycle --------------------------------------------------------------
  /// SIGTERM/SIGINT behind a balancer: for this long before the graceful stop
  /// begins, /readyz answers 503 while the workers serve on, closing each
  /// connection after its response, so the balancer's health checks take the
  /// host out first. Pick at least the balancer's check interval times its
  /// fall count (Kubernetes: the readiness probe's period × failureThreshold).
  /// 0 (default): the graceful stop begins at once. 0 ms..1 h.
  std::chrono::milliseconds drain_delay{0};
  /// Graceful stop (SIGTERM, SIGINT): how long in-flight requests may take
  /// before the remaining workers are killed, 0 ms..1 h.
  std::chrono::milliseconds shutdown_timeout{10'000};
  /// Respawn delay after the second consecutive early death of a slot's
  /// worker (one up less than healthy_after, or one that never became ready;
  /// the first is respawned at once), growing by restart_factor per further
  /// early death up to restart_max_delay, with ±20% jitter. A dead worker is
  /// always respawned, only later. 0 ms..1 min.
  std::chrono::milliseconds restart_delay{100};
  /// Growth of the respawn delay per consecutive early failure, 1..10.
  double restart_factor = 2.0;
  /// Cap of the respawn delay, 0 ms..10 min.
  std::chrono::milliseconds restart_max_delay{5'000};
  /// A worker up this long is healthy: its slot's backoff resets, and its
  /// death is respawned at once. 1 ms..1 h.
  std::chrono::milliseconds healthy_after{1'000};
  /// Boot-loop breaker: this many workers failing to boot (never ready)
  /// within crash_window stop the whole service with exit code 3, but only
  /// while no slot has a ready worker. Workers that were ready and died never
  /// count: they are respawned forever. 1..100,000.
  int crash_limit = 10;
  /// The boot-loop breaker's window, 1 ms..1 h.
  std::chrono::milliseconds crash_window{30'000};
  /// A new worker must report ready within this time, or it is killed and
  /// counted as a boot failure (and a reload in progress is aborted). 1 ms..1 h.
  std::chrono::milliseconds start_timeout{30'000};
  /// How often each worker's event loop ticks its heartbeat, 10 ms..1 min.
  std::chrono::milliseconds heartbeat_interval{500};
  /// A worker whose heartbeat stalls this long is hung: it gets SIGABRT (for a
  /// core or a stack trace), then SIGKILL after kill_grace, and is replaced.
  /// 0 disables hang detection; otherwise 50 ms..1 h.
  std::chrono::milliseconds hang_timeout{30'000};
  /// Time between SIGABRT to a hung worker and SIGKILL, 0 ms..1 min.
  std::chrono::milliseconds kill_grace{2'000};
  /// Replace a worker after it answered this many requests (0: never); the
  /// new worker is ready before the old one drains. 0..2^53.
  std::uint64_t max_requests = 0;
  /// A random 0..max_requests_jitter added per worker to max_requests, so
  /// workers do not recycle together. 0..2^53.
  std::uint64_t max_requests_jitter = 0;
  /// Replace a worker whose resident memory exceeds this many bytes (0: never).
  std::uint64_t max_memory = 0;

  // --- Messaging ----------------------------------------------------------------
  /// Largest message payload in bytes, 0..163,816; larger sends fail at the
  /// sender with message_errc::too_large.
  std::size_t max_message = 64 * 1024;
  /// In the master: a worker's one-way message (worker_context::send).
  std::function<void(int slot, const message&)> on_message;
  /// In the master: answers a worker's request (worker_context::request);
  /// a plain function or a coroutine. Without it, requests fail.
  request_callback on_request;

  // --- Hooks (all optional) ---------------------------------------------------
  /// In the master, after the sockets are bound and before any fork.
  std::function<void()> on_master_start;
  /// In each new worker, before it reports ready; the argument is its slot.
  /// Throwing makes the worker exit, which counts as a boot failure.
  std::function<void(int slot)> on_worker_start;
  /// In the master, after a worker process ended.
  std::function<void(const worker_exit&)> on_worker_exit;
  /// In the master, when a rolling reload begins, finishes or is aborted.
  std::function<void(reload_event)> on_reload;

  /// Set by from_args() for --help: cluster::run then prints usage() and
  /// returns 0 without starting anything.
  bool help = false;

  /// One numeric option: where it lives, how it is spelled, what it accepts.
  struct spec {
    const char* name;  ///< field name, used by validate()
    const char* flag;  ///< command-line flag, used by from_args()
    const char* env;   ///< environment variable read by from_args(), or nullptr
    double lo, hi;     ///< accepted range, inclusive
    const char* unit;  ///< "ms", "bytes" or ""
    const char* help;  ///< one line for usage()
    double (*get)(const options&);
    void (*set)(options&, double);
    bool integer = true;
  };

  /// Every numeric option, in usage() order.
  static std::span<const spec> specs();

  /// One option whose value is text.
  struct text_spec {
    const char* name;   ///< field name, used by validate()
    const char* flag;   ///< command-line flag, used by from_args()
    const char* value;  ///< what the value looks like, for usage()
    const char* help;   ///< one line for usage()
    std::string options::*field;
    /// Throws option_error naming `as` unless `value` is accepted.
    void (*check)(const std::string& value, const std::string& as);
    bool empty_means_off = true;  ///< an empty field is not checked by validate()
  };

  /// Every text option, in usage() order.
  static std::span<const text_spec> text_specs();

  /// The number of workers `workers = 0` stands for: the CPUs this process may
  /// run on.
  static int cpu_count() noexcept {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
      int n = CPU_COUNT(&set);
      if (n > 0) return n;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }

  /// The worker count to start: `workers`, or cpu_count() when it is 0.
  int effective_workers() const noexcept { return workers == 0 ? cpu_count() : workers; }

  /// Throws option_error naming the first option out of range.
  void validate() const {
    for (const text_spec& t : text_specs())
      if (!(this->*t.field).empty() || !t.empty_means_off) t.check(this->*t.field, t.name);
    detail::resolve_identity(user, group);  // the pair: a group alone needs root as well
    for (const spec& s : specs()) check(s, s.name, s.get(*this));
    if (hang_timeout.count() != 0 && hang_timeout < std::chrono::milliseconds(50))
      throw option_error("hang_timeout", "must be 0 (off) or in [50, 3600000] ms, got " +
                                             std::to_string(hang_timeout.count()));
    if (restart_max_delay < restart_delay)
      throw option_error("restart_max_delay", "must be at least restart_delay (" +
                                                  std::to_string(restart_delay.count()) + " ms), got " +
                                                  std::to_string(restart_max_delay.count()));
  }

  /// Reads every flag of specs() and text_specs() (e.g. --port N or
  /// --port=N) and --help, after the environment variables PORT and WORKERS, which the flags
  /// override. Throws option_error for an unknown flag, a missing value or a
  /// value out of range.
  static options from_args(int argc, const char* const* argv);

  /// from_args() starting from `defaults` instead of the built-in defaults.
  static options from_args(int argc, const char* const* argv, options defaults);

  /// The text printed for --help.
  static std::string usage(std::string_view program);

 private:
  static std::string number(double v) {
    if (v == std::floor(v) && std::fabs(v) < 1e18) return std::to_string(static_cast<long long>(v));
    std::string s = std::to_string(v);
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
  }

  static std::string range_text(const spec& s) {
    std::string t = "[" + number(s.lo) + ", " + number(s.hi) + "]";
    if (*s.unit) t += std::string(" ") + s.unit;
    return t;
  }

  static void check(const spec& s, const std::string& as, double v) {
    if (!(v >= s.lo && v <= s.hi))
      throw option_error(as, "must be in " + range_text(s) + ", got " + number(v));
  }

  static double parse_number(const spec& s, const std::string& as, std::string_view text) {
    double v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    bool bad = text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
               (s.integer && v != std::floor(v));
    if (bad || !(v >= s.lo && v <= s.hi))
      throw option_error(as, std::string("expects ") + (s.integer ? "an integer" : "a number") + " in " +
                                 range_text(s) + ", got '" + std::string(text) + "'");
    return v;
  }
};

}  // namespace cluster

// The tables of every option, defined apart: options::specs(), text_specs().
#include <cluster/detail/option_table.hpp>

namespace cluster {

inline options options::from_args(int argc, const char* const* argv) { return from_args(argc, argv, options{}); }

inline options options::from_args(int argc, const char* const* argv, options defaults) {
  options o = std::move(defaults);
  for (const spec& s : specs())
    if (s.env)
      if (const char* env = std::getenv(s.env); env && *env) s.set(o, parse_number(s, s.env, env));
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      continue;
    }
    std::string name(arg), value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (name == "-w") name = "--workers";
    auto take_value = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) throw option_error(name, "expects a value (see --help)");
      return argv[++i];
    };
    const text_spec* text = nullptr;
    for (const text_spec& t : text_specs())
      if (name == t.flag) text = &t;
    if (text) {
      std::string v = take_value();
      if (v.empty()) throw option_error(name, "expects a value, got ''");
      text->check(v, name);
      o.*(text->field) = std::move(v);
      continue;
    }
    const spec* found = nullptr;
    for (const spec& s : specs())
      if (name == s.flag) found = &s;
    if (!found) throw option_error(name, "unknown option (see --help)");
    found->set(o, parse_number(*found, name, take_value()));
  }
  return o;
}

inline std::string options::usage(std::string_view program) {
  std::string u = "usage: ";
  u += program;
  u += " [options]\n\n";
  options defaults;
  for (const text_spec& t : text_specs()) {
    std::string left = std::string("  ") + t.flag + " " + t.value;
    if (left.size() < 29) left.resize(29, ' ');
    const std::string& d = defaults.*(t.field);
    u += left + t.help + " (default " + (d.empty() ? "none" : d) + ")\n";
  }
  for (const spec& s : specs()) {
    std::string left = std::string("  ") + s.flag + (s.integer ? " N" : " X");
    if (left.size() < 29) left.resize(29, ' ');
    u += left + s.help + "; " + (*s.unit ? std::string(s.unit) + ", " : "") + number(s.lo) + ".." + number(s.hi) +
         ", default " + number(s.get(defaults)) + (s.env ? std::string(", env ") + s.env : "") + "\n";
  }
  u +=
      "  --help, -h                 print this help and exit\n"
      "\n"
      "signals to the master: TERM/INT graceful stop (after --drain-delay), QUIT fast stop,\n"
      "HUP rolling reload, USR2 binary upgrade, "
      "TTIN one more worker, TTOU one fewer\n";
  return u;
}

}  // namespace cluster
