// Options of a cluster: a plain aggregate with documented defaults, validated
// before any worker is forked.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include <sched.h>

namespace cluster {

/// Thrown for an invalid option: the message names the option, what it
/// accepts and what it got.
class option_error : public std::invalid_argument {
 public:
  option_error(std::string option, const std::string& message)
      : std::invalid_argument(option + ": " + message), option_(std::move(option)) {}
  /// The option at fault, as named in `cluster::options` or on the command line.
  const std::string& option() const noexcept { return option_; }

 private:
  std::string option_;
};

/// How a cluster runs. Every field has a default; `validate()` (called by
/// `cluster::run` before anything is forked) refuses values out of range.
struct options {
  /// Worker processes, 1..1024; 0 means one per CPU this process may run on.
  int workers = 0;
  /// Address to listen on (numeric IPv4 or IPv6, or "localhost").
  std::string host = "0.0.0.0";
  /// TCP port, 0..65535; 0 picks a free port shared by every worker.
  int port = 8080;
  /// Accept-queue length of each worker's listening socket, 1..65535.
  int backlog = 1024;

  /// Graceful stop (SIGTERM, SIGINT): how long in-flight requests may take
  /// before the remaining workers are killed. 0..3,600,000 ms.
  std::chrono::milliseconds shutdown_timeout{10'000};

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
  /// byte arrived (exceeded: 408 and close), 1..3,600,000 ms.
  std::chrono::milliseconds header_timeout{10'000};
  /// Longest pause while receiving a request body (exceeded: 408 and close),
  /// 1..3,600,000 ms.
  std::chrono::milliseconds body_timeout{30'000};
  /// How long a keep-alive connection may wait for its next request,
  /// 1..3,600,000 ms.
  std::chrono::milliseconds idle_timeout{5'000};
  /// Longest pause while the client does not read a response (exceeded: the
  /// connection is closed), 1..3,600,000 ms.
  std::chrono::milliseconds write_timeout{30'000};

  /// Set by from_args() for --help: cluster::run then prints usage() and
  /// returns 0 without starting anything.
  bool help = false;

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
    in_range("workers", workers, 0, 1024, " (0 means one per CPU)");
    if (host.empty()) throw option_error("host", "must not be empty (e.g. 0.0.0.0, ::, 127.0.0.1)");
    in_range("port", port, 0, 65535);
    in_range("backlog", backlog, 1, 65535);
    in_range("shutdown_timeout", shutdown_timeout.count(), 0, 3'600'000, " ms");
    in_range("max_target", max_target, std::size_t{16}, std::size_t{1} << 20, " bytes");
    in_range("max_header_bytes", max_header_bytes, std::size_t{256}, std::size_t{1} << 20, " bytes");
    in_range("max_headers", max_headers, std::size_t{1}, std::size_t{10000});
    in_range("max_body", max_body, std::uint64_t{0}, std::uint64_t{1} << 32, " bytes");
    in_range("max_connections", max_connections, 1, 1'000'000);
    in_range("header_timeout", header_timeout.count(), 1, 3'600'000, " ms");
    in_range("body_timeout", body_timeout.count(), 1, 3'600'000, " ms");
    in_range("idle_timeout", idle_timeout.count(), 1, 3'600'000, " ms");
    in_range("write_timeout", write_timeout.count(), 1, 3'600'000, " ms");
  }

  /// Reads the standard flags: --port N, --host ADDR, --workers N,
  /// --shutdown-timeout MS and --help (also --flag=value), after the
  /// environment variables PORT and WORKERS, which the flags override. Starts
  /// from `defaults`. Throws option_error for an unknown flag, a missing value
  /// or a value out of range.
  static options from_args(int argc, const char* const* argv);

  /// from_args() starting from `defaults` instead of the built-in defaults.
  static options from_args(int argc, const char* const* argv, options defaults) {
    options o = std::move(defaults);
    if (const char* env = std::getenv("PORT"); env && *env) o.port = parse_int("PORT", env, 0, 65535);
    if (const char* env = std::getenv("WORKERS"); env && *env)
      o.workers = parse_int("WORKERS", env, 0, 1024);
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        o.help = true;
        continue;
      }
      std::string_view name = arg, value;
      bool inline_value = false;
      if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
      auto take_value = [&]() -> std::string_view {
        if (inline_value) return value;
        if (i + 1 >= argc) throw option_error(std::string(name), "expects a value (see --help)");
        return argv[++i];
      };
      if (name == "--port") {
        o.port = parse_int("--port", take_value(), 0, 65535);
      } else if (name == "--host") {
        o.host = std::string(take_value());
        if (o.host.empty()) throw option_error("--host", "must not be empty (e.g. 0.0.0.0, ::, 127.0.0.1)");
      } else if (name == "--workers" || name == "-w") {
        o.workers = parse_int(std::string(name), take_value(), 0, 1024);
      } else if (name == "--shutdown-timeout") {
        o.shutdown_timeout = std::chrono::milliseconds(parse_int("--shutdown-timeout", take_value(), 0, 3'600'000));
      } else {
        throw option_error(std::string(name), "unknown option (see --help)");
      }
    }
    return o;
  }

  /// The text printed for --help.
  static std::string usage(std::string_view program) {
    std::string u = "usage: ";
    u += program;
    u +=
        " [--host ADDR] [--port N] [--workers N] [--shutdown-timeout MS]\n"
        "\n"
        "  --host ADDR             address to listen on (default 0.0.0.0)\n"
        "  --port N                TCP port 0..65535, 0 = any free port (default 8080, env PORT)\n"
        "  --workers N, -w N       worker processes 0..1024, 0 = one per CPU (default 0, env WORKERS)\n"
        "  --shutdown-timeout MS   graceful stop deadline in ms (default 10000)\n"
        "  --help, -h              print this help and exit\n"
        "\n"
        "signals to the master: TERM/INT graceful stop, QUIT fast stop\n";
    return u;
  }

 private:
  template <class T, class U>
  static void in_range(const char* name, T value, U lo, U hi, const char* unit = "") {
    using C = std::common_type_t<T, U>;
    if (static_cast<C>(value) < static_cast<C>(lo) || static_cast<C>(value) > static_cast<C>(hi))
      throw option_error(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" +
                                   unit + ", got " + std::to_string(value));
  }

  static int parse_int(const std::string& name, std::string_view text, int lo, int hi) {
    long long v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < lo || v > hi)
      throw option_error(name, "expects an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                   "], got '" + std::string(text) + "'");
    return static_cast<int>(v);
  }
};

inline options options::from_args(int argc, const char* const* argv) { return from_args(argc, argv, options{}); }

}  // namespace cluster
