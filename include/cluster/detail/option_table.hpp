// The tables behind cluster::options: every numeric option (name, flag,
// environment variable, range, unit, help) and every text option (name,
// flag, check), from which validate(), from_args() and usage() work. Kept
// apart from options.hpp so that the aggregate and its documentation read
// on their own; included at its end.
#pragma once

#include <cluster/options.hpp>

namespace cluster {

namespace detail {
template <auto member>
constexpr double get_option(const options& o) {
  const auto& v = o.*member;
  if constexpr (requires { v.count(); })
    return static_cast<double>(v.count());
  else
    return static_cast<double>(v);
}
template <auto member>
constexpr void set_option(options& o, double v) {
  auto& f = o.*member;
  using T = std::remove_reference_t<decltype(f)>;
  if constexpr (requires { f.count(); })
    f = T(static_cast<typename T::rep>(v));
  else
    f = static_cast<T>(v);
}
}  // namespace detail

inline std::span<const options::spec> options::specs() {
  using o = options;
  constexpr double hour = 3'600'000, mib = 1 << 20, gib4 = 4294967296.0, big = 9007199254740992.0;
#define CLUSTER_OPTION(field, flag, env, lo, hi, unit, help) \
  spec{#field, flag, env, lo, hi, unit, help, &detail::get_option<&o::field>, &detail::set_option<&o::field>}
  static const spec table[] = {
      CLUSTER_OPTION(workers, "--workers", "WORKERS", 0, detail::max_slots, "", "worker processes, 0 = one per CPU"),
      CLUSTER_OPTION(port, "--port", "PORT", 0, 65535, "", "TCP port, 0 = any free port"),
      CLUSTER_OPTION(backlog, "--backlog", nullptr, 1, 65535, "", "accept queue per worker slot"),
      CLUSTER_OPTION(max_target, "--max-target", nullptr, 16, mib, "bytes", "longest request-target (414)"),
      CLUSTER_OPTION(max_header_bytes, "--max-header-bytes", nullptr, 256, mib, "bytes",
                     "longest request line + headers (431)"),
      CLUSTER_OPTION(max_headers, "--max-headers", nullptr, 1, 10000, "", "most header fields (431)"),
      CLUSTER_OPTION(max_body, "--max-body", nullptr, 0, gib4, "bytes", "largest request body (413)"),
      CLUSTER_OPTION(max_connections, "--max-connections", nullptr, 1, 1'000'000, "", "open connections per worker"),
      CLUSTER_OPTION(header_timeout, "--header-timeout", nullptr, 1, hour, "ms", "time to receive the headers (408)"),
      CLUSTER_OPTION(body_timeout, "--body-timeout", nullptr, 1, hour, "ms", "longest pause within a body (408)"),
      CLUSTER_OPTION(idle_timeout, "--idle-timeout", nullptr, 1, hour, "ms", "keep-alive wait for the next request"),
      CLUSTER_OPTION(write_timeout, "--write-timeout", nullptr, 1, hour, "ms", "longest stall of a client not reading"),
      CLUSTER_OPTION(drain_delay, "--drain-delay", nullptr, 0, hour, "ms", "/readyz 503 this long before a stop"),
      CLUSTER_OPTION(shutdown_timeout, "--shutdown-timeout", nullptr, 0, hour, "ms", "graceful stop deadline"),
      CLUSTER_OPTION(restart_delay, "--restart-delay", nullptr, 0, 60'000, "ms", "first respawn backoff delay"),
      spec{"restart_factor", "--restart-factor", nullptr, 1, 10, "", "backoff growth per early failure",
           &detail::get_option<&o::restart_factor>, &detail::set_option<&o::restart_factor>, false},
      CLUSTER_OPTION(restart_max_delay, "--restart-max-delay", nullptr, 0, 600'000, "ms", "respawn backoff cap"),
      CLUSTER_OPTION(healthy_after, "--healthy-after", nullptr, 1, hour, "ms", "uptime that resets the backoff"),
      CLUSTER_OPTION(crash_limit, "--crash-limit", nullptr, 1, 100'000, "", "boot failures that stop the service"),
      CLUSTER_OPTION(crash_window, "--crash-window", nullptr, 1, hour, "ms", "window of the boot-loop breaker"),
      CLUSTER_OPTION(start_timeout, "--start-timeout", nullptr, 1, hour, "ms", "time for a new worker to be ready"),
      CLUSTER_OPTION(heartbeat_interval, "--heartbeat-interval", nullptr, 10, 60'000, "ms", "heartbeat period"),
      CLUSTER_OPTION(hang_timeout, "--hang-timeout", nullptr, 0, hour, "ms", "stalled heartbeat = hung, 0 = off"),
      CLUSTER_OPTION(kill_grace, "--kill-grace", nullptr, 0, 60'000, "ms", "SIGABRT of a hung worker to SIGKILL"),
      CLUSTER_OPTION(max_requests, "--max-requests", nullptr, 0, big, "", "recycle a worker after N requests, 0 = off"),
      CLUSTER_OPTION(max_requests_jitter, "--max-requests-jitter", nullptr, 0, big, "", "random extra requests"),
      CLUSTER_OPTION(max_memory, "--max-memory", nullptr, 0, big, "bytes", "recycle above this RSS, 0 = off"),
      CLUSTER_OPTION(max_message, "--max-message", nullptr, 0, detail::max_payload, "bytes", "largest message payload"),
  };
#undef CLUSTER_OPTION
  return table;
}

inline std::span<const options::text_spec> options::text_specs() {
  using o = options;
  static const text_spec table[] = {
      {"host", "--host", "ADDR", "address to listen on", &o::host, &detail::check_host, false},
      {"admin", "--admin", "HOST:PORT|unix:P", "admin: /livez /readyz /metrics /status", &o::admin,
       [](const std::string& v, const std::string& as) { detail::parse_admin_address(v, as); }},
      {"pid_file", "--pid-file", "PATH", "the master's pid file, written when ready", &o::pid_file,
       &detail::check_pid_file_path},
      {"user", "--user", "NAME", "workers' user, needs root", &o::user,
       [](const std::string& v, const std::string& as) { detail::resolve_identity(v, "", as); }},
      {"group", "--group", "NAME", "workers' group, needs root", &o::group,
       [](const std::string& v, const std::string& as) { detail::resolve_identity("", v, as, as); }},
      {"cpu_affinity", "--cpu-affinity", "auto|LIST", "pin worker i to a CPU", &o::cpu_affinity,
       [](const std::string& v, const std::string& as) { detail::parse_cpu_affinity(v, as); }},
      {"log_format", "--log-format", "text|json", "lifecycle log format", &o::log_format, &detail::check_log_format,
       false},
  };
  return table;
}

}  // namespace cluster
