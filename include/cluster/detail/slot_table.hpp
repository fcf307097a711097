// The master's book of slots and workers: which worker serves a slot, which
// one is about to replace it, which ones drain. A slot's state and a
// worker's state are each one enum value, changed only through one
// transition function per entity, so an event that does not fit the state
// is refused in one place instead of being half-applied. No processes here:
// the master forks, signals and logs, then tells the table what happened.
#pragma once

#include <cluster/detail/respawn_policy.hpp>
#include <cluster/detail/shared_region.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace cluster::detail {

/// Where a worker process is in its life, as the master sees it.
enum class worker_state {
  starting,  ///< forked, has not said "ready"
  ready,     ///< accepting on its slot's socket
  draining,  ///< asked to finish what it has and exit
  aborting,  ///< sent SIGABRT for a missing heartbeat; SIGKILL follows after kill_grace
  killed,    ///< sent SIGKILL: only its exit is left
};

/// What can happen to a worker before it exits (an exit is legal in any state).
enum class worker_event { became_ready, drain, hang, kill };

/// The worker transition function: the state after `e`, or nullopt when `e`
/// does not apply in `s` (a second "ready", a drain of a draining worker, a
/// heartbeat verdict on a worker that never beat, anything after SIGKILL).
constexpr std::optional<worker_state> next_state(worker_state s, worker_event e) noexcept {
  using enum worker_state;
  if (s == killed) return std::nullopt;
  switch (e) {
    case worker_event::became_ready: return s == starting ? std::optional(ready) : std::nullopt;
    // A hung worker keeps its SIGKILL deadline; it is told to drain all the same.
    case worker_event::drain:
      return s == draining ? std::nullopt : std::optional(s == aborting ? aborting : draining);
    case worker_event::hang: return s == ready || s == draining ? std::optional(aborting) : std::nullopt;
    case worker_event::kill: return killed;
  }
  return std::nullopt;
}

/// Where a slot is: its socket lives as long as the slot, its workers come and go.
enum class slot_state {
  vacant,     ///< no worker: one is about to be forked, or the slot backs off
  running,    ///< a current worker (starting or ready)
  replacing,  ///< a current worker and its successor, which takes over once ready
  retiring,   ///< being removed by a scale-down: its workers leave, none comes
  removed,    ///< retired and empty: its socket is closed
};

/// What can happen to a slot.
enum class slot_event {
  forked,            ///< a worker was forked for the empty slot
  forked_successor,  ///< a worker was forked to replace the current one
  successor_ready,   ///< the successor is ready: it takes over, the old one drains
  current_exited,    ///< the current worker exited (a successor present takes over)
  successor_exited,  ///< the successor exited before it took over
  retire,            ///< scale-down: the slot goes
  emptied,           ///< a retiring slot's last worker exited
};

/// The slot transition function: the state after `e`, or nullopt when `e`
/// does not apply in `s`.
constexpr std::optional<slot_state> next_state(slot_state s, slot_event e) noexcept {
  using enum slot_state;
  switch (e) {
    case slot_event::forked: return s == vacant ? std::optional(running) : std::nullopt;
    case slot_event::forked_successor: return s == running ? std::optional(replacing) : std::nullopt;
    case slot_event::successor_ready: return s == replacing ? std::optional(running) : std::nullopt;
    case slot_event::successor_exited:
      if (s == replacing) return running;
      return s == retiring ? std::optional(retiring) : std::nullopt;
    case slot_event::current_exited:
      if (s == running) return vacant;
      if (s == replacing) return running;  // the successor takes over
      return s == retiring ? std::optional(retiring) : std::nullopt;
    case slot_event::retire:
      if (s == vacant) return removed;
      return s == running || s == replacing ? std::optional(retiring) : std::nullopt;
    case slot_event::emptied: return s == retiring ? std::optional(removed) : std::nullopt;
  }
  return std::nullopt;
}

/// One worker process.
struct worker_record {
  using clock = std::chrono::steady_clock;
  pid_t pid = -1;
  int slot = 0;
  std::size_t cell = 0;  ///< its block in the shared region
  worker_state state = worker_state::starting;
  clock::time_point started{};
  clock::time_point drain_deadline = clock::time_point::max();  ///< max until it is told to drain
  clock::time_point abort_deadline = clock::time_point::max();  ///< max until it is sent SIGABRT
  /// It left `starting` by becoming ready or by being drained: its death is
  /// no boot failure.
  bool booted = false;
  /// The master asked it to go (drain, retire, stop): its exit is no failure.
  bool asked_to_leave = false;

  constexpr bool drained() const noexcept { return drain_deadline != clock::time_point::max(); }
};

/// "worker 2 (pid 4711)", as log lines name a worker.
inline std::string worker_name(const worker_record& w) {
  return "worker " + std::to_string(w.slot) + " (pid " + std::to_string(w.pid) + ")";
}

/// How a worker appears in /status: the phase it reached, whatever signal
/// the master sent it since.
constexpr std::string_view phase_name(const worker_record& w) noexcept {
  return w.drained() ? "draining" : w.booted ? "ready" : "starting";
}

/// One slot: a listening socket and the workers that serve it in turn.
struct slot_record {
  int index = 0;
  int listen_fd = -1;
  slot_state state = slot_state::vacant;
  pid_t current = -1;    ///< the worker serving the slot
  pid_t successor = -1;  ///< a worker that takes over once ready
  int restarts = 0;      ///< workers respawned after the current one died
  slot_backoff backoff;
  cell_totals folded;  ///< counters of the slot's finished processes

  bool active() const noexcept { return state != slot_state::retiring && state != slot_state::removed; }
};

/// What a worker's "ready" changed.
struct ready_outcome {
  bool first = false;    ///< it was starting (a repeated "ready" changes nothing)
  bool serves = false;   ///< it is now its slot's current worker
  pid_t replaced = -1;   ///< the worker it took over from, to be drained
};

/// What a worker's exit changed.
struct exit_outcome {
  bool known = false;     ///< it was in the table
  worker_record worker;   ///< as it was when it exited
  bool was_current = false;
  bool was_successor = false;
  bool took_over = false;     ///< its successor became the slot's current worker
  bool needs_worker = false;  ///< the slot is vacant: the crash policy says when it gets one
  bool slot_removed = false;  ///< a retiring slot emptied and is gone from the table
};

/// What retiring a slot asks of its workers.
struct retire_outcome {
  pid_t kill = -1;    ///< the successor, killed (it never served)
  pid_t retire = -1;  ///< the current worker, to take what is queued and drain
};

/// A worker to be forked into `slot`: its successor, or its only worker.
struct fork_request {
  int slot = 0;
  bool successor = false;
};

/// Forks the master is to make, in order, between two events.
using fork_queue = std::deque<fork_request>;

/// The slots and the workers, each changed only through `next_state`.
class slot_table {
 public:
  using clock = std::chrono::steady_clock;

  /// Adds a slot at the end, listening on `listen_fd` (kept, not owned).
  slot_record& add_slot(int listen_fd) {
    slot_record s;
    s.index = static_cast<int>(slots_.size());
    s.listen_fd = listen_fd;
    return slots_.emplace_back(std::move(s));
  }

  /// Drops removed slots from the end; returns their sockets, for the caller to close.
  std::vector<int> pop_removed() {
    std::vector<int> fds;
    while (!slots_.empty() && slots_.back().state == slot_state::removed) {
      fds.push_back(slots_.back().listen_fd);
      slots_.pop_back();
    }
    return fds;
  }

  /// Whether a worker may be forked into the slot now (as its successor or not).
  bool can_fork(int index, bool successor) const {
    const slot_record* s = slot(index);
    return s && next_state(s->state, successor ? slot_event::forked_successor : slot_event::forked).has_value();
  }

  /// Records a forked worker; the slot must accept it (can_fork).
  worker_record& add_worker(int index, pid_t pid, std::size_t cell, bool successor, clock::time_point now) {
    slot_record& s = slots_[static_cast<std::size_t>(index)];
    change(s, successor ? slot_event::forked_successor : slot_event::forked);
    (successor ? s.successor : s.current) = pid;
    return workers_.emplace_back(worker_record{.pid = pid, .slot = index, .cell = cell, .started = now});
  }

  /// The worker said "ready".
  ready_outcome ready(pid_t pid) {
    ready_outcome out;
    worker_record* w = find(pid);
    if (!w || !change(*w, worker_event::became_ready)) return out;
    out.first = true;
    w->booted = true;
    slot_record* s = slot(w->slot);
    if (!s) return out;
    if (s->successor == pid && change(*s, slot_event::successor_ready)) out.replaced = take_over(*s);
    out.serves = s->current == pid;
    return out;
  }

  /// Tells the worker to drain by `deadline`; false when it already drains
  /// or is being killed (nothing to send).
  bool drain(worker_record& w, clock::time_point deadline) {
    w.asked_to_leave = true;
    if (!change(w, worker_event::drain)) return false;
    w.booted = true;
    w.drain_deadline = deadline;
    return true;
  }

  /// The worker missed its heartbeat and is sent SIGABRT; SIGKILL follows at `kill_at`.
  bool hang(worker_record& w, clock::time_point kill_at) {
    if (!change(w, worker_event::hang)) return false;
    w.abort_deadline = kill_at;
    return true;
  }

  /// The worker is sent SIGKILL; `asked`: the master wants it gone (a stop),
  /// not a fault of the worker's.
  bool kill(worker_record& w, bool asked) {
    if (asked) w.asked_to_leave = true;
    return change(w, worker_event::kill);
  }

  /// Retires the slot (scale-down): its successor is killed, its current
  /// worker told to drain by `deadline`; an empty slot is removed at once.
  retire_outcome retire(int index, clock::time_point deadline) {
    retire_outcome out;
    slot_record* s = slot(index);
    if (!s || !change(*s, slot_event::retire)) return out;
    if (worker_record* succ = find(s->successor); succ && kill(*succ, true)) out.kill = succ->pid;
    if (worker_record* cur = find(s->current); cur && drain(*cur, deadline)) out.retire = cur->pid;
    settle_retiring(*s);
    return out;
  }

  /// The worker exited (reaped). While `stopping`, a vacant slot needs no worker.
  exit_outcome exited(pid_t pid, bool stopping) {
    exit_outcome out;
    auto it = std::ranges::find(workers_, pid, &worker_record::pid);
    if (it == workers_.end()) return out;
    out.known = true;
    out.worker = *it;
    workers_.erase(it);
    slot_record* s = slot(out.worker.slot);
    if (!s) return out;  // its slot was removed while it drained
    if (s->successor == pid) {
      out.was_successor = true;
      s->successor = -1;
      change(*s, slot_event::successor_exited);
    } else if (s->current == pid) {
      out.was_current = true;
      s->current = -1;
      bool had_successor = s->state == slot_state::replacing;
      change(*s, slot_event::current_exited);
      if (had_successor) {
        take_over(*s);  // it was about to take over anyway
        out.took_over = true;
      }
      out.needs_worker = s->state == slot_state::vacant && !stopping;
    }
    out.slot_removed = settle_retiring(*s);
    return out;
  }

  worker_record* find(pid_t pid) {
    if (pid <= 0) return nullptr;
    auto it = std::ranges::find(workers_, pid, &worker_record::pid);
    return it == workers_.end() ? nullptr : &*it;
  }
  const worker_record* find(pid_t pid) const { return const_cast<slot_table*>(this)->find(pid); }

  /// The slot at `index`, or nullptr past the end (a slot removed by a scale-down).
  slot_record* slot(int index) {
    return index >= 0 && index < static_cast<int>(slots_.size()) ? &slots_[static_cast<std::size_t>(index)] : nullptr;
  }
  const slot_record* slot(int index) const { return const_cast<slot_table*>(this)->slot(index); }

  std::vector<slot_record>& slots() noexcept { return slots_; }
  const std::vector<slot_record>& slots() const noexcept { return slots_; }
  std::vector<worker_record>& workers() noexcept { return workers_; }
  const std::vector<worker_record>& workers() const noexcept { return workers_; }

  /// Slots not retiring.
  int active_slots() const {
    return static_cast<int>(std::ranges::count_if(slots_, [](const slot_record& s) { return s.active(); }));
  }

  /// Whether the slot has a ready worker accepting its connections (a hung
  /// one counts until it is killed: it still holds its accept loop).
  bool serving(const slot_record& s) const {
    const worker_record* w = find(s.current);
    return w && (w->state == worker_state::ready || (w->state == worker_state::aborting && !w->drained()));
  }

  /// A slot in a boot loop: its last worker never became ready and none
  /// serves it now. A slot respawning after a runtime death is not.
  bool boot_looping(const slot_record& s) const { return s.backoff.boot_failures > 0 && !serving(s); }

  /// Every active slot has a ready worker.
  bool all_serving() const {
    return std::ranges::all_of(slots_, [this](const slot_record& s) { return !s.active() || serving(s); });
  }

  /// Every active slot is in a boot loop: nothing keeps the service up.
  bool all_boot_looping() const {
    return std::ranges::all_of(slots_, [this](const slot_record& s) { return !s.active() || boot_looping(s); });
  }

  /// Whether the worker may be replaced by a successor now: the ready current
  /// worker of an active slot that has no successor yet.
  bool replaceable(const worker_record& w) const {
    const slot_record* s = slot(w.slot);
    return s && s->current == w.pid && w.state == worker_state::ready && s->state == slot_state::running;
  }

  /// Whether a rolling reload has a worker to replace in the slot: a
  /// current one and no successor yet.
  bool has_worker_to_replace(int index) const {
    const slot_record* s = slot(index);
    return s && s->state == slot_state::running;
  }

  /// Where new connections should go: the active slots that serve, or every
  /// active slot when none does (what is queued waits for their workers).
  std::vector<int> steering_targets() const {
    std::vector<int> targets;
    for (const slot_record& s : slots_)
      if (s.active() && serving(s)) targets.push_back(s.index);
    if (targets.empty())
      for (const slot_record& s : slots_)
        if (s.active()) targets.push_back(s.index);
    return targets;
  }

  /// The slots with a live current worker.
  std::vector<int> live_slots() const {
    std::vector<int> live;
    for (const slot_record& s : slots_)
      if (find(s.current)) live.push_back(s.index);
    return live;
  }

 private:
  // The one place a successor takes a slot over; returns the worker it replaced.
  static pid_t take_over(slot_record& s) {
    pid_t old = s.current;
    s.current = s.successor;
    s.successor = -1;
    return old;
  }

  bool settle_retiring(slot_record& s) {
    return s.current < 0 && s.successor < 0 && change(s, slot_event::emptied);
  }

  static bool change(worker_record& w, worker_event e) {
    auto next = next_state(w.state, e);
    if (next) w.state = *next;
    return next.has_value();
  }

  static bool change(slot_record& s, slot_event e) {
    auto next = next_state(s.state, e);
    if (next) s.state = *next;
    return next.has_value();
  }

  std::vector<slot_record> slots_;
  std::vector<worker_record> workers_;
};

}  // namespace cluster::detail
