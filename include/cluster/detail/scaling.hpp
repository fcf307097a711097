// Scaling (SIGTTIN, SIGTTOU, cluster::scale()): slots are added at the end
// of the table with a socket of their own, and removed from the end: a
// retiring slot gets no new connections, its successor is killed, its worker
// takes what is queued and drains; its socket closes once it is empty.
#pragma once

#include <cluster/detail/channel.hpp>
#include <cluster/detail/limits.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/master_messenger.hpp>
#include <cluster/detail/respawner.hpp>
#include <cluster/detail/slot_sockets.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/options.hpp>

#include <chrono>
#include <csignal>
#include <exception>
#include <string>

namespace cluster::detail {

/// The number of active slots and the way to it.
class scaling {
  using clock = std::chrono::steady_clock;

 public:
  scaling(const options& opts, slot_table& table, slot_sockets& sockets, respawner& respawns,
          master_messenger& messenger, fork_queue& forks)
      : opts_(opts), table_(table), sockets_(sockets), respawns_(respawns), messenger_(messenger), forks_(forks) {}

  /// Takes the table's active slots as the target (at start).
  void track() { target_ = table_.active_slots(); }

  /// Sets the target to `workers`, 1..max_slots; false when out of range.
  bool scale(int workers) {
    if (workers < 1 || workers > max_slots) return false;
    target_ = workers;
    apply();
    return true;
  }

  /// Adds or retires slots until target slots are active (retiring slots
  /// leave first: a slot is added only at the end of the table).
  void apply() {
    if (target_ <= 0) return;
    int active = table_.active_slots();
    bool changed = false;
    while (active < target_) {
      if (active != static_cast<int>(table_.slots().size())) {
        log_line("master", "scaling up waits for the retiring slot to finish draining");
        break;
      }
      try {
        table_.add_slot(sockets_.open());
      } catch (const std::exception& e) {
        log_line("master", std::string("cannot add a slot: ") + e.what());
        target_ = active;
        break;
      }
      ++active;
      sockets_.steer(table_);
      forks_.push_back({active - 1, false});
      changed = true;
    }
    while (active > target_) {
      int index = --active;
      retire_outcome out = table_.retire(index, clock::now() + opts_.shutdown_timeout);
      sockets_.steer(table_);
      respawns_.cancel(index);
      if (out.kill > 0) ::kill(out.kill, SIGKILL);
      if (const worker_record* cur = table_.find(out.retire)) {
        log_line("master", worker_name(*cur) + " retiring: slot " + std::to_string(index) + " is being removed");
        if (!messenger_.command(cur->pid, message_kind::retire)) ::kill(cur->pid, SIGTERM);
      }
      changed = true;
    }
    sockets_.close_removed(table_);
    if (changed) log_line("master", "scaled to " + std::to_string(active) + " workers");
  }

 private:
  const options& opts_;
  slot_table& table_;
  slot_sockets& sockets_;
  respawner& respawns_;
  master_messenger& messenger_;
  fork_queue& forks_;
  int target_ = 0;
};

}  // namespace cluster::detail
