// What the master tells the world outside the cluster about the service's
// state, in one place: the ready line on stdout, the pid file, systemd's
// notifications (READY, RELOADING, STOPPING, STATUS, WATCHDOG, MAINPID) and,
// in a master started by a binary upgrade, the old master's readiness pipe.
#pragma once

#include <cluster/detail/binary_upgrade.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/pid_file.hpp>
#include <cluster/detail/service_notifier.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace cluster::detail {

/// The master's announcements. Not copyable (owns the pid file and the
/// notification socket).
class service_reporter {
  using clock = std::chrono::steady_clock;

 public:
  /// `pid_path` may be empty (no pid file); `notifier` may be disabled;
  /// `handover` is what this master took over from an old one (or empty).
  service_reporter(const std::string& pid_path, service_notifier notifier, handed_over handover)
      : pid_file_(pid_path), notifier_(std::move(notifier)), handover_(handover) {}

  /// Every slot has a ready worker for the first time: the ready line, the
  /// pid file, READY=1, and the old master's go-ahead. Throws nothing: a pid
  /// file that cannot be written is logged (the service runs on).
  void ready(const std::string& ready_line, const std::string& status) {
    try {
      pid_file_.write(::getpid());  // before the ready line: a script reading both finds it
    } catch (const std::exception& e) {
      log_line("master", e.what());
    }
    std::printf("%s\n", ready_line.c_str());
    std::fflush(stdout);
    notifier_.ready(status);
    last_status_ = status;
    announce_upgrade_ready(handover_);
  }

  /// The workers' state changed: a STATUS= line when its text did.
  void status(const std::string& status) {
    if (status == last_status_) return;
    last_status_ = status;
    notifier_.status(status);
  }

  /// A rolling reload began; ended (finished or aborted) brings READY=1 back.
  void reload_begun() { notifier_.reloading("reloading workers"); }
  void reload_ended() { notifier_.ready(last_status_); }

  /// The graceful or fast stop began.
  void stopping(const std::string& why) { notifier_.stopping("stopping: " + why); }

  /// From the supervision tick: WATCHDOG=1 at half of systemd's timeout. The
  /// tick runs only while the master's loop turns, which is what it proves.
  void tick(clock::time_point now) {
    auto interval = notifier_.watchdog_interval();
    if (interval.count() == 0 || now < next_watchdog_) return;
    next_watchdog_ = now + interval;
    notifier_.watchdog();
  }

  /// A binary upgrade started: PATH becomes PATH.oldbin (nginx's convention).
  void upgrade_started() { pid_file_.rename_to_oldbin(); }
  /// The upgrade was rolled back: PATH is this master's again.
  void upgrade_rolled_back() { pid_file_.restore_from_oldbin(); }
  /// The new master is ready and now the service's main process.
  void handed_over_to(pid_t new_master) { notifier_.main_pid(new_master); }

 private:
  pid_file pid_file_;
  service_notifier notifier_;
  handed_over handover_;
  std::string last_status_;
  clock::time_point next_watchdog_{};
};

}  // namespace cluster::detail
