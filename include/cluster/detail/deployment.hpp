// What the master does about its own replacement and what it announces to
// the world: the binary upgrade (SIGUSR2, cluster::upgrade()) with what it
// hands on to the new master, and, through the service reporter, the ready
// line, the pid file and systemd's notifications, worded from the slot table.
// The supervisor keeps the workers; this keeps the service's face.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/binary_upgrade.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/service_notifier.hpp>
#include <cluster/detail/service_reporter.hpp>
#include <cluster/detail/slot_sockets.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/detail/upgrade_coordinator.hpp>
#include <cluster/options.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include <unistd.h>

namespace cluster::detail {

/// What a deployment asks of the supervisor that owns it.
class deployment_host {
 public:
  /// Whether a graceful or fast stop has begun.
  virtual bool stopping() const = 0;
  /// Whether a rolling reload is in progress.
  virtual bool reloading() const = 0;
  /// A new master took the service over: stop gracefully; the slots'
  /// sockets are the new master's now (handed_over() is already true).
  virtual void step_down() = 0;

 protected:
  ~deployment_host() = default;
};

/// The master's binary upgrade and announcements. Not copyable (owns the
/// upgrade's child and the reporter's pid file and notification socket).
class deployment final : private upgrade_listener {
  using clock = std::chrono::steady_clock;

 public:
  /// `table` and `sockets` are the supervisor's, read for the announcements
  /// and the sockets to hand over; they must outlive the deployment.
  deployment(asio::io_context& io, const options& opts, const slot_table& table, const slot_sockets& sockets,
             deployment_host& host)
      : opts_(opts),
        table_(table),
        sockets_(sockets),
        host_(host),
        upgrade_{io, opts.start_timeout, static_cast<upgrade_listener&>(*this)} {}
  deployment(const deployment&) = delete;
  deployment& operator=(const deployment&) = delete;

  /// From supervisor::start(): `admin_url` is shown in the ready line when
  /// the admin endpoint is on; `admin_fd` (or -1) and `image` are what a
  /// binary upgrade hands on; `inherited` is what this master took over
  /// from an old one.
  void start(std::string admin_url, int admin_fd, program_image image, handed_over inherited) {
    admin_url_ = std::move(admin_url);
    admin_fd_ = admin_fd;
    image_ = std::move(image);
    reporter_.emplace(opts_.pid_file, service_notifier::from_environment(), inherited);
  }

  /// True once the ready line is out (every slot served at once).
  bool announced() const noexcept { return announced_; }
  /// True when a new master took the service over (binary upgrade).
  bool handed_over() const noexcept { return handed_over_; }

  // --- Announcements ---------------------------------------------------------

  /// A worker became ready: the first time every slot serves (and no stop
  /// has begun), the ready line, pid file and READY=1; otherwise a STATUS=
  /// line when its text changed.
  void worker_ready() {
    if (announced_ || host_.stopping() || !table_.all_serving()) {
      workers_changed();
      return;
    }
    announced_ = true;
    reporter_->ready("cluster: master " + std::to_string(::getpid()) + " listening on http://" +
                         sockets_.address().to_string(sockets_.port()) + " with " +
                         std::to_string(table_.active_slots()) + " workers" +
                         (admin_url_.empty() ? "" : ", admin on " + admin_url_),
                     status_text());
  }

  /// The workers changed otherwise (one exited): a STATUS= line when its text did.
  void workers_changed() { reporter_->status(status_text()); }

  /// A rolling reload began (RELOADING=1) or ended (READY=1 again).
  void reload_changed(cluster::reload_event e) {
    if (e == cluster::reload_event::begun)
      reporter_->reload_begun();
    else
      reporter_->reload_ended();
  }

  /// A graceful or fast stop began for `why` (STOPPING=1); nothing before start().
  void stop_began(const std::string& why) {
    if (reporter_) reporter_->stopping(why);
  }

  /// SIGTERM with a drain delay: the service is on its way out already.
  void leaving(std::chrono::milliseconds delay) {
    if (reporter_) reporter_->stopping("leaving: graceful stop in " + std::to_string(delay.count()) + " ms");
  }

  /// From the supervision tick: the watchdog's keep-alive when it is due.
  void tick(clock::time_point now) { reporter_->tick(now); }

  // --- Binary upgrade (SIGUSR2, cluster::upgrade()) ----------------------------

  /// Starts a new master from the program file, unless the cluster is not in
  /// a state to hand over (the refusal is logged). True when it started.
  bool upgrade() {
    const char* refusal = host_.stopping()                                         ? "the cluster is stopping"
                          : !announced_ || !table_.all_serving()                   ? "not every slot has a ready worker"
                          : host_.reloading()                                      ? "a rolling reload is in progress"
                          : upgrade_.current() != upgrade_coordinator::state::idle ? "an upgrade is in progress"
                                                                                   : nullptr;
    if (refusal) {
      log_line("master", std::string("binary upgrade refused: ") + refusal);
      return false;
    }
    reporter_->upgrade_started();
    if (upgrade_.begin(image_, {sockets_.for_handover(table_), admin_fd_, -1})) return true;
    reporter_->upgrade_rolled_back();
    return false;
  }

  /// True (and logged) when `what` (reload, scale) must wait: an upgrade
  /// waits for its new master, which took the slots as they are.
  bool refused_during_upgrade(const char* what) {
    if (upgrade_.current() != upgrade_coordinator::state::waiting) return false;
    log_line("master", std::string(what) + " refused: a binary upgrade waits for its new master");
    return true;
  }

  /// SIGCHLD reaped `pid`: true when it was the new master of an upgrade
  /// (and its exit is dealt with), false when it is the supervisor's.
  bool reaped(pid_t pid, int status) {
    if (!upgrade_.owns(pid)) return false;
    upgrade_.child_exited(status);
    return true;
  }

  /// This master stops: a new master still waiting to be ready stops too.
  void abandon_upgrade() { upgrade_.abandon(); }

 private:
  void upgrade_ready(pid_t new_master) override {
    log_line("master", "binary upgrade: the new master (pid " + std::to_string(new_master) +
                           ") is ready; this master hands over and drains its workers");
    reporter_->handed_over_to(new_master);
    handed_over_ = true;
    host_.step_down();
  }

  void upgrade_failed(const std::string& why) override {
    log_line("master", "binary upgrade rolled back: " + why + "; this master keeps serving");
    reporter_->upgrade_rolled_back();
  }

  // "2/2 workers ready, 1 restart": systemd's STATUS= line.
  std::string status_text() const {
    int ready = 0, restarts = 0;
    for (const slot_record& s : table_.slots()) {
      if (s.active() && table_.serving(s)) ++ready;
      restarts += s.restarts;
    }
    return std::to_string(ready) + "/" + std::to_string(table_.active_slots()) + " workers ready, " +
           std::to_string(restarts) + (restarts == 1 ? " restart" : " restarts");
  }

  const options& opts_;
  const slot_table& table_;
  const slot_sockets& sockets_;
  deployment_host& host_;
  std::string admin_url_;
  std::optional<service_reporter> reporter_;  // from start()
  upgrade_coordinator upgrade_;
  program_image image_;
  int admin_fd_ = -1;
  bool handed_over_ = false;
  bool announced_ = false;
};

}  // namespace cluster::detail
