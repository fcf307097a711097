// The master's supervision tick: twice per heartbeat it asks the health
// monitor about every live worker (start and drain deadlines, heartbeats,
// memory), sends a hung worker SIGABRT, ends a healthy slot's run of early
// deaths, and leaves killing and replacing to the supervisor.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/health_monitor.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process_stats.hpp>
#include <cluster/detail/respawn_policy.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/options.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include <csignal>

namespace cluster::detail {

/// What the tick asks of the supervisor: `tick_began(now)` before any worker
/// is checked; `kill_unhealthy(w, verdict)` for a worker that failed its
/// check (already logged): SIGKILL it; `recycle(w, why)`: replace it, its
/// successor ready before it drains. Called directly, not through a virtual
/// base: the tick runs while the master may be out of descriptors (an admin
/// flood), and UBSan's vptr check needs a spare descriptor for a pipe
/// (IsAccessibleMemoryRange), so a virtual call there is reported as an
/// invalid vptr.
template <class Listener>
concept tick_listener = requires(Listener& l, worker_record& w, const health_verdict& v) {
  l.tick_began(std::chrono::steady_clock::now());
  l.kill_unhealthy(w, v);
  l.recycle(w, std::string());
};

/// Runs from start() until stop(), every health_monitor::period().
template <class Listener>
class supervision_tick {
  using clock = std::chrono::steady_clock;

 public:
  /// The references are the supervisor's and must outlive the tick.
  supervision_tick(asio::io_context& io, const options& opts, slot_table& table, shared_region& cells,
                   respawn_policy& policy, Listener& listener)
      : io_(io), opts_(opts), table_(table), cells_(cells), policy_(policy), listener_(listener) {}
  supervision_tick(const supervision_tick&) = delete;
  supervision_tick& operator=(const supervision_tick&) = delete;

  void start() {
    static_assert(tick_listener<Listener>, "the supervision tick's listener needs tick_began, kill_unhealthy, recycle");
    asio::co_spawn(io_, run(), asio::detached);
  }
  /// No tick after this one.
  void stop() noexcept { stopped_ = true; }
  /// Time between ticks.
  std::chrono::milliseconds period() const { return health_.period(); }

 private:
  asio::awaitable<void> run() {
    asio::steady_timer timer(io_);
    while (!stopped_) {
      timer.expires_after(health_.period());
      auto [ec] = co_await timer.async_wait(use_tuple);
      if (ec || stopped_) co_return;
      auto now = clock::now();
      listener_.tick_began(now);
      std::int64_t now_ns = monotonic_ns();
      bool check_memory = health_.memory_check_due(now);
      for (worker_record& w : table_.workers()) {
        using enum health_verdict::kind;
        health_verdict v =
            health_.check(w, now, now_ns, cells_.cell(w.cell).heartbeat_ns.load(std::memory_order_relaxed));
        if (v.what != fine) log_line("master", worker_name(w) + " " + health_.explain(v));
        if (v.what == abort_hung) {
          table_.hang(w, health_.kill_deadline(now));
          ::kill(w.pid, SIGABRT);
        } else if (v.what != fine) {
          listener_.kill_unhealthy(w, v);
          if (v.what != kill_hung) continue;
        }
        note_healthy(w, now);
        if (check_memory && w.state == worker_state::ready) {
          std::uint64_t rss = resident_bytes(w.pid);
          if (health_.over_memory(rss))
            listener_.recycle(w, "uses " + std::to_string(rss >> 20) + " MiB resident (max_memory " +
                                     std::to_string(opts_.max_memory >> 20) + " MiB)");
        }
      }
    }
  }

  // A slot's worker up healthy_after ends the slot's run of early deaths:
  // its next death respawns at once.
  void note_healthy(const worker_record& w, clock::time_point now) {
    slot_record* s = table_.slot(w.slot);
    if (!s || s->current != w.pid || w.state != worker_state::ready) return;
    if (int ended = policy_.note_uptime(s->backoff, now - w.started))
      log_line("master", worker_name(w) + " up " + std::to_string(opts_.healthy_after.count()) +
                             " ms: healthy, slot backoff reset after " + std::to_string(ended) + " early deaths");
  }

  asio::io_context& io_;
  const options& opts_;
  slot_table& table_;
  shared_region& cells_;
  respawn_policy& policy_;
  Listener& listener_;
  health_monitor health_{opts_};
  bool stopped_ = false;
};

}  // namespace cluster::detail
