// What /livez and /readyz answer: the master's own verdict on whether it
// supervises and whether a balancer should send it traffic, computed from
// its slot table and its phase (never by asking a worker, so a probe costs
// the workers nothing).
#pragma once

#include <cluster/detail/slot_table.hpp>

#include <chrono>
#include <string>

namespace cluster::detail {

/// Where the service is in its life, as the master sees it. The only
/// transitions: starting -> serving (every slot ready once), starting or
/// serving -> leaving (SIGTERM with a drain delay), any -> stopping (the
/// graceful or fast stop began), stopping -> finished (every worker gone).
enum class service_phase {
  starting,  ///< not every slot has had a ready worker yet
  serving,   ///< announced ready
  leaving,   ///< SIGTERM with drain_delay: /readyz says 503, workers serve on until the delay ends
  stopping,  ///< the graceful or fast stop runs
  finished,  ///< every worker is gone
};

/// The phase's name in /status and the log.
constexpr const char* phase_name(service_phase p) noexcept {
  switch (p) {
    case service_phase::starting: return "starting";
    case service_phase::serving: return "running";
    case service_phase::leaving: return "leaving";
    case service_phase::stopping: return "stopping";
    case service_phase::finished: return "stopped";
  }
  return "unknown";
}

/// The answer to a probe: ok, or why not (one short line).
struct probe_verdict {
  bool ok = false;
  std::string reason;  ///< empty when ok
};

/// The master's liveness and readiness.
struct service_health {
  probe_verdict live;
  probe_verdict ready;
};

/// What the verdicts are made of.
struct health_inputs {
  service_phase phase = service_phase::starting;
  std::chrono::steady_clock::time_point now{};
  /// When the supervision tick last ran, and how old that may be before the
  /// master counts as not supervising.
  std::chrono::steady_clock::time_point last_tick{};
  std::chrono::milliseconds tick_stall_limit{0};
  /// While leaving: when the graceful stop begins.
  std::chrono::steady_clock::time_point leave_ends{};
};

/// Live while the master's supervision tick runs; ready while serving and
/// every active slot has a ready worker (a rolling reload keeps that true:
/// each old worker serves until its successor is ready).
inline service_health judge_health(const slot_table& table, const health_inputs& in) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  service_health h;
  if (in.phase == service_phase::finished)
    h.live.reason = "stopped";
  else if (in.now - in.last_tick > in.tick_stall_limit)
    h.live.reason = "supervision stalled for " +
                    std::to_string(duration_cast<milliseconds>(in.now - in.last_tick).count()) + " ms";
  h.live.ok = h.live.reason.empty();

  switch (in.phase) {
    case service_phase::starting: h.ready.reason = "starting"; break;
    case service_phase::leaving: {
      auto left = in.leave_ends > in.now ? duration_cast<milliseconds>(in.leave_ends - in.now).count() : 0;
      h.ready.reason = "leaving: the graceful stop begins in " + std::to_string(left) + " ms";
      break;
    }
    case service_phase::stopping:
    case service_phase::finished: h.ready.reason = "stopping"; break;
    case service_phase::serving:
      for (const slot_record& s : table.slots()) {
        if (!s.active() || table.serving(s)) continue;
        h.ready.reason = "slot " + std::to_string(s.index) + " has no ready worker";
        break;
      }
      break;
  }
  h.ready.ok = h.ready.reason.empty();
  return h;
}

}  // namespace cluster::detail
