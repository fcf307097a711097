// What the admin endpoint shows: a snapshot of the cluster (taken by the
// master from the shared cells and /proc, never by asking workers) rendered
// as Prometheus text exposition format 0.0.4, as JSON, or as a table.
#pragma once

#include <cluster/detail/json_text.hpp>
#include <cluster/detail/process_stats.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/status_rates.hpp>

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace cluster::detail {

/// One slot as shown by the admin endpoint.
struct slot_status {
  int slot = 0;
  pid_t pid = -1;     ///< its current worker, or -1
  std::string state;  ///< starting, ready, draining, backoff, down, retiring
  double uptime_seconds = 0;
  std::uint64_t restarts = 0;
  bool backoff = false;             ///< waiting out a respawn delay: no worker until next_attempt_seconds
  double next_attempt_seconds = 0;  ///< while backing off: seconds from now until its next worker starts
  int consecutive_failures = 0;     ///< its workers' deaths in a row before healthy_after, boot failures included
  int boot_failures = 0;            ///< its workers in a row that never became ready
  cell_totals totals;               ///< every process the slot had, the current one included
  std::int64_t open_connections = 0;
  double loop_lag_seconds = 0;
  process_stats process;
  slot_rates rates;  ///< over the master's last sampling interval (status_rates.hpp)
};

/// The whole cluster as shown by the admin endpoint.
struct cluster_status {
  pid_t master_pid = 0;
  double master_uptime_seconds = 0;
  std::string state;  ///< starting, running, reloading, stopping
  int workers = 0;    ///< live workers serving a slot
  process_stats master;
  cluster_rates rates;  ///< over the master's last sampling interval (status_rates.hpp)
  std::vector<slot_status> slots;
};

namespace report {

inline std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}
inline std::string num(std::uint64_t v) { return std::to_string(v); }
inline std::string num(std::int64_t v) { return std::to_string(v); }
inline std::string num(int v) { return std::to_string(v); }
/// A JSON number, or null for none.
inline std::string num_or_null(const std::optional<double>& v) { return v ? num(*v) : "null"; }

inline void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

inline void sample(std::string& out, const std::string& name, const std::string& labels, const std::string& value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += value;
  out += '\n';
}

inline std::string slot_label(const slot_status& s) { return "slot=\"" + std::to_string(s.slot) + "\""; }

// A JSON string's contents (json_text.hpp: valid JSON for any bytes).
inline std::string json_escape(const std::string& s) { return json_escaped(s); }

}  // namespace report

/// Prometheus text exposition format 0.0.4.
inline std::string render_prometheus(const cluster_status& st) {
  using namespace report;
  std::string o;
  o.reserve(4096 + st.slots.size() * 2048);
  family(o, "cluster_workers", "gauge", "Worker processes currently serving a slot.");
  sample(o, "cluster_workers", "", num(st.workers));
  family(o, "cluster_slots", "gauge", "Worker slots configured.");
  sample(o, "cluster_slots", "", num(static_cast<int>(st.slots.size())));
  family(o, "cluster_requests_total", "counter", "HTTP requests answered by the slot's workers, all generations.");
  for (auto& s : st.slots) sample(o, "cluster_requests_total", slot_label(s), num(s.totals.requests));
  family(o, "cluster_responses_total", "counter", "HTTP responses by status class.");
  for (auto& s : st.slots)
    for (int c = 0; c < 5; ++c)
      sample(o, "cluster_responses_total", slot_label(s) + ",code=\"" + std::to_string(c + 1) + "xx\"",
             num(s.totals.responses[c]));
  family(o, "cluster_worker_restarts_total", "counter", "Times the slot's worker was replaced after it died.");
  for (auto& s : st.slots) sample(o, "cluster_worker_restarts_total", slot_label(s), num(s.restarts));
  family(o, "cluster_slot_backoff", "gauge",
         "1 while the slot has no worker and waits out a respawn delay after early deaths, else 0.");
  for (auto& s : st.slots) sample(o, "cluster_slot_backoff", slot_label(s), num(s.backoff ? 1 : 0));
  family(o, "cluster_slot_next_attempt_seconds", "gauge",
         "While the slot backs off: seconds until its next worker starts, else 0.");
  for (auto& s : st.slots) sample(o, "cluster_slot_next_attempt_seconds", slot_label(s), num(s.next_attempt_seconds));
  family(o, "cluster_slot_consecutive_failures", "gauge",
         "Deaths in a row of the slot's workers before healthy_after, boot failures included; 0 once one is healthy.");
  for (auto& s : st.slots) sample(o, "cluster_slot_consecutive_failures", slot_label(s), num(s.consecutive_failures));
  family(o, "cluster_slot_boot_failures", "gauge", "The slot's workers in a row that never became ready.");
  for (auto& s : st.slots) sample(o, "cluster_slot_boot_failures", slot_label(s), num(s.boot_failures));
  family(o, "cluster_connections_total", "counter", "Connections accepted.");
  for (auto& s : st.slots) sample(o, "cluster_connections_total", slot_label(s), num(s.totals.connections));
  family(o, "cluster_open_connections", "gauge", "Connections open now.");
  for (auto& s : st.slots) sample(o, "cluster_open_connections", slot_label(s), num(s.open_connections));
  family(o, "cluster_received_bytes_total", "counter", "Bytes read from clients.");
  for (auto& s : st.slots) sample(o, "cluster_received_bytes_total", slot_label(s), num(s.totals.bytes_in));
  family(o, "cluster_sent_bytes_total", "counter", "Bytes written to clients.");
  for (auto& s : st.slots) sample(o, "cluster_sent_bytes_total", slot_label(s), num(s.totals.bytes_out));
  family(o, "cluster_event_loop_lag_seconds", "gauge", "How late the worker's last event-loop tick ran.");
  for (auto& s : st.slots) sample(o, "cluster_event_loop_lag_seconds", slot_label(s), num(s.loop_lag_seconds));
  family(o, "cluster_request_duration_seconds", "histogram", "Time from a complete request to its response.");
  for (auto& s : st.slots) {
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < duration_buckets; ++b) {
      cumulative += s.totals.duration_count[b];
      std::string le = b < std::size(duration_bounds_us) ? num(static_cast<double>(duration_bounds_us[b]) / 1e6)
                                                         : std::string("+Inf");
      sample(o, "cluster_request_duration_seconds_bucket", slot_label(s) + ",le=\"" + le + "\"", num(cumulative));
    }
    sample(o, "cluster_request_duration_seconds_sum", slot_label(s),
           num(static_cast<double>(s.totals.duration_sum_us) / 1e6));
    sample(o, "cluster_request_duration_seconds_count", slot_label(s), num(cumulative));
  }
  // The standard process metrics, once per process, told apart by labels.
  auto process_family = [&](const char* name, const char* type, const char* help, auto value) {
    family(o, name, type, help);
    if (st.master.found) sample(o, name, "role=\"master\"", value(st.master));
    for (auto& s : st.slots)
      if (s.process.found) sample(o, name, "role=\"worker\"," + slot_label(s), value(s.process));
  };
  process_family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                 [](const process_stats& p) { return num(p.cpu_seconds); });
  process_family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                 [](const process_stats& p) { return num(p.rss_bytes); });
  process_family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                 [](const process_stats& p) { return num(p.vsize_bytes); });
  process_family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
                 [](const process_stats& p) { return num(p.start_time); });
  process_family("process_open_fds", "gauge", "Number of open file descriptors.",
                 [](const process_stats& p) { return num(p.open_fds); });
  return o;
}

/// The same snapshot as JSON (fields described in the README, "Admin endpoint").
inline std::string render_json(const cluster_status& st) {
  using namespace report;
  const cluster_rates& r = st.rates;
  std::string o = "{\"master\":{\"pid\":" + num(static_cast<int>(st.master_pid)) +
                  ",\"uptime_seconds\":" + num(st.master_uptime_seconds) + ",\"state\":\"" + json_escape(st.state) +
                  "\",\"workers\":" + num(st.workers) + ",\"rss_bytes\":" + num(st.master.rss_bytes) +
                  ",\"cpu_seconds\":" + num(st.master.cpu_seconds) + ",\"cpu_percent\":" + num(r.master_cpu_percent) +
                  "},\"rates\":{\"interval_seconds\":" + num(r.interval_seconds) +
                  ",\"requests_per_second\":" + num(r.requests_per_second) +
                  ",\"latency_p50_seconds\":" + num_or_null(r.p50_seconds) +
                  ",\"latency_p99_seconds\":" + num_or_null(r.p99_seconds) + ",\"duration_bounds_seconds\":[";
  for (std::size_t b = 0; b < std::size(duration_bounds_us); ++b)
    o += (b ? "," : "") + num(static_cast<double>(duration_bounds_us[b]) / 1e6);
  o += "],\"durations_per_second\":[";
  for (std::size_t b = 0; b < duration_buckets; ++b) o += (b ? "," : "") + num(r.durations_per_second[b]);
  o += "]},\"slots\":[";
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    const slot_status& s = st.slots[i];
    if (i) o += ',';
    o += "{\"slot\":" + num(s.slot) + ",\"pid\":" + num(static_cast<int>(s.pid)) + ",\"state\":\"" +
         json_escape(s.state) + "\",\"uptime_seconds\":" + num(s.uptime_seconds) + ",\"restarts\":" + num(s.restarts) +
         ",\"backoff\":" + (s.backoff ? "true" : "false") + ",\"next_attempt_seconds\":" + num(s.next_attempt_seconds) +
         ",\"consecutive_failures\":" + num(s.consecutive_failures) + ",\"boot_failures\":" + num(s.boot_failures) +
         ",\"requests\":" + num(s.totals.requests) + ",\"requests_per_second\":" + num(s.rates.requests_per_second) +
         ",\"open_connections\":" + num(s.open_connections) + ",\"rss_bytes\":" + num(s.process.rss_bytes) +
         ",\"cpu_seconds\":" + num(s.process.cpu_seconds) + ",\"cpu_percent\":" + num(s.rates.cpu_percent) +
         ",\"loop_lag_seconds\":" + num(s.loop_lag_seconds) + "}";
  }
  o += "]}\n";
  return o;
}

/// The same snapshot as an aligned table for people, like `pm2 list`.
inline std::string render_table(const cluster_status& st) {
  using namespace report;
  char line[320];
  std::string o;
  const cluster_rates& r = st.rates;
  auto ms = [](const std::optional<double>& seconds) {
    char b[32] = "-";
    if (seconds) std::snprintf(b, sizeof b, "%.2f ms", *seconds * 1000);
    return std::string(b);
  };
  std::snprintf(line, sizeof line,
                "master pid %d  state %s  uptime %.0fs  workers %d  rss %.1f MiB  cpu %.1f%%  "
                "requests %.1f/s  p50 %s  p99 %s\n\n",
                static_cast<int>(st.master_pid), st.state.c_str(), st.master_uptime_seconds, st.workers,
                static_cast<double>(st.master.rss_bytes) / (1 << 20), r.master_cpu_percent, r.requests_per_second,
                ms(r.p50_seconds).c_str(), ms(r.p99_seconds).c_str());
  o += line;
  std::snprintf(line, sizeof line, "%-5s %-8s %-9s %9s %8s %5s %8s %12s %9s %6s %9s %9s %6s %9s\n", "slot", "pid",
                "state", "uptime", "restarts", "fails", "retry in", "requests", "req/s", "conns", "rss MiB", "cpu s",
                "cpu %", "lag ms");
  o += line;
  for (const slot_status& s : st.slots) {
    char retry[32] = "-";
    if (s.backoff) std::snprintf(retry, sizeof retry, "%.1fs", s.next_attempt_seconds);
    std::snprintf(line, sizeof line,
                  "%-5d %-8d %-9s %8.0fs %8" PRIu64 " %5d %8s %12" PRIu64 " %9.1f %6" PRId64
                  " %9.1f %9.2f %6.1f %9.2f\n",
                  s.slot, static_cast<int>(s.pid), s.state.c_str(), s.uptime_seconds, s.restarts,
                  s.consecutive_failures, retry, s.totals.requests, s.rates.requests_per_second, s.open_connections,
                  static_cast<double>(s.process.rss_bytes) / (1 << 20), s.process.cpu_seconds, s.rates.cpu_percent,
                  s.loop_lag_seconds * 1000);
    o += line;
  }
  return o;
}

}  // namespace cluster::detail
