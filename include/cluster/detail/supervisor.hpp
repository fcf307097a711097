// The master's supervision, apart from forking: it owns the slot table
// and carries out what the parts decide, in the spirit of nginx's process
// cycle (an event, a decision, an action): worker messages and exits go
// through the slot table and the respawn policy, the supervision tick
// (supervision_tick.hpp) through the health monitor, SIGHUP through the
// rolling reload, SIGTTIN/SIGTTOU through scaling, SIGUSR2 and what the
// world is told through the deployment (deployment.hpp). It tells
// Cluster<Handler> (master.hpp) what to fork next (fork_plan.hpp).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/binary_upgrade.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/deployment.hpp>
#include <cluster/detail/fork_plan.hpp>
#include <cluster/detail/limits.hpp>
#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/master_messenger.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/rate_sampler.hpp>
#include <cluster/detail/respawn_policy.hpp>
#include <cluster/detail/respawner.hpp>
#include <cluster/detail/rolling_reload.hpp>
#include <cluster/detail/scaling.hpp>
#include <cluster/detail/service_health.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/slot_sockets.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/detail/status_snapshot.hpp>
#include <cluster/detail/supervision_tick.hpp>
#include <cluster/messaging.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace cluster::detail {

/// The master's state and decisions; Cluster<Handler> adds the forking.
class supervisor final : private control,
                         private master_context,
                         private worker_listener,
                         private deployment_host {
  friend class supervision_tick<supervisor>;  // calls tick_began, kill_unhealthy, recycle
  using clock = std::chrono::steady_clock;
  using ms = std::chrono::milliseconds;

 public:
  /// `opts` must be valid; `cells` holds a block per worker process.
  supervisor(asio::io_context& io, const options& opts, shared_region& cells) : io_(io), opts_(opts), cells_(cells) {}
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  /// Opens options::effective_workers() slots listening on `address`, whose
  /// port `port` was claimed. Throws std::system_error naming the address.
  void open_slots(const listen_address& address, int port) {
    sockets_.bind(address, port, opts_.backlog);
    add_slots();
  }

  /// Opens the slots on listening sockets an old master handed over (binary
  /// upgrade), in slot order; more slots than handed over bind beside them.
  void adopt_slots(const std::vector<int>& fds) {
    sockets_.adopt(fds, opts_.backlog);
    add_slots();
    if (std::size_t unused = sockets_.close_unused_adopted())
      log_line("master", "workers=" + std::to_string(opts_.effective_workers()) + ": " + std::to_string(unused) +
                             " of the sockets handed over are not used; connections queued on them are lost");
  }

  /// Opens every slot on the one socket the service manager passed (socket
  /// activation): the workers share its accept queue.
  void share_slots(int fd) {
    sockets_.share(fd);
    add_slots();
  }

  /// Starts supervising: every slot gets its first worker, the tick runs.
  /// `admin_url` is shown in the ready line when the admin endpoint is on;
  /// `admin_fd` (or -1) and `image` are what a binary upgrade hands on;
  /// `inherited` is what this master took over from an old one.
  void start(std::string admin_url, int admin_fd, program_image image, handed_over inherited) {
    deploy_.start(std::move(admin_url), admin_fd, std::move(image), inherited);
    log_line("master", "starting " + std::to_string(table_.slots().size()) + " workers on " +
                           sockets_.address().to_string(sockets_.port()));
    for (const slot_record& s : table_.slots()) pending_.push_back({s.index, false});
    tick_.start();
  }

  /// The next worker to fork, if any: requests the slot no longer accepts
  /// (retired, or already replaced) are dropped on the way.
  std::optional<fork_plan> next_fork() {
    while (!pending_.empty() && !stop_begun()) {
      auto [index, successor] = pending_.front();
      pending_.pop_front();
      if (table_.can_fork(index, successor)) return planner_.plan(index, successor);
      if (successor) follow(reload_.passed_over(index, replaceable_));  // nothing left to replace
    }
    pending_.clear();
    return std::nullopt;
  }

  /// The planned worker runs as `pid`; `channel_fd` is the master's end of its channel.
  void forked(const fork_plan& p, pid_t pid, int channel_fd) {
    const slot_record& s = *table_.slot(p.setup.slot);
    table_.add_worker(s.index, pid, cells_.index_of(p.setup.cell), p.successor, clock::now());
    messenger_.attach(pid, s.index, channel_fd);
    log_line("master", "worker " + std::to_string(s.index) + " started (pid " + std::to_string(pid) + ")" +
                           (p.successor ? " to replace pid " + std::to_string(s.current) : ""));
  }

  /// The master could not make a process for the plan (out of descriptors,
  /// processes or memory). No worker died, so the crash policy counts
  /// nothing: the slot tries again later; a reload waiting for it stops, and
  /// a slot's current worker keeps serving.
  void cannot_start(const fork_plan& p, const std::string& why) {
    cells_.give(cells_.index_of(p.setup.cell));
    const std::string slot_name = "slot " + std::to_string(p.setup.slot);
    log_line("master", "cannot start a worker for " + slot_name + " (" + why + "); " +
                           (p.successor ? "its current worker keeps serving"
                                        : "trying again in " + std::to_string(cannot_start_retry.count()) + " ms"));
    if (!p.successor)
      respawner_.schedule(p.setup.slot, cannot_start_retry);
    else
      reload_.failed(p.setup.slot, "cannot start the new worker for " + slot_name);
  }

  /// In a freshly forked worker of `slot`: closes the other slots' sockets
  /// and the master's channel ends.
  void close_in_child(int slot) noexcept {
    sockets_.close_in_child(table_, slot);
    messenger_.close_in_child();
  }

  /// SIGCHLD: collects every exited worker.
  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
      if (!deploy_.reaped(pid, status)) on_exit(pid, status);  // else the new master of a binary upgrade
    if (stop_begun() && table_.workers().empty()) finish();
  }

  /// SIGTERM, SIGINT: with a drain delay, /readyz turns 503 and the workers
  /// serve on for the delay (a second signal ends the delay at once); then
  /// every worker drains by shutdown_timeout. A signal during that stops now.
  void graceful_stop(int signo) {
    const std::string why = signal_name(signo);
    if (stop_begun()) {
      stop_now(why + " during a graceful stop");
      return;
    }
    deploy_.abandon_upgrade();
    if (phase_ == service_phase::leaving) {
      stop_gracefully(why + " during the drain delay");
    } else if (opts_.drain_delay.count() > 0) {
      leave(why);
    } else {
      stop_gracefully(why);
    }
  }

  /// SIGQUIT, a boot loop: every worker is killed at once; `why` goes to the log.
  void stop_now(const std::string& why) {
    phase_ = service_phase::stopping;
    deploy_.abandon_upgrade();
    cancel_pending_work();
    deploy_.stop_began(why);
    log_line("master", why + ": fast stop, killing " + std::to_string(table_.workers().size()) + " workers");
    for (worker_record& w : table_.workers()) kill_worker(w, true);
    if (table_.workers().empty()) finish();
  }

  /// SIGTTIN (+1), SIGTTOU (-1): one slot more or less, never below one.
  void scale_by(int step) {
    int active = table_.active_slots();
    if (step < 0 && active <= 1)
      log_line("master", "SIGTTOU ignored: already at one worker");
    else
      scale(std::min(active + step, max_slots));
  }

  /// The cluster as the admin endpoint shows it.
  cluster_status snapshot() {
    std::string state = phase_ == service_phase::serving && reload_.active() ? "reloading" : phase_name(phase_);
    return take_snapshot(table_, cells_, {started_at_, std::move(state), stop_begun()}, rates_.latest(),
                         clock::now());
  }

  /// What /livez and /readyz answer (no /proc read, no message to workers).
  service_health health() const {
    // The tick runs every health period: several missed in a row mean the
    // master no longer supervises, though its loop still answers.
    const auto stall_limit = std::max<ms>(tick_.period() * 8, ms(2'000));
    // Handed over (binary upgrade): the new master told this one it serves
    // every slot, so the service at this address is ready, though this
    // master stops. A probe it accepted just before leaving the admin socket
    // must not read "stopping".
    if (deploy_.handed_over()) return {{true, ""}, {true, ""}};
    return judge_health(table_, {.phase = phase_,
                                 .now = clock::now(),
                                 .last_tick = last_tick_,
                                 .tick_stall_limit = stall_limit,
                                 .leave_ends = leave_ends_});
  }

  /// True once every slot has had a ready worker (the ready line is out) and
  /// no stop has begun.
  bool serving() const noexcept { return phase_ == service_phase::serving; }

  /// True once every worker is gone after a stop.
  bool finished() const noexcept { return phase_ == service_phase::finished; }
  /// True when a new master took the service over (binary upgrade): what
  /// this master leaves behind (sockets, paths) is the new master's now.
  bool handed_over() const noexcept { return deploy_.handed_over(); }
  /// 0 after a clean stop, 1 when workers were killed at the stop deadline, 3 after a boot loop.
  int exit_code() const noexcept { return exit_code_; }
  /// What cluster::reload() and cluster::scale() reach in the master.
  control& lifecycle() noexcept { return *this; }
  /// What cluster::this_master() returns.
  master_context& context() noexcept { return *this; }

 private:
  void add_slots() {
    for (int i = 0; i < opts_.effective_workers(); ++i) table_.add_slot(sockets_.open());
    scaling_.track();
    sockets_.steer(table_);
  }

  // --- What workers say (master_messenger) ----------------------------------

  void worker_ready(pid_t pid) override {
    ready_outcome out = table_.ready(pid);
    if (!out.first) return;
    const worker_record& w = *table_.find(pid);
    log_line("master", worker_name(w) + " ready");
    if (worker_record* old = table_.find(out.replaced)) drain(*old, "replaced by pid " + std::to_string(pid));
    if (out.serves) {
      respawn_policy::note_ready(table_.slot(w.slot)->backoff);  // early deaths end once it is healthy
      sockets_.steer(table_);
      follow(reload_.serving(w.slot, replaceable_));
    }
    deploy_.worker_ready();
    if (phase_ == service_phase::starting && deploy_.announced()) phase_ = service_phase::serving;
    if (phase_ == service_phase::leaving) messenger_.command(pid, message_kind::lame_duck);  // a respawn during the delay
  }

  void worker_wants_recycle(pid_t pid) override {
    if (worker_record* w = table_.find(pid))
      recycle(*w, "answered " + std::to_string(cells_.cell(w->cell).requests.load(std::memory_order_relaxed)) +
                      " requests (max_requests)");
  }

  void worker_malformed(pid_t pid) override {
    if (worker_record* w = table_.find(pid)) {
      log_line("master", worker_name(*w) + " sent a malformed control message; replacing it");
      kill_worker(*w, false);
    }
  }

  // --- Actions on one worker -------------------------------------------------

  // `how`: drain (leave what is queued on the slot to its next worker) or
  // retire (take it first: no next worker will).
  void drain(worker_record& w, const std::string& why, message_kind how = message_kind::drain) {
    if (!table_.drain(w, clock::now() + opts_.shutdown_timeout)) return;
    log_line("master", worker_name(w) + " draining: " + why);
    if (!messenger_.command(w.pid, how)) ::kill(w.pid, SIGTERM);
  }

  void kill_worker(worker_record& w, bool asked) {
    table_.kill(w, asked);
    ::kill(w.pid, SIGKILL);
  }

  // Replace one worker: its successor is ready before it drains.
  void recycle(const worker_record& w, const std::string& why) {
    if (stop_begun() || !table_.replaceable(w)) return;
    log_line("master", worker_name(w) + " " + why + "; starting its replacement");
    pending_.push_back({w.slot, true});
  }

  // --- Exits and respawns ----------------------------------------------------

  void on_exit(pid_t pid, int status) {
    const worker_record* w = table_.find(pid);
    if (!w) return;
    worker_exit info{.slot = w->slot,
                     .pid = pid,
                     .exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                     .signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                     .uptime = std::chrono::duration_cast<ms>(clock::now() - w->started),
                     .expected = w->asked_to_leave || stop_begun()};
    log_line("master", worker_name(*w) + " " + describe_wait_status(status) + " after " +
                           std::to_string(info.uptime.count()) + " ms" + (w->booted ? "" : " (before it was ready)"));
    messenger_.detach(pid);
    exit_outcome out = table_.exited(pid, stop_begun());  // `w` is gone from here on
    slot_record* s = table_.slot(out.worker.slot);
    if (s) s->folded.add(cells_.cell(out.worker.cell));
    cells_.give(out.worker.cell);
    if (opts_.on_worker_exit) {
      try {
        opts_.on_worker_exit(info);
      } catch (const std::exception& e) {
        log_line("master", std::string("on_worker_exit hook threw: ") + e.what());
      }
    }
    if (!s) return;
    if (out.was_successor) {
      // A replacement died before it was ready: the old worker keeps serving,
      // so this is no boot loop of the slot.
      const std::string slot_name = "slot " + std::to_string(s->index);
      auto step = reload_.failed(
          s->index, "the new worker for " + slot_name + " " + describe_wait_status(status) + " before it was ready");
      if (step.what == reload_step::kind::none && !stop_begun())
        log_line("master",
                 "replacement for " + slot_name + " failed; pid " + std::to_string(s->current) + " keeps serving");
    } else if (out.was_current && s->active() && !stop_begun()) {
      sockets_.steer(table_);  // new connections go to the slots that serve meanwhile
      if (out.needs_worker) {
        ++s->restarts;
        if (std::string why = respawner_.after_death(*s, info, out.worker.booted); !why.empty()) {
          log_line("master", why);
          exit_code_ = 3;
          stop_now("boot loop");
        }
      }
    }
    if (out.slot_removed) {
      sockets_.close_removed(table_);
      if (!stop_begun()) scaling_.apply();
    }
    if (!stop_begun()) deploy_.workers_changed();
  }

  // --- Reload and scale --------------------------------------------------------

  bool reload() override {
    if (refuses_commands("reload") || deploy_.refused_during_upgrade("reload")) return false;
    std::vector<int> order;
    for (const slot_record& s : table_.slots())
      if (s.active()) order.push_back(s.index);
    follow(reload_.begin(std::move(order), replaceable_));
    return true;
  }

  // The rolling reload decides and reports; the master forks what it names.
  void follow(const reload_step& step) {
    if (step.what == reload_step::kind::replace) pending_.push_back({step.slot, true});
  }

  bool scale(int workers) override {
    return !refuses_commands("scale") && !deploy_.refused_during_upgrade("scale") && scaling_.scale(workers);
  }

  void on_reload_event(cluster::reload_event e) {
    deploy_.reload_changed(e);
    if (opts_.on_reload) opts_.on_reload(e);
  }

  // --- Binary upgrade (deployment.hpp) ----------------------------------------

  bool upgrade() override { return deploy_.upgrade(); }
  // Leaving counts: a service on its way out starts no upgrade.
  bool stopping() const override { return phase_ >= service_phase::leaving; }
  bool reloading() const override { return reload_.active(); }
  void step_down() override { stop_gracefully("binary upgrade"); }

  // --- master_context ----------------------------------------------------------

  std::error_code send(int slot, const message& m) override {
    const slot_record* s = table_.slot(slot);
    return messenger_.send(s ? s->current : -1, m);
  }
  std::size_t broadcast(const message& m) override { return messenger_.broadcast(m); }
  asio::any_io_executor executor() override { return io_.get_executor(); }
  std::vector<int> slots() const override { return table_.live_slots(); }

  // --- Supervision tick (supervision_tick.hpp) and stopping -------------------

  void tick_began(clock::time_point now) {
    last_tick_ = now;
    deploy_.tick(now);
    rates_.tick(now, table_, cells_);  // /status's rates: one sample per second, whoever polls
  }

  void kill_unhealthy(worker_record& w, const health_verdict& v) {
    if (v.what == health_verdict::kind::kill_undrained && stop_begun()) exit_code_ = std::max(exit_code_, 1);
    kill_worker(w, false);
  }

  // A graceful stop. Unless a new master or the service manager keeps the
  // slots' sockets, this master closes its copies and each worker takes
  // what is queued on its slot before closing the last one: connections
  // that reached the accept queue are answered, later ones refused.
  void stop_gracefully(const std::string& why) {
    phase_ = service_phase::stopping;
    leave_timer_.cancel();
    cancel_pending_work();
    deploy_.stop_began(why);
    log_line("master", why + ": graceful stop of " + std::to_string(table_.workers().size()) + " workers (deadline " +
                           std::to_string(opts_.shutdown_timeout.count()) + " ms)");
    const bool take_queues = !deploy_.handed_over() && sockets_.release_for_stop();
    for (worker_record& w : table_.workers())
      drain(w, "stopping", take_queues ? message_kind::retire : message_kind::drain);
    if (table_.workers().empty()) finish();
  }

  void cancel_pending_work() {
    pending_.clear();
    reload_.cancel();
    respawner_.stop();
  }

  // SIGTERM with a drain delay: /readyz answers 503 at once so that the
  // balancer's checks take the host out, every response closes its
  // connection so that pooled connections end cleanly instead of being cut
  // by the stop, and the workers serve normally until the delay ends.
  void leave(const std::string& why) {
    phase_ = service_phase::leaving;
    reload_.cancel();  // respawns go on: the workers serve normally until the delay ends
    leave_ends_ = clock::now() + opts_.drain_delay;
    log_line("master", why + ": leaving: /readyz answers 503; workers serve on for " +
                           std::to_string(opts_.drain_delay.count()) + " ms (drain_delay), then stop gracefully");
    deploy_.leaving(opts_.drain_delay);
    for (const worker_record& w : table_.workers()) messenger_.command(w.pid, message_kind::lame_duck);
    leave_timer_.expires_at(leave_ends_);
    leave_timer_.async_wait([this, why](asio::error_code ec) {
      if (!ec && phase_ == service_phase::leaving) stop_gracefully(why + " after the drain delay");
    });
  }

  // Leaving or stopping: the operator's commands that would start something
  // new are refused, and said so.
  bool refuses_commands(const char* what) const {
    if (phase_ < service_phase::leaving) return false;
    log_line("master", std::string(what) + " refused: the cluster is " + phase_name(phase_));
    return true;
  }

  bool stop_begun() const noexcept { return phase_ >= service_phase::stopping; }

  void finish() {
    if (finished()) return;
    phase_ = service_phase::finished;
    leave_timer_.cancel();
    tick_.stop();
    log_line("master", exit_code_ == 0 ? "stopped" : "stopped (exit code " + std::to_string(exit_code_) + ")");
    io_.stop();
  }

  asio::io_context& io_;
  const options& opts_;
  shared_region& cells_;
  slot_table table_;
  rolling_reload reload_{[this](cluster::reload_event e) { on_reload_event(e); }};
  // A slot without a live worker gets a fresh one from its respawn anyway.
  std::function<bool(int)> replaceable_ = [this](int index) { return table_.has_worker_to_replace(index); };
  slot_sockets sockets_;
  fork_planner planner_{opts_, table_, sockets_, cells_};
  master_messenger messenger_{io_, opts_, static_cast<worker_listener&>(*this), static_cast<control&>(*this)};
  fork_queue pending_;
  respawner respawner_{io_, opts_, table_, pending_};
  scaling scaling_{opts_, table_, sockets_, respawner_, messenger_, pending_};
  clock::time_point started_at_ = clock::now();
  deployment deploy_{io_, opts_, table_, sockets_, static_cast<deployment_host&>(*this)};
  rate_sampler rates_;
  supervision_tick<supervisor> tick_{io_, opts_, table_, cells_, respawner_.policy(), *this};
  service_phase phase_ = service_phase::starting;
  clock::time_point last_tick_ = clock::now();
  clock::time_point leave_ends_{};
  asio::steady_timer leave_timer_{io_};
  int exit_code_ = 0;
};

}  // namespace cluster::detail
