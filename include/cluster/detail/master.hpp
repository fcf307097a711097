// The master: binds one listening socket per slot, forks a worker into each
// slot, and supervises them from a single-threaded io_context: signals through
// a signalfd, one control channel per worker, one supervision tick for
// deadlines and heartbeats. It never serves requests itself.
#pragma once

#include <cluster/detail/admin.hpp>
#include <cluster/detail/admin_routes.hpp>
#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/status_report.hpp>
#include <cluster/detail/worker.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <linux/filter.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cluster::detail {

template <class Handler>
class Cluster final : private control, private master_context {
 public:
  Cluster(Handler& handler, options opts)
      : handler_(handler), opts_(std::move(opts)), cells_((opts_.validate(), 3 * max_slots + 64)) {}

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  ~Cluster() {
    for (slot& s : slots_)
      if (s.listen_fd >= 0) ::close(s.listen_fd);
  }

  /// Runs the cluster until it is stopped; returns the exit code: 0 after a
  /// clean stop, 1 when workers had to be killed at the stop deadline, 3 when
  /// workers kept failing to boot while no slot had a ready worker.
  int run() {
    address_ = resolve_listen_address(opts_.host, opts_.port);
    port_ = claim_port(address_, opts_.port);  // refuses a port another program serves
    address_.set_port(port_);
    for (int i = 0; i < opts_.effective_workers(); ++i) add_slot();
    target_ = active_slots();
    steer();
    if (!opts_.admin.empty())
      admin_ = std::make_unique<admin_server>(io_, admin_tcp_state_, admin_local_state_,
                                              parse_admin_address(opts_.admin),
                                              [this](const request& r) { return admin_response(r); });
    // this_master() works in the hook (its executor() for background tasks;
    // no worker is live yet).
    role_scope hook_role({.master = this});
    if (opts_.on_master_start) opts_.on_master_start();

    const sigset_t handled = signal_set_of(
        {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH});
    sigset_t previous;
    ::sigprocmask(SIG_BLOCK, &handled, &previous);
    struct sigaction old_pipe{};
    struct sigaction ignore{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    signals_.assign(open_signalfd(handled));
    role_scope role({.lifecycle = this, .master = this});

    log_line("master", "starting " + std::to_string(slots_.size()) + " workers on " + address_.to_string(port_));
    for (slot& s : slots_) pending_.push_back({s.index, false});
    asio::co_spawn(io_, read_signals(), asio::detached);
    asio::co_spawn(io_, supervise(), asio::detached);
    if (admin_) admin_->start();
    // Forks happen here, between handlers, never inside one: the child then
    // starts from a plain stack with no Asio frame of the master above it.
    while (!finished_) {
      fork_pending();
      if (finished_ || io_.run_one() == 0) break;
    }

    asio::error_code ignored;
    signals_.close(ignored);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    return exit_code_;
  }

 private:
  enum class phase { starting, ready, draining };

  struct worker {
    pid_t pid = -1;
    int slot = 0;
    std::size_t cell = 0;
    phase state = phase::starting;
    clock::time_point started{};
    clock::time_point deadline = clock::time_point::max();  // drain deadline
    clock::time_point aborted_at{};                          // SIGABRT for a hang
    bool aborted = false;
    bool killed = false;
    bool expected = false;  // the master asked it to go
    std::shared_ptr<channel_endpoint> channel;
  };

  struct slot {
    int index = 0;
    int listen_fd = -1;
    pid_t current = -1;    // the worker serving the slot
    pid_t successor = -1;  // a new worker that replaces `current` once ready
    bool retiring = false;
    bool removed = false;
    int early_failures = 0;            // deaths in a row before healthy_after, boot failures included
    int boot_failures = 0;             // workers in a row that never became ready
    clock::time_point next_attempt{};  // while backing off: when its next worker is forked
    int restarts = 0;
    cell_totals folded;  // counters of the slot's finished processes
    std::unique_ptr<asio::steady_timer> respawn;
  };

  struct fork_request {
    int slot;
    bool successor;
  };

  // --- Slots and sockets -----------------------------------------------------

  void add_slot() {
    slot s;
    s.index = static_cast<int>(slots_.size());
    s.listen_fd = open_listener(address_, port_, opts_.backlog);  // port_ was claimed in run()
    slots_.push_back(std::move(s));
  }

  int active_slots() const {
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const slot& s) { return !s.retiring; }));
  }

  // Whether the slot has a ready worker accepting its connections.
  bool serving(const slot& s) const {
    const worker* cur = s.current > 0 ? find(s.current) : nullptr;
    return cur && cur->state == phase::ready;
  }

  // A slot in a boot loop: its last worker never became ready and none serves
  // it now. A slot respawning after a runtime death is not: its workers boot.
  bool boot_looping(const slot& s) const { return s.boot_failures > 0 && !serving(s); }

  // Steers new connections to the slots that serve: a reuseport BPF program
  // maps (hash % n) to the socket of one of the n active slots with a ready
  // worker, so a retiring slot's socket gets nothing new while its worker
  // takes what is already queued, and a slot whose worker died (respawning,
  // backing off, failing to boot) gets nothing new until its next worker is
  // ready; what was queued on it waits for that worker. With no slot ready,
  // every active slot gets its share. Sockets of active slots are never
  // closed while the master runs, so slot i keeps index i in the kernel's
  // reuseport group.
  void steer() {
    if (slots_.empty()) return;
    std::vector<int> targets;
    for (const slot& s : slots_)
      if (!s.retiring && serving(s)) targets.push_back(s.index);
    if (targets.empty())
      for (const slot& s : slots_)
        if (!s.retiring) targets.push_back(s.index);
    if (targets == steered_) return;  // one setsockopt per change, not per event
    steered_ = targets;
    std::vector<sock_filter> code{
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<__u32>(SKF_AD_OFF + SKF_AD_RXHASH)},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, static_cast<__u32>(targets.size())},
    };
    bool identity = true;  // slot k for k: the plain (hash % n) program
    for (std::size_t k = 0; k < targets.size(); ++k) identity = identity && targets[k] == static_cast<int>(k);
    if (identity) {
      code.push_back({BPF_RET | BPF_A, 0, 0, 0});
    } else {
      // A jump table: 2 instructions per target, within BPF_MAXINSNS for max_slots.
      for (std::size_t k = 0; k < targets.size(); ++k) {
        code.push_back({BPF_JMP | BPF_JEQ | BPF_K, 0, 1, static_cast<__u32>(k)});
        code.push_back({BPF_RET | BPF_K, 0, 0, static_cast<__u32>(targets[k])});
      }
      code.push_back({BPF_RET | BPF_K, 0, 0, static_cast<__u32>(targets.front())});
    }
    sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    if (::setsockopt(slots_.front().listen_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0 &&
        !steering_warned_) {
      steering_warned_ = true;
      log_line("master", std::string("cannot steer connections between slots (") + std::strerror(errno) +
                             "); removing a slot may reset connections queued on it");
    }
  }

  void remove_retired_slots() {
    while (!slots_.empty() && slots_.back().removed) {
      if (slots_.back().listen_fd >= 0) ::close(slots_.back().listen_fd);
      slots_.pop_back();
    }
  }

  // --- Forking ---------------------------------------------------------------

  void fork_pending() {
    while (!pending_.empty() && !stopping_) {
      fork_request r = pending_.front();
      pending_.pop_front();
      if (r.slot < static_cast<int>(slots_.size()) && !slots_[static_cast<std::size_t>(r.slot)].retiring)
        fork_worker(slots_[static_cast<std::size_t>(r.slot)], r.successor);
    }
    pending_.clear();
  }

  void fork_worker(slot& s, bool successor) {
    std::size_t cell = take_cell();
    cells_.cell(cell).reset();
    worker_setup setup;
    setup.slot = s.index;
    setup.family = address_.family();
    setup.listen_fd = s.listen_fd;
    setup.cell = &cells_.cell(cell);
    if (opts_.max_requests != 0)
      setup.request_limit =
          opts_.max_requests + (opts_.max_requests_jitter ? random() % (opts_.max_requests_jitter + 1) : 0);
    int fds[2];
    if (int err = make_channel(fds); err != 0) {
      free_cells_.push_back(cell);
      cannot_start(s, successor, std::string("socketpair for a worker channel: ") + std::strerror(err));
      return;
    }
    setup.channel_fd = fds[1];
    std::fflush(nullptr);  // or buffered output would be written twice
    pid_t master = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      free_cells_.push_back(cell);
      cannot_start(s, successor, std::string("fork: ") + std::strerror(err));
      return;
    }
    if (pid == 0) {
      ::close(fds[0]);
      int code = run_worker(setup, master);
      std::fflush(nullptr);
      ::_exit(code);
    }
    ::close(fds[1]);
    worker w;
    w.pid = pid;
    w.slot = s.index;
    w.cell = cell;
    w.started = clock::now();
    w.channel = std::make_shared<channel_endpoint>(io_, fds[0], channel_queue_bytes);
    asio::co_spawn(io_, read_channel(pid, w.channel), asio::detached);
    workers_.push_back(std::move(w));
    (successor ? s.successor : s.current) = pid;
    log_line("master", "worker " + std::to_string(s.index) + " started (pid " + std::to_string(pid) + ")" +
                           (successor ? " to replace pid " + std::to_string(s.current) : ""));
  }

  // The master could not make a process for the slot (out of descriptors,
  // processes or memory). No worker died, so the crash policy counts nothing:
  // the slot tries again in a second; a reload waiting for it stops, and a
  // slot's current worker keeps serving.
  void cannot_start(slot& s, bool successor, const std::string& why) {
    const std::string slot_name = "slot " + std::to_string(s.index);
    log_line("master", "cannot start a worker for " + slot_name + " (" + why + "); " +
                           (successor ? "its current worker keeps serving" : "trying again in 1000 ms"));
    if (!successor)
      schedule_respawn(s, std::chrono::milliseconds(1000));
    else if (reloading_ && reload_slot_ == s.index)
      abort_reload("cannot start the new worker for " + slot_name);
  }

  // In the child: shed what belongs to the master and the other slots, then
  // serve. Never returns to the master's code.
  int run_worker(const worker_setup& setup, pid_t master) noexcept {
    try {
      for (slot& s : slots_)
        if (s.index != setup.slot && s.listen_fd >= 0) ::close(s.listen_fd);
      for (worker& w : workers_)
        if (w.channel) ::close(w.channel->fd());
      ::close(signals_.native_handle());
      if (admin_) admin_->close_descriptors_in_child();
      role_scope no_role({});  // until the worker takes its own
      if (!become_worker_process(master)) return 1;
      Worker<Handler> worker(handler_, opts_, setup);
      return worker.run();
    } catch (const std::exception& e) {
      log_line("worker " + std::to_string(setup.slot), std::string("failed to start: ") + e.what());
      return 1;
    }
  }

  std::size_t take_cell() {
    if (!free_cells_.empty()) {
      std::size_t c = free_cells_.back();
      free_cells_.pop_back();
      return c;
    }
    // More processes than cells can only mean many stuck drains: share the
    // last cell rather than refuse to start a worker.
    return next_cell_ < cells_.size() ? next_cell_++ : cells_.size() - 1;
  }

  std::uint64_t random() { return rng_(); }

  // --- Worker lookup ---------------------------------------------------------

  worker* find(pid_t pid) {
    auto it = std::find_if(workers_.begin(), workers_.end(), [pid](const worker& w) { return w.pid == pid; });
    return it == workers_.end() ? nullptr : &*it;
  }
  const worker* find(pid_t pid) const { return const_cast<Cluster*>(this)->find(pid); }

  // The slot a worker serves, or nullptr when that slot was removed by a
  // scale-down while the worker was still draining.
  slot* slot_of(const worker& w) {
    return w.slot < static_cast<int>(slots_.size()) ? &slots_[static_cast<std::size_t>(w.slot)] : nullptr;
  }

  static std::string name(const worker& w) {
    return "worker " + std::to_string(w.slot) + " (pid " + std::to_string(w.pid) + ")";
  }

  // --- Control channel -------------------------------------------------------

  asio::awaitable<void> read_channel(pid_t pid, std::shared_ptr<channel_endpoint> channel) {
    bool well_formed = co_await channel->receive({scratch_.get(), receive_scratch},
                                                 [this, pid](const message_header& h, std::string_view p) {
      worker* w = find(pid);
      return !w || on_message(*w, h, p);
    });
    // A closed channel means the worker is exiting: SIGCHLD tells the rest.
    if (worker* w = find(pid); w && !well_formed) {
      log_line("master", name(*w) + " sent a malformed control message; replacing it");
      kill_worker(*w);
    }
  }

  bool on_message(worker& w, const message_header& h, std::string_view payload) {
    switch (static_cast<message_kind>(h.kind)) {
      case message_kind::ready: on_ready(w); return true;
      case message_kind::recycle:
        recycle(w, "answered " + std::to_string(cells_.cell(w.cell).requests.load(std::memory_order_relaxed)) +
                       " requests (max_requests)");
        return true;
      case message_kind::reload: asio::post(io_, [this] { reload(); }); return true;
      case message_kind::scale: asio::post(io_, [this, n = h.type] { scale(static_cast<int>(n)); }); return true;
      case message_kind::user:
        if (opts_.on_message) {
          try {
            opts_.on_message(w.slot, message{h.type, std::string(payload)});
          } catch (const std::exception& e) {
            log_line("master", std::string("on_message callback threw: ") + e.what());
          }
        }
        return true;
      case message_kind::request:
        if (opts_.on_request.answers_at_once())
          answer_now(w, h, payload);  // no coroutine: the reply leaves with this receive batch
        else
          asio::co_spawn(io_, answer(w.slot, w.channel, h.id, message{h.type, std::string(payload)}),
                         asio::detached);
        return true;
      case message_kind::broadcast: relay(w, h, payload); return true;
      default: return false;  // not a message a master gets
    }
  }

  // Runs options::on_request (possibly a coroutine) and sends its answer, or
  // the error, back to the asking worker if it is still there.
  asio::awaitable<void> answer(int slot, std::weak_ptr<channel_endpoint> to, std::uint64_t id, message m) {
    message reply;
    std::uint16_t flags = 0;
    if (!opts_.on_request) {
      reply.data = "the master has no on_request callback";
      flags = flag_error;
    } else {
      try {
        reply = co_await opts_.on_request(slot, std::move(m));
        check_reply(reply, flags);
      } catch (const std::exception& e) {
        reply = message{0, std::string("on_request threw: ") + e.what()};
        flags = flag_error;
      }
    }
    if (auto channel = to.lock()) channel->queue(message_kind::reply, reply.data, reply.type, id, flags);
  }

  // The same for a plain-function on_request, called right here.
  void answer_now(worker& w, const message_header& h, std::string_view payload) {
    std::shared_ptr<channel_endpoint> channel = w.channel;  // `w` is not used after the callback
    message reply;
    std::uint16_t flags = 0;
    try {
      reply = opts_.on_request.answer_now(w.slot, message{h.type, std::string(payload)});
      check_reply(reply, flags);
    } catch (const std::exception& e) {
      reply = message{0, std::string("on_request threw: ") + e.what()};
      flags = flag_error;
    }
    if (channel) channel->queue(message_kind::reply, reply.data, reply.type, h.id, flags);
  }

  static void check_reply(message& reply, std::uint16_t& flags) {
    if (reply.data.size() > max_payload) {
      reply = message{0, "the on_request answer exceeds the largest message"};
      flags = flag_error;
    }
  }

  // A broadcast goes to every live worker, the sender included, and then
  // the sender gets its acknowledgement (after its own copy, on the same channel).
  void relay(worker& from, const message_header& h, std::string_view payload) {
    std::size_t refused = 0;
    for (worker& w : workers_)
      if (w.channel && !w.channel->queue(message_kind::user, payload, h.type, 0, flag_broadcast)) ++refused;
    if (refused != 0) log_line("master", "broadcast not queued for " + std::to_string(refused) + " backed-up workers");
    from.channel->queue(message_kind::broadcast_ack, {}, 0, h.id);
  }

  // --- master_context --------------------------------------------------------

  std::error_code send(int slot, const message& m) override {
    if (m.data.size() > opts_.max_message) return make_error_code(message_errc::too_large);
    if (slot < 0 || slot >= static_cast<int>(slots_.size())) return make_error_code(message_errc::no_worker);
    worker* w = find(slots_[static_cast<std::size_t>(slot)].current);
    if (!w || !w->channel || !w->channel->is_open()) return make_error_code(message_errc::no_worker);
    if (!w->channel->queue(message_kind::user, m.data, m.type)) return make_error_code(message_errc::full);
    return {};
  }

  std::size_t broadcast(const message& m) override {
    if (m.data.size() > opts_.max_message) return 0;
    std::size_t queued = 0;
    for (worker& w : workers_)
      if (w.channel && w.channel->queue(message_kind::user, m.data, m.type, 0, flag_broadcast)) ++queued;
    return queued;
  }

  asio::any_io_executor executor() override { return io_.get_executor(); }

  std::vector<int> slots() const override {
    std::vector<int> live;
    for (const slot& s : slots_)
      if (s.current > 0 && find(s.current)) live.push_back(s.index);  // not a worker reaped but not yet cleared
    return live;
  }

  void on_ready(worker& w) {
    if (w.state != phase::starting) return;
    w.state = phase::ready;
    log_line("master", name(w) + " ready");
    slot* s = slot_of(w);
    if (!s) return;
    if (s->successor == w.pid) promote(*s);
    if (s->current == w.pid) {
      s->boot_failures = 0;  // it boots again; early_failures waits for healthy_after
      steer();
    }
    if (reloading_ && reload_slot_ == w.slot && s->current == w.pid) reload_next();
    if (announced_ || stopping_) return;
    bool all = std::all_of(slots_.begin(), slots_.end(), [this](const slot& x) {
      const worker* c = x.current > 0 ? find(x.current) : nullptr;
      return x.retiring || (c && c->state == phase::ready);
    });
    if (!all) return;
    announced_ = true;
    std::printf("cluster: master %d listening on http://%s with %d workers%s\n", static_cast<int>(::getpid()),
                address_.to_string(port_).c_str(), active_slots(),
                admin_ ? (", admin on " + admin_->url()).c_str() : "");
    std::fflush(stdout);
  }

  // The successor is ready: it becomes the slot's worker and the old one
  // drains. Both accept from the same socket meanwhile, so nothing is lost.
  void promote(slot& s) {
    pid_t old = s.current;
    s.current = s.successor;
    s.successor = -1;
    if (worker* o = old > 0 ? find(old) : nullptr) drain(*o, "replaced by pid " + std::to_string(s.current));
  }

  void drain(worker& w, const std::string& why) {
    if (w.state == phase::draining) return;
    w.state = phase::draining;
    w.expected = true;
    w.deadline = clock::now() + opts_.shutdown_timeout;
    log_line("master", name(w) + " draining: " + why);
    if (!w.channel || !w.channel->send_now(message_kind::drain)) ::kill(w.pid, SIGTERM);
  }

  // --- Exits and respawns ----------------------------------------------------

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      worker* w = find(pid);
      if (w) on_exit(*w, status);
    }
    if (stopping_ && workers_.empty()) finish();
  }

  void on_exit(worker& w, int status) {
    auto now = clock::now();
    auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.started);
    slot* sp = slot_of(w);
    worker_exit info;
    info.slot = w.slot;
    info.pid = w.pid;
    info.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    info.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    info.uptime = uptime;
    info.expected = w.expected || stopping_;
    bool was_ready = w.state != phase::starting;
    log_line("master", name(w) + " " + describe_wait_status(status) + " after " + std::to_string(uptime.count()) +
                           " ms" + (was_ready ? "" : " (before it was ready)"));
    if (w.channel) w.channel->close();
    if (sp) sp->folded.add(cells_.cell(w.cell));
    free_cells_.push_back(w.cell);
    pid_t pid = w.pid;
    std::erase_if(workers_, [pid](const worker& x) { return x.pid == pid; });  // `w` is gone from here on
    if (opts_.on_worker_exit) {
      try {
        opts_.on_worker_exit(info);
      } catch (const std::exception& e) {
        log_line("master", std::string("on_worker_exit hook threw: ") + e.what());
      }
    }

    if (!sp) return;
    slot& s = *sp;
    if (s.successor == pid) {
      // A replacement died before it was ready: the old worker keeps serving,
      // so this is no boot loop of the slot.
      s.successor = -1;
      if (reloading_ && reload_slot_ == s.index)
        abort_reload("the new worker for slot " + std::to_string(s.index) + " " + describe_wait_status(status) +
                     " before it was ready");
      else if (!stopping_)
        log_line("master", "replacement for slot " + std::to_string(s.index) + " failed; pid " +
                               std::to_string(s.current) + " keeps serving");
    } else if (s.current == pid) {
      s.current = -1;
      if (!s.retiring && !stopping_) {
        steer();  // new connections go to the slots that serve meanwhile
        if (s.successor > 0) {
          s.current = s.successor;  // it was about to take over anyway
          s.successor = -1;
        } else {
          ++s.restarts;
          respawn_after_death(s, info, was_ready);
        }
      }
    }
    if (s.retiring && s.current < 0 && s.successor < 0) {
      s.removed = true;
      remove_retired_slots();
      apply_scale();
    }
  }

  // The crash policy. A slot whose worker died is always respawned: at once
  // after a healthy run (up healthy_after or more) or an exit the master asked
  // for, after a growing delay when its workers keep dying early. Only boot
  // failures can stop the service, and only while every slot is in a boot
  // loop (boot_loop_gives_up).
  void respawn_after_death(slot& s, const worker_exit& info, bool was_ready) {
    const std::string slot_name = "slot " + std::to_string(s.index);
    if (info.expected) {
      log_line("master", slot_name + ": its worker left as asked; respawning at once");
      schedule_respawn(s, std::chrono::milliseconds(0));
      return;
    }
    const bool early = !was_ready || info.uptime < opts_.healthy_after;
    s.early_failures = early ? s.early_failures + 1 : 0;
    s.boot_failures = was_ready ? 0 : s.boot_failures + 1;
    if (!was_ready && boot_loop_gives_up(info)) return;
    const auto delay = respawn_delay(s.early_failures);
    const std::string when =
        delay.count() == 0 ? "respawning at once" : "respawning in " + std::to_string(delay.count()) + " ms";
    if (!early) {
      log_line("master",
               slot_name + ": its worker ran " + std::to_string(info.uptime.count()) + " ms (healthy); " + when);
    } else if (was_ready) {
      log_line("master", slot_name + ": early death " + std::to_string(s.early_failures) + " in a row (up " +
                             std::to_string(info.uptime.count()) + " ms, healthy_after " +
                             std::to_string(opts_.healthy_after.count()) + " ms); " + when);
    } else {
      log_line("master",
               slot_name + ": worker failed to boot (" + std::to_string(s.boot_failures) + " in a row, " +
                   std::to_string(boot_failures_.size()) + " within crash_window); " + when +
                   (std::ranges::all_of(slots_, [this](const slot& x) { return x.retiring || boot_looping(x); })
                        ? ""
                        : "; other slots serve, so the service stays up"));
    }
    schedule_respawn(s, delay);
  }

  // Exponential backoff with ±20% jitter; the first early failure after a
  // healthy run respawns at once.
  std::chrono::milliseconds respawn_delay(int early_failures) {
    if (early_failures <= 1) return std::chrono::milliseconds(0);
    double ms = static_cast<double>(opts_.restart_delay.count()) * std::pow(opts_.restart_factor, early_failures - 2);
    ms = std::min(ms, static_cast<double>(opts_.restart_max_delay.count()));
    ms *= 0.8 + 0.4 * static_cast<double>(random() % 1001) / 1000.0;
    return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  }

  void schedule_respawn(slot& s, std::chrono::milliseconds delay) {
    if (delay.count() == 0) {
      s.next_attempt = {};
      pending_.push_back({s.index, false});
      return;
    }
    s.next_attempt = clock::now() + delay;
    if (!s.respawn) s.respawn = std::make_unique<asio::steady_timer>(io_);
    s.respawn->expires_after(delay);
    s.respawn->async_wait([this, index = s.index](const asio::error_code& ec) {
      if (ec || stopping_ || index >= static_cast<int>(slots_.size())) return;
      slot& target = slots_[static_cast<std::size_t>(index)];
      target.next_attempt = {};
      if (target.current < 0 && !target.retiring) pending_.push_back({index, false});
    });
  }

  // Gunicorn's "worker failed to boot", made tolerant: boot failures within
  // crash_window count toward crash_limit, and reaching it stops the service
  // (exit code 3) only while every active slot is in a boot loop. A slot that
  // serves keeps the service up however long another slot fails to boot.
  bool boot_loop_gives_up(const worker_exit& info) {
    auto now = clock::now();
    boot_failures_.push_back(now);
    while (!boot_failures_.empty() && now - boot_failures_.front() > opts_.crash_window) boot_failures_.pop_front();
    if (static_cast<int>(boot_failures_.size()) < opts_.crash_limit || stopping_) return false;
    if (!std::ranges::all_of(slots_, [this](const slot& s) { return s.retiring || boot_looping(s); })) return false;
    std::string last = "worker " + std::to_string(info.slot) + " " +
                       (info.signal ? "was killed by " + signal_name(info.signal)
                                    : "exited with code " + std::to_string(info.exit_code)) +
                       " before it was ready";
    log_line("master", "boot loop: " + std::to_string(boot_failures_.size()) + " workers failed to boot within " +
                           std::to_string(opts_.crash_window.count()) + " ms and no slot has a ready worker (last: " +
                           last + "); giving up (crash_limit " + std::to_string(opts_.crash_limit) + ")");
    exit_code_ = 3;
    stop_now("boot loop");
    return true;
  }

  // --- Reload, recycle, scale --------------------------------------------------

  bool reload() override {
    if (stopping_) return false;
    if (reloading_) {
      log_line("master", "reload already in progress; request ignored");
      return true;
    }
    reloading_ = true;
    reload_queue_.clear();
    for (const slot& s : slots_)
      if (!s.retiring) reload_queue_.push_back(s.index);
    log_line("master", "reload begun: " + std::to_string(reload_queue_.size()) + " slots, one at a time");
    hook_reload(reload_event::begun);
    reload_next();
    return true;
  }

  void reload_next() {
    while (!reload_queue_.empty()) {
      int index = reload_queue_.front();
      reload_queue_.pop_front();
      if (index >= static_cast<int>(slots_.size())) continue;
      slot& s = slots_[static_cast<std::size_t>(index)];
      // A slot without a live worker gets a fresh one from its respawn anyway.
      if (s.retiring || s.current < 0 || s.successor > 0) continue;
      reload_slot_ = index;
      pending_.push_back({index, true});
      return;
    }
    reloading_ = false;
    reload_slot_ = -1;
    log_line("master", "reload finished");
    hook_reload(reload_event::finished);
  }

  void abort_reload(const std::string& why) {
    reloading_ = false;
    reload_slot_ = -1;
    reload_queue_.clear();
    log_line("master", "reload aborted: " + why + "; the old workers keep serving");
    hook_reload(reload_event::aborted);
  }

  void hook_reload(reload_event e) {
    if (!opts_.on_reload) return;
    try {
      opts_.on_reload(e);
    } catch (const std::exception& ex) {
      log_line("master", std::string("on_reload hook threw: ") + ex.what());
    }
  }

  // Replace one worker: its successor is ready before it drains.
  void recycle(worker& w, const std::string& why) {
    slot* sp = slot_of(w);
    if (!sp) return;
    slot& s = *sp;
    if (stopping_ || s.retiring || s.current != w.pid || s.successor > 0 || w.state != phase::ready) return;
    log_line("master", name(w) + " " + why + "; starting its replacement");
    pending_.push_back({s.index, true});
  }

  bool scale(int workers) override {
    if (stopping_ || workers < 1 || workers > max_slots) return false;
    target_ = workers;
    apply_scale();
    return true;
  }

  void apply_scale() {
    if (stopping_ || target_ <= 0) return;
    int active = active_slots();
    bool changed = false;
    while (active < target_) {
      if (active != static_cast<int>(slots_.size())) {
        log_line("master", "scaling up waits for the retiring slot to finish draining");
        break;
      }
      try {
        add_slot();
      } catch (const std::exception& e) {
        log_line("master", std::string("cannot add a slot: ") + e.what());
        target_ = active;
        break;
      }
      ++active;
      steer();
      pending_.push_back({static_cast<int>(slots_.size()) - 1, false});
      changed = true;
    }
    while (active > target_) {
      slot& s = slots_[static_cast<std::size_t>(active - 1)];
      s.retiring = true;
      --active;
      steer();
      if (s.respawn) s.respawn->cancel();
      if (worker* succ = s.successor > 0 ? find(s.successor) : nullptr) {
        succ->expected = true;
        ::kill(succ->pid, SIGKILL);
      }
      if (worker* cur = s.current > 0 ? find(s.current) : nullptr) {
        cur->expected = true;
        cur->state = phase::draining;
        cur->deadline = clock::now() + opts_.shutdown_timeout;
        log_line("master", name(*cur) + " retiring: slot " + std::to_string(s.index) + " is being removed");
        if (!cur->channel || !cur->channel->send_now(message_kind::retire))
          ::kill(cur->pid, SIGTERM);
      } else if (s.successor < 0) {
        s.removed = true;
      }
      changed = true;
    }
    remove_retired_slots();
    if (changed) log_line("master", "scaled to " + std::to_string(active) + " workers");
  }

  // --- Admin endpoint ---------------------------------------------------------

  response admin_response(const request& req) {
    return admin_answer(req, [this] { return snapshot(); });
  }

  cluster_status snapshot() {
    auto now = clock::now();
    cluster_status st;
    st.master_pid = ::getpid();
    st.master_uptime_seconds = std::chrono::duration<double>(now - started_at_).count();
    st.state = stopping_ ? "stopping" : reloading_ ? "reloading" : announced_ ? "running" : "starting";
    st.master = read_process_stats(st.master_pid);
    for (const slot& s : slots_) {
      slot_status ss;
      ss.slot = s.index;
      ss.restarts = static_cast<std::uint64_t>(s.restarts);
      ss.totals = s.folded;
      for (const worker& w : workers_) {
        if (w.slot != s.index) continue;
        const worker_cell& c = cells_.cell(w.cell);
        ss.totals.add(c);
        ss.open_connections += c.open_connections.load(std::memory_order_relaxed);
      }
      const worker* cur = s.current > 0 ? find(s.current) : nullptr;
      const bool backing_off = !cur && !s.retiring && !stopping_ && s.next_attempt != clock::time_point{};
      ss.state = s.retiring                      ? "retiring"
                 : backing_off                   ? "backoff"
                 : !cur                          ? "down"
                 : cur->state == phase::ready    ? "ready"
                 : cur->state == phase::starting ? "starting"
                                                 : "draining";
      ss.backoff = backing_off;
      ss.consecutive_failures = s.early_failures;
      ss.boot_failures = s.boot_failures;
      if (backing_off)
        ss.next_attempt_seconds = std::max(0.0, std::chrono::duration<double>(s.next_attempt - now).count());
      if (cur) {
        ++st.workers;
        ss.pid = cur->pid;
        ss.uptime_seconds = std::chrono::duration<double>(now - cur->started).count();
        ss.loop_lag_seconds =
            static_cast<double>(cells_.cell(cur->cell).loop_lag_us.load(std::memory_order_relaxed)) / 1e6;
        ss.process = read_process_stats(cur->pid);
      }
      st.slots.push_back(std::move(ss));
    }
    return st;
  }

  // --- Supervision tick: start deadlines, hangs, drain deadlines, memory ------

  asio::awaitable<void> supervise() {
    asio::steady_timer timer(io_);
    auto period = std::clamp(opts_.heartbeat_interval / 2, std::chrono::milliseconds(10),
                             std::chrono::milliseconds(250));
    auto next_memory_check = clock::now();
    while (!finished_) {
      timer.expires_after(period);
      auto [ec] = co_await timer.async_wait(use_tuple);
      if (ec || finished_) co_return;
      auto now = clock::now();
      std::int64_t now_ns = monotonic_ns();
      bool check_memory = opts_.max_memory != 0 && now >= next_memory_check;
      if (check_memory) next_memory_check = now + std::chrono::seconds(1);
      for (worker& w : workers_) {
        if (w.killed) continue;
        if (w.state == phase::starting && now - w.started > opts_.start_timeout) {
          log_line("master", name(w) + " not ready after " + std::to_string(opts_.start_timeout.count()) +
                                 " ms; killing it");
          kill_worker(w);
          continue;
        }
        if (w.state == phase::draining && now > w.deadline) {
          log_line("master", name(w) + " still busy at its drain deadline; killing it");
          if (stopping_) exit_code_ = std::max(exit_code_, 1);
          kill_worker(w);
          continue;
        }
        check_heartbeat(w, now, now_ns);
        note_healthy(w, now);
        if (check_memory && w.state == phase::ready) {
          std::uint64_t rss = resident_bytes(w.pid);
          if (rss > opts_.max_memory)
            recycle(w, "uses " + std::to_string(rss >> 20) + " MiB resident (max_memory " +
                           std::to_string(opts_.max_memory >> 20) + " MiB)");
        }
      }
    }
  }

  // A slot's worker up healthy_after ends the slot's run of early deaths:
  // its next death respawns at once.
  void note_healthy(const worker& w, clock::time_point now) {
    slot* s = slot_of(w);
    if (!s || s->current != w.pid || w.state != phase::ready || s->early_failures == 0 ||
        now - w.started < opts_.healthy_after)
      return;
    log_line("master", name(w) + " up " + std::to_string(opts_.healthy_after.count()) +
                           " ms: healthy, slot backoff reset after " + std::to_string(s->early_failures) +
                           " early deaths");
    s->early_failures = 0;
  }

  void check_heartbeat(worker& w, clock::time_point now, std::int64_t now_ns) {
    if (opts_.hang_timeout.count() == 0 || w.state == phase::starting) return;
    if (w.aborted) {
      if (now - w.aborted_at > opts_.kill_grace) {
        log_line("master", name(w) + " did not exit after SIGABRT; killing it");
        kill_worker(w);
      }
      return;
    }
    std::int64_t beat = cells_.cell(w.cell).heartbeat_ns.load(std::memory_order_relaxed);
    auto stalled = std::chrono::nanoseconds(now_ns - beat);
    if (beat == 0 || stalled <= opts_.hang_timeout) return;
    log_line("master", name(w) + " unresponsive: no heartbeat for " +
                           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count()) +
                           " ms; sending SIGABRT");
    w.aborted = true;
    w.aborted_at = now;
    ::kill(w.pid, SIGABRT);
  }

  void kill_worker(worker& w) {
    w.killed = true;
    ::kill(w.pid, SIGKILL);
  }

  static std::uint64_t resident_bytes(pid_t pid) {
    std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
    std::uint64_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  }

  // --- Signals and stopping ----------------------------------------------------

  asio::awaitable<void> read_signals() {
    for (;;) {
      auto [ec] = co_await signals_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec) co_return;
      signalfd_siginfo si;
      while (::read(signals_.native_handle(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        int signo = static_cast<int>(si.ssi_signo);
        switch (signo) {
          case SIGCHLD: reap(); break;
          case SIGTERM:
          case SIGINT: graceful_stop(signo); break;
          case SIGQUIT: stop_now("SIGQUIT"); break;
          case SIGHUP: reload(); break;
          case SIGTTIN: scale(std::min(active_slots() + 1, max_slots)); break;
          case SIGTTOU:
            if (active_slots() > 1)
              scale(active_slots() - 1);
            else
              log_line("master", "SIGTTOU ignored: already at one worker");
            break;
          default: log_line("master", signal_name(signo) + " ignored"); break;
        }
      }
      if (finished_) co_return;
    }
  }

  void graceful_stop(int signo) {
    if (stopping_) {
      stop_now(signal_name(signo) + " during a graceful stop");
      return;
    }
    stopping_ = true;
    cancel_pending_work();
    log_line("master", signal_name(signo) + ": graceful stop of " + std::to_string(workers_.size()) +
                           " workers (deadline " + std::to_string(opts_.shutdown_timeout.count()) + " ms)");
    for (worker& w : workers_) drain(w, "stopping");
    if (workers_.empty()) finish();
  }

  void stop_now(const std::string& why) {
    stopping_ = true;
    cancel_pending_work();
    log_line("master", why + ": fast stop, killing " + std::to_string(workers_.size()) + " workers");
    for (worker& w : workers_) {
      w.expected = true;
      kill_worker(w);
    }
    if (workers_.empty()) finish();
  }

  void cancel_pending_work() {
    pending_.clear();
    if (reloading_) abort_reload("the cluster is stopping");
    for (slot& s : slots_) {
      if (s.respawn) s.respawn->cancel();
      s.next_attempt = {};
    }
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    log_line("master", exit_code_ == 0 ? "stopped" : "stopped (exit code " + std::to_string(exit_code_) + ")");
    io_.stop();
  }

  Handler& handler_;
  options opts_;
  shared_region cells_;
  server_state admin_tcp_state_{opts_};    // before io_: suspended admin connections
  server_state admin_local_state_{opts_};  // unlink from these when io_ is destroyed
  asio::io_context io_{1};  // declared before every Asio object: destroyed after them
  listen_address address_;
  int port_ = 0;
  std::vector<slot> slots_;
  std::vector<worker> workers_;
  std::deque<fork_request> pending_;
  std::vector<std::size_t> free_cells_;
  // Receive buffer shared by all channels; pages are touched only as packets need them.
  std::unique_ptr<char[]> scratch_ = std::make_unique_for_overwrite<char[]>(receive_scratch);
  std::size_t next_cell_ = 0;
  std::deque<clock::time_point> boot_failures_;  // within crash_window, all slots
  std::vector<int> steered_;  // the slots new connections go to
  std::deque<int> reload_queue_;
  int reload_slot_ = -1;
  int target_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
  clock::time_point started_at_ = clock::now();
  std::unique_ptr<admin_server> admin_;
  asio::posix::stream_descriptor signals_{io_};
  bool announced_ = false;
  bool reloading_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  bool steering_warned_ = false;
  int exit_code_ = 0;
};

}  // namespace cluster::detail
