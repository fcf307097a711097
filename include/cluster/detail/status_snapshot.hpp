// The admin endpoint's snapshot of a running cluster, taken by the master
// from its slot table, the workers' shared cells and /proc: never by asking
// a worker, so a scrape costs the workers nothing.
#pragma once

#include <cluster/detail/process_stats.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/detail/status_rates.hpp>
#include <cluster/detail/status_report.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <unistd.h>

namespace cluster::detail {

/// What the snapshot needs from the master beyond its table.
struct master_facts {
  std::chrono::steady_clock::time_point started_at{};
  std::string state;      ///< starting, running, reloading, stopping
  bool stopping = false;  ///< a stopping slot is never shown backing off
};

/// Slot `s`'s counters over every process it had: its finished ones folded
/// in, and the cells of the live ones (a draining worker's and its
/// successor's included); also their open connections.
inline cell_totals slot_totals(const slot_table& table, shared_region& cells, const slot_record& s,
                               std::int64_t* open_connections = nullptr) {
  cell_totals totals = s.folded;
  for (const worker_record& w : table.workers()) {
    if (w.slot != s.index) continue;
    const worker_cell& c = cells.cell(w.cell);
    totals.add(c);
    if (open_connections) *open_connections += c.open_connections.load(std::memory_order_relaxed);
  }
  return totals;
}

/// The cluster as the admin endpoint shows it, at `now`, with the `rates`
/// of the master's last sampling interval (rate_sampler.hpp).
inline cluster_status take_snapshot(const slot_table& table, shared_region& cells, const master_facts& master,
                                    const measured_rates& rates, std::chrono::steady_clock::time_point now) {
  using seconds = std::chrono::duration<double>;
  cluster_status st;
  st.master_pid = ::getpid();
  st.master_uptime_seconds = seconds(now - master.started_at).count();
  st.state = master.state;
  st.master = read_process_stats(st.master_pid);
  st.rates = rates.cluster;
  for (const slot_record& s : table.slots()) {
    slot_status ss;
    ss.slot = s.index;
    ss.restarts = static_cast<std::uint64_t>(s.restarts);
    ss.totals = slot_totals(table, cells, s, &ss.open_connections);
    ss.rates = rates.of_slot(s.index);
    const worker_record* cur = table.find(s.current);
    const bool backing_off = !cur && s.active() && !master.stopping && s.backoff.next_attempt != decltype(now){};
    ss.state = !s.active()    ? "retiring"
               : backing_off  ? "backoff"
               : !cur         ? "down"
                              : std::string(phase_name(*cur));
    ss.backoff = backing_off;
    ss.consecutive_failures = s.backoff.early_failures;
    ss.boot_failures = s.backoff.boot_failures;
    if (backing_off) ss.next_attempt_seconds = std::max(0.0, seconds(s.backoff.next_attempt - now).count());
    if (cur) {
      ++st.workers;
      ss.pid = cur->pid;
      ss.uptime_seconds = seconds(now - cur->started).count();
      ss.loop_lag_seconds =
          static_cast<double>(cells.cell(cur->cell).loop_lag_us.load(std::memory_order_relaxed)) / 1e6;
      ss.process = read_process_stats(cur->pid);
    }
    st.slots.push_back(std::move(ss));
  }
  return st;
}

}  // namespace cluster::detail
