// libFuzzer target: the master's admin endpoint as a client sees it. The
// same connection code, parser and limits as a worker's, with the admin's
// routing (detail::admin_answer: the page at /, /metrics, /status,
// /status?format=text, 404, 405) and its renderers over a synthetic
// cluster_status (rates and latency quantiles included, or none), driven over an
// in-memory socket. A crash here would take the master, and every worker
// with it, down. Same oracle as connection_fuzzer (harness.hpp).
//
// Input: harness.hpp's header (byte 0 bits 0-1: unused), one byte shaping
// the status (bits 0-2: slots; bits 3-4: master state; bit 5: /proc figures
// found; bit 6: a state name that needs JSON escaping; bit 7: rates
// measured, with latency quantiles), then what the client sends.
//   fuzz/run admin [seconds]
#include "harness.hpp"

#include <cluster/detail/admin_routes.hpp>

#include <cstdint>
#include <functional>
#include <string_view>

namespace {

fuzz::call_log calls;  // reset per input

cluster::detail::cluster_status synthetic_status(std::uint8_t shape, std::uint32_t seed) {
  auto next = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
  };
  static constexpr const char* master_states[] = {"starting", "running", "reloading", "stopping"};
  static constexpr const char* slot_states[] = {"starting", "ready", "draining", "down", "retiring"};
  cluster::detail::cluster_status st;
  st.master_pid = static_cast<pid_t>(next() % 4'000'000);
  st.master_uptime_seconds = next() / 1000.0;
  st.state = master_states[(shape >> 3) & 3];
  bool found = shape & 0x20;
  auto process = [&](bool present) {
    return cluster::detail::process_stats{.cpu_seconds = next() / 100.0,
                                          .rss_bytes = std::uint64_t{next()} << 12,
                                          .vsize_bytes = std::uint64_t{next()} << 20,
                                          .start_time = 1.7e9,
                                          .open_fds = static_cast<int>(next() % 1024),
                                          .found = present};
  };
  st.master = process(found);
  if (shape & 0x80) {
    st.rates.interval_seconds = 1 + next() % 1000 / 1000.0;
    st.rates.master_cpu_percent = next() % 100'000 / 100.0;
    st.rates.requests_per_second = next() / 7.0;
    for (auto& d : st.rates.durations_per_second) d = next() % 10'000 / 3.0;
    st.rates.p50_seconds = next() % 10'000'000 / 1e6;
    st.rates.p99_seconds = next() % 10'000'000 / 1e6;
  }
  for (int i = 0; i < (shape & 7); ++i) {
    cluster::detail::slot_status s;
    s.slot = i;
    s.pid = (next() & 1) ? -1 : static_cast<pid_t>(next() % 4'000'000);
    s.state = (shape & 0x40) && i == 0 ? "we\"ird\\state with a long name" : slot_states[next() % 5];
    s.uptime_seconds = next() / 10.0;
    s.restarts = next();
    s.totals.requests = std::uint64_t{next()} << 20;
    for (auto& r : s.totals.responses) r = next();
    for (auto& d : s.totals.duration_count) d = next() % 1000;
    s.totals.duration_sum_us = next();
    s.totals.bytes_in = next();
    s.totals.bytes_out = next();
    s.totals.connections = next();
    s.open_connections = static_cast<std::int64_t>(next() % 100'000) - 10;
    s.loop_lag_seconds = next() / 1e6;
    s.process = process(found && (next() & 1));
    s.rates = {.slot = i, .requests_per_second = next() / 3.0, .cpu_percent = next() % 100'000 / 100.0};
    st.slots.push_back(std::move(s));
  }
  return st;
}

// Every combination of the probes' verdicts, with and without a reason.
cluster::detail::service_health synthetic_health(std::uint8_t shape) {
  cluster::detail::service_health h;
  h.live.ok = shape & 1;
  h.ready.ok = shape & 2;
  if (!h.live.ok) h.live.reason = "supervision stalled for 4000 ms";
  if (!h.ready.ok) h.ready.reason = "slot " + std::to_string(shape >> 2) + " has no ready worker";
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < fuzz::header_bytes + 1) return 0;
  std::string_view client(reinterpret_cast<const char*>(data + fuzz::header_bytes + 1),
                          size - fuzz::header_bytes - 1);
  const fuzz::setup s = fuzz::decode(data, client);
  const std::uint8_t shape = data[fuzz::header_bytes];
  const std::uint32_t seed = (std::uint32_t{data[5]} << 8 | data[6]) * 2246822519u + 7;
  calls = {};
  // The admin server's handler type, as admin_server holds it.
  std::function<cluster::response(const cluster::request&)> render = [&](const cluster::request& req) {
    calls.record(req);
    return cluster::detail::admin_answer(req, [&] { return synthetic_status(shape, seed); },
                                         [&] { return synthetic_health(shape); });
  };
  fuzz::serve_and_check(render, s, calls);
  return 0;
}
