// The crash policy: when a slot whose worker died gets its next one, and when
// failing boots stop the service. A dead worker is always replaced (nginx
// never gives up): at once after a healthy run or an exit the master asked
// for, after a growing, jittered delay while a slot's workers keep dying
// early. Only boot failures can stop the service, and only while no slot has
// a ready worker (Gunicorn's "worker failed to boot", made tolerant).
// Plain code over counters: the master acts on its decisions.
#pragma once

#include <cluster/options.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

namespace cluster::detail {

/// How long the master waits before trying again when it could not make a
/// process at all (out of descriptors, processes or memory): no worker died,
/// so the crash policy counts nothing.
inline constexpr std::chrono::milliseconds cannot_start_retry{1000};

/// One slot's run of failures, as the crash policy keeps it.
struct slot_backoff {
  int early_failures = 0;  ///< deaths in a row before healthy_after, boot failures included
  int boot_failures = 0;   ///< workers in a row that never became ready
  /// While backing off: when the slot's next worker is forked; {} otherwise.
  std::chrono::steady_clock::time_point next_attempt{};
};

/// What one death of a worker the master did not ask to go means.
struct death_verdict {
  bool early = false;    ///< it died before healthy_after or before it was ready
  bool give_up = false;  ///< boot loop: stop the service with exit code 3
  /// Every active slot is in a boot loop (no slot serves).
  bool every_slot_boot_looping = false;
  std::size_t boot_failures_in_window = 0;  ///< all slots' boot failures within crash_window
  std::chrono::milliseconds delay{0};       ///< wait before the next worker; 0 when giving up
};

/// Backoff and the boot-loop breaker, per options::restart_delay,
/// restart_factor, restart_max_delay, healthy_after, crash_limit and
/// crash_window.
class respawn_policy {
 public:
  using clock = std::chrono::steady_clock;
  /// A uniform draw in [0, 1]: spreads respawns by ±20% so that slots failing
  /// together do not retry together. Injected so that tests are deterministic.
  using jitter_source = std::function<double()>;

  respawn_policy(const options& opts, jitter_source jitter) : opts_(opts), jitter_(std::move(jitter)) {}

  /// The slot's worker died unasked: counts the failure into `b` and decides.
  /// `every_slot_boot_looping()` is asked after `b` is counted (the dead
  /// worker's slot is one of those it looks at).
  template <class BootLooping>
  death_verdict on_death(slot_backoff& b, bool was_ready, std::chrono::milliseconds uptime, clock::time_point now,
                         BootLooping&& every_slot_boot_looping) {
    death_verdict v;
    v.early = !was_ready || uptime < opts_.healthy_after;
    b.early_failures = v.early ? b.early_failures + 1 : 0;
    b.boot_failures = was_ready ? 0 : b.boot_failures + 1;
    if (!was_ready) {
      boot_failures_.push_back(now);
      while (!boot_failures_.empty() && now - boot_failures_.front() > opts_.crash_window) boot_failures_.pop_front();
    }
    v.boot_failures_in_window = boot_failures_.size();
    v.every_slot_boot_looping = every_slot_boot_looping();
    // A slot that serves keeps the service up however long another fails.
    v.give_up = !was_ready && static_cast<int>(boot_failures_.size()) >= opts_.crash_limit &&
                v.every_slot_boot_looping;
    if (!v.give_up) v.delay = delay(b.early_failures);
    return v;
  }

  /// Exponential backoff with ±20% jitter: the first early failure after a
  /// healthy run respawns at once, the n-th waits restart_delay ×
  /// restart_factor^(n-2), capped at restart_max_delay, then jittered.
  std::chrono::milliseconds delay(int early_failures) {
    if (early_failures <= 1) return std::chrono::milliseconds(0);
    double ms = static_cast<double>(opts_.restart_delay.count()) * std::pow(opts_.restart_factor, early_failures - 2);
    ms = std::min(ms, static_cast<double>(opts_.restart_max_delay.count()));
    ms *= 0.8 + 0.4 * std::clamp(jitter_(), 0.0, 1.0);
    return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  }

  /// The log line's words for a death the policy judged (after "slot N: "):
  /// why the slot waits, and how long.
  std::string explain(const death_verdict& v, const slot_backoff& b, bool was_ready,
                      std::chrono::milliseconds uptime) const {
    const std::string when =
        v.delay.count() == 0 ? "respawning at once" : "respawning in " + std::to_string(v.delay.count()) + " ms";
    const std::string up = std::to_string(uptime.count());
    if (!v.early) return "its worker ran " + up + " ms (healthy); " + when;
    if (was_ready)
      return "early death " + std::to_string(b.early_failures) + " in a row (up " + up + " ms, healthy_after " +
             std::to_string(opts_.healthy_after.count()) + " ms); " + when;
    return "worker failed to boot (" + std::to_string(b.boot_failures) + " in a row, " +
           std::to_string(v.boot_failures_in_window) + " within crash_window); " + when +
           (v.every_slot_boot_looping ? "" : "; other slots serve, so the service stays up");
  }

  /// The log line's words when the breaker trips; `last` describes the last
  /// failed worker ("worker 0 exited with code 1").
  std::string explain_giving_up(const death_verdict& v, const std::string& last) const {
    return "boot loop: " + std::to_string(v.boot_failures_in_window) + " workers failed to boot within " +
           std::to_string(opts_.crash_window.count()) + " ms and no slot has a ready worker (last: " + last +
           " before it was ready); giving up (crash_limit " + std::to_string(opts_.crash_limit) + ")";
  }

  /// The slot's current worker became ready: its slot boots again.
  /// (Its run of early deaths ends only once the worker is healthy.)
  static void note_ready(slot_backoff& b) noexcept { b.boot_failures = 0; }

  /// The slot's ready worker has been up `uptime`: past healthy_after, the
  /// slot's run of early deaths ends. Returns how many it ended (0: none).
  int note_uptime(slot_backoff& b, clock::duration uptime) const noexcept {
    if (b.early_failures == 0 || uptime < opts_.healthy_after) return 0;
    return std::exchange(b.early_failures, 0);
  }

 private:
  const options& opts_;
  jitter_source jitter_;
  std::deque<clock::time_point> boot_failures_;  // within crash_window, all slots
};

}  // namespace cluster::detail
