// The master's watch over live workers, run on its supervision tick: a
// worker that never becomes ready (start_timeout), one still busy at its
// drain deadline (shutdown_timeout), one whose event loop stopped beating
// (hang_timeout, then SIGABRT, then SIGKILL after kill_grace), one over
// max_memory. It only judges; the master acts on the verdicts.
#pragma once

#include <cluster/detail/slot_table.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

namespace cluster::detail {

/// What a worker's health calls for.
struct health_verdict {
  enum class kind {
    fine,
    kill_unstarted,  ///< not ready after start_timeout: SIGKILL
    kill_undrained,  ///< still busy at its drain deadline: SIGKILL
    abort_hung,      ///< no heartbeat for `stalled`: SIGABRT (a core or a stack trace)
    kill_hung,       ///< did not exit within kill_grace of its SIGABRT: SIGKILL
  };
  kind what = kind::fine;
  std::chrono::nanoseconds stalled{0};  ///< for abort_hung: time since the last heartbeat
};

/// Judges workers per options::start_timeout, shutdown_timeout (through the
/// drain deadline the table records), hang_timeout, kill_grace, max_memory.
class health_monitor {
 public:
  using clock = std::chrono::steady_clock;

  explicit health_monitor(const options& opts) : opts_(opts) {}

  /// How often the master should call check(): twice per heartbeat, within [10, 250] ms.
  std::chrono::milliseconds period() const {
    return std::clamp(opts_.heartbeat_interval / 2, std::chrono::milliseconds(10), std::chrono::milliseconds(250));
  }

  /// Judges one worker at `now` (`now_ns`: monotonic_ns() at the same
  /// moment, comparable with `heartbeat_ns`, the worker's last beat, 0 before
  /// its first).
  health_verdict check(const worker_record& w, clock::time_point now, std::int64_t now_ns,
                       std::int64_t heartbeat_ns) const {
    using enum health_verdict::kind;
    if (w.state == worker_state::killed) return {};
    if (w.state == worker_state::starting && now - w.started > opts_.start_timeout) return {kill_unstarted};
    if (now > w.drain_deadline) return {kill_undrained};
    if (opts_.hang_timeout.count() == 0 || w.state == worker_state::starting) return {};
    if (w.state == worker_state::aborting) return now > w.abort_deadline ? health_verdict{kill_hung} : health_verdict{};
    auto stalled = std::chrono::nanoseconds(now_ns - heartbeat_ns);
    if (heartbeat_ns == 0 || stalled <= opts_.hang_timeout) return {};
    return {abort_hung, stalled};
  }

  /// The log line's words for a verdict (after the worker's name).
  std::string explain(const health_verdict& v) const {
    using enum health_verdict::kind;
    switch (v.what) {
      case kill_unstarted: return "not ready after " + std::to_string(opts_.start_timeout.count()) + " ms; killing it";
      case kill_undrained: return "still busy at its drain deadline; killing it";
      case abort_hung:
        return "unresponsive: no heartbeat for " +
               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(v.stalled).count()) +
               " ms; sending SIGABRT";
      case kill_hung: return "did not exit after SIGABRT; killing it";
      case fine: break;
    }
    return {};
  }

  /// When a hung worker sent SIGABRT at `now` gets SIGKILL.
  clock::time_point kill_deadline(clock::time_point now) const { return now + opts_.kill_grace; }

  /// Whether this tick checks memory (max_memory set, at most once a second:
  /// reading /proc per worker is not free).
  bool memory_check_due(clock::time_point now) {
    if (opts_.max_memory == 0 || now < next_memory_check_) return false;
    next_memory_check_ = now + std::chrono::seconds(1);
    return true;
  }

  /// Whether `rss` bytes resident exceed max_memory.
  bool over_memory(std::uint64_t rss) const { return opts_.max_memory != 0 && rss > opts_.max_memory; }

 private:
  const options& opts_;
  clock::time_point next_memory_check_{};
};

}  // namespace cluster::detail
