// Respawning: when a slot whose worker died (or could not be made) gets its
// next one. The respawn policy judges the death; this keeps each slot's
// timer, says in the log why and how long the slot waits, and queues the
// fork when it is due.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/respawn_policy.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/options.hpp>

#include <chrono>
#include <deque>
#include <random>
#include <string>

namespace cluster::detail {

/// The slots' respawn timers, driven by a respawn_policy.
class respawner {
  using clock = std::chrono::steady_clock;

 public:
  /// Due forks go to `forks`; `table` is the master's.
  respawner(asio::io_context& io, const options& opts, slot_table& table, fork_queue& forks)
      : io_(io), table_(table), forks_(forks), policy_(opts, [this] {
          return static_cast<double>(rng_() % 1001) / 1000.0;
        }) {}

  respawner(const respawner&) = delete;
  respawner& operator=(const respawner&) = delete;

  respawn_policy& policy() noexcept { return policy_; }

  /// The slot's current worker died and none took over. Returns the log
  /// line's words when the breaker trips (the caller stops the service with
  /// exit code 3), else an empty string.
  std::string after_death(slot_record& s, const worker_exit& info, bool was_ready) {
    const std::string slot_name = "slot " + std::to_string(s.index);
    if (info.expected) {
      log_line("master", slot_name + ": its worker left as asked; respawning at once");
      schedule(s.index, std::chrono::milliseconds(0));
      return {};
    }
    death_verdict v = policy_.on_death(s.backoff, was_ready, info.uptime, clock::now(),
                                       [this] { return table_.all_boot_looping(); });
    if (v.give_up)
      return policy_.explain_giving_up(v, "worker " + std::to_string(info.slot) + " " +
                                              (info.signal ? "was killed by " + signal_name(info.signal)
                                                           : "exited with code " + std::to_string(info.exit_code)));
    log_line("master", slot_name + ": " + policy_.explain(v, s.backoff, was_ready, info.uptime));
    schedule(s.index, v.delay);
    return {};
  }

  /// Queues the slot's next worker after `delay` (at once for 0); meanwhile
  /// the slot shows as backing off.
  void schedule(int index, std::chrono::milliseconds delay) {
    slot_record& s = *table_.slot(index);
    if (delay.count() == 0) {
      s.backoff.next_attempt = {};
      forks_.push_back({index, false});
      return;
    }
    s.backoff.next_attempt = clock::now() + delay;
    while (timers_.size() <= static_cast<std::size_t>(index)) timers_.emplace_back(io_);
    asio::steady_timer& timer = timers_[static_cast<std::size_t>(index)];
    timer.expires_after(delay);
    timer.async_wait([this, index](const asio::error_code& ec) {
      // A handler already queued when stop() cancelled gets no error: hence stopped_.
      slot_record* target = ec || stopped_ ? nullptr : table_.slot(index);
      if (!target) return;
      target->backoff.next_attempt = {};
      if (target->current < 0 && target->active()) forks_.push_back({index, false});
    });
  }

  /// The slot retires: it waits for nothing.
  void cancel(int index) {
    if (static_cast<std::size_t>(index) < timers_.size()) timers_[static_cast<std::size_t>(index)].cancel();
  }

  /// The cluster stops: no slot is respawned any more.
  void stop() {
    stopped_ = true;
    for (asio::steady_timer& t : timers_) t.cancel();
    for (slot_record& s : table_.slots()) s.backoff.next_attempt = {};
  }

 private:
  asio::io_context& io_;
  slot_table& table_;
  fork_queue& forks_;
  std::mt19937_64 rng_{std::random_device{}()};
  respawn_policy policy_;
  std::deque<asio::steady_timer> timers_;  // one per slot index ever used
  bool stopped_ = false;
};

}  // namespace cluster::detail
