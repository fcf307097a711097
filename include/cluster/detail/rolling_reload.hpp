// A rolling reload's progress (SIGHUP, cluster::reload()): one slot at a
// time, a new worker is started and must serve before the next slot is
// touched; if one cannot start, the reload stops and the old generation keeps
// serving. This object alone decides what the reload does next, and reports
// it (the log and options::on_reload); the master forks what it names.
#pragma once

#include <cluster/detail/log.hpp>
#include <cluster/options.hpp>

#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace cluster::detail {

/// What the master does after a reload event.
struct reload_step {
  enum class kind {
    none,      ///< nothing: the event did not concern the reload
    replace,   ///< fork a successor for `slot`
    finished,  ///< every slot was replaced: the reload is over
    aborted,   ///< the reload stopped; the old workers keep serving
  };
  kind what = kind::none;
  int slot = -1;

  friend bool operator==(const reload_step&, const reload_step&) = default;
};

/// The reload in progress, if any.
class rolling_reload {
 public:
  /// `hook` (options::on_reload, may be empty) hears each phase.
  explicit rolling_reload(std::function<void(reload_event)> hook = {}) : hook_(std::move(hook)) {}

  /// Whether a reload is in progress.
  bool active() const noexcept { return active_; }

  /// The slot whose new worker the reload waits for, or -1.
  int slot() const noexcept { return slot_; }

  /// Slots still to be replaced after the current one.
  std::size_t remaining() const noexcept { return queue_.size(); }

  /// Begins a reload of `slots`, in that order; returns its first step.
  /// While one is in progress nothing changes (check active() first to tell).
  /// `replaceable(slot)` says whether a slot has a worker to replace: a slot
  /// without one gets a fresh worker from its respawn anyway.
  template <class Replaceable>
  reload_step begin(std::vector<int> slots, Replaceable&& replaceable) {
    if (active_) {
      log_line("master", "reload already in progress; request ignored");
      return {};
    }
    active_ = true;
    queue_.assign(slots.begin(), slots.end());
    log_line("master", "reload begun: " + std::to_string(slots.size()) + " slots, one at a time");
    report(reload_event::begun);
    return advance(replaceable);
  }

  /// The new worker of `slot` serves (it took over and is ready): the next
  /// slot's turn.
  template <class Replaceable>
  reload_step serving(int slot, Replaceable&& replaceable) {
    if (!active_ || slot != slot_) return {};
    return advance(replaceable);
  }

  /// The slot's successor could not be forked, or it turned out the slot had
  /// nothing left to replace when its turn came: the slot is passed over.
  template <class Replaceable>
  reload_step passed_over(int slot, Replaceable&& replaceable) {
    return serving(slot, replaceable);
  }

  /// The new worker of `slot` failed (it died before it was ready, or the
  /// master could not make it): the reload stops, the old workers keep
  /// serving. `why` says what failed, for the log.
  reload_step failed(int slot, const std::string& why) {
    if (!active_ || slot != slot_) return {};
    return stop(why);
  }

  /// The cluster stops: so does the reload.
  reload_step cancel() { return active_ ? stop("the cluster is stopping") : reload_step{}; }

 private:
  template <class Replaceable>
  reload_step advance(Replaceable& replaceable) {
    while (!queue_.empty()) {
      int next = queue_.front();
      queue_.pop_front();
      if (!replaceable(next)) continue;
      slot_ = next;
      return {reload_step::kind::replace, next};
    }
    active_ = false;
    slot_ = -1;
    log_line("master", "reload finished");
    report(reload_event::finished);
    return {reload_step::kind::finished, -1};
  }

  reload_step stop(const std::string& why) {
    active_ = false;
    slot_ = -1;
    queue_.clear();
    log_line("master", "reload aborted: " + why + "; the old workers keep serving");
    report(reload_event::aborted);
    return {reload_step::kind::aborted, -1};
  }

  void report(reload_event e) {
    if (!hook_) return;
    try {
      hook_(e);
    } catch (const std::exception& ex) {
      log_line("master", std::string("on_reload hook threw: ") + ex.what());
    }
  }

  std::function<void(reload_event)> hook_;
  bool active_ = false;
  int slot_ = -1;
  std::deque<int> queue_;
};

}  // namespace cluster::detail
