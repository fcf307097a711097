// The master process's cycle, in the spirit of nginx's: claim the port, open
// the slots' sockets, then loop: fork what the supervisor asks for, wait for
// the next event (a signal through a signalfd, a worker's message, a timer)
// and hand it to the supervisor, which decides and acts. The only part that
// needs the Handler type is forking: the child becomes a Worker<Handler>.
#pragma once

#include <cluster/detail/admin.hpp>
#include <cluster/detail/admin_routes.hpp>
#include <cluster/detail/asio.hpp>
#include <cluster/detail/binary_upgrade.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/cpu_affinity.hpp>
#include <cluster/detail/descriptor_limit.hpp>
#include <cluster/detail/inherited_rings.hpp>
#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/process_identity.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/socket_activation.hpp>
#include <cluster/detail/supervisor.hpp>
#include <cluster/detail/worker.hpp>
#include <cluster/options.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/signalfd.h>
#include <unistd.h>

namespace cluster::detail {

/// The master of a cluster serving `Handler`.
template <class Handler>
class Cluster final {
 public:
  /// Validates `opts` (throws option_error naming the option at fault).
  Cluster(Handler& handler, options opts)
      : handler_(handler),
        opts_(std::move(opts)),
        cells_((opts_.validate(), 3 * max_slots + 64)),
        identity_(resolve_identity(opts_.user, opts_.group)),
        cpus_(parse_cpu_affinity(opts_.cpu_affinity)) {
    process_log_style() = opts_.log_format == "json" ? log_style::json : log_style::text;
  }

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Runs the cluster until it is stopped; returns the exit code: 0 after a
  /// clean stop, 1 when workers had to be killed at the stop deadline, 3 when
  /// workers kept failing to boot while no slot had a ready worker.
  int run() {
    // The program file is resolved before anything can replace it.
    program_image image = program_image::of_this_process();
    prepare_host();
    handed_over inherited = take_handover();
    int admin_fd = open_listeners(inherited);
    auto render = [this](const request& r) {
      return admin_answer(r, [this] { return supervisor_.snapshot(); }, [this] { return supervisor_.health(); });
    };
    if (admin_fd >= 0)  // handed over (this master owns it now) or passed by systemd (it does)
      admin_ = std::make_unique<admin_server>(io_, admin_tcp_state_, admin_local_state_, admin_fd,
                                              !inherited.empty(), render);
    else if (!opts_.admin.empty())
      admin_ = std::make_unique<admin_server>(io_, admin_tcp_state_, admin_local_state_,
                                              parse_admin_address(opts_.admin), render);
    // this_master() works in the hook (its executor() for background tasks;
    // no worker is live yet).
    role_scope hook_role({.master = &supervisor_.context()});
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
    role_scope role({.lifecycle = &supervisor_.lifecycle(), .master = &supervisor_.context()});

    supervisor_.start(admin_ ? admin_->url() : std::string(), admin_ ? admin_->listening_fd() : -1, std::move(image),
                      inherited);
    asio::co_spawn(io_, read_signals(), asio::detached);
    // The admin socket of a binary upgrade is still served by the old
    // master: this one takes its share of the probes only once it is ready,
    // so that no balancer reads "starting" about a service that serves.
    bool admin_serving = false, admin_handed_over = false;
    auto admin_turns = [&] {
      if (admin_ && !admin_serving && (inherited.empty() || supervisor_.serving())) {
        admin_->start();
        admin_serving = true;
      }
      if (admin_ && !admin_handed_over && supervisor_.handed_over()) {
        admin_->hand_over();
        admin_handed_over = true;
      }
    };
    admin_turns();
    // Forks happen here, between handlers, never inside one: the child then
    // starts from a plain stack with no Asio frame of the master above it.
    while (!supervisor_.finished()) {
      while (auto plan = supervisor_.next_fork()) fork_worker(*plan);
      if (supervisor_.finished() || io_.run_one() == 0) break;
      admin_turns();
    }

    if (admin_ && supervisor_.handed_over()) admin_->release_path();
    asio::error_code ignored;
    signals_.close(ignored);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    return supervisor_.exit_code();
  }

 private:
  // The slots' sockets: handed over by an old master (binary upgrade), passed
  // by the service manager (socket activation), or bound here. Returns the
  // admin listener that came with them, or -1. Throws for passed sockets
  // that cannot be used, naming them.
  int open_listeners(const handed_over& inherited) {
    if (!inherited.empty()) {
      supervisor_.adopt_slots(inherited.slots);
      return inherited.admin;
    }
    int admin_fd = -1;
    std::vector<int> service;
    for (const activated_socket& s : take_activated_sockets()) {
      if (s.name == "admin")
        admin_fd = s.fd;
      else
        service.push_back(s.fd);
    }
    if (service.size() > 1)
      throw std::invalid_argument("socket activation passed " + std::to_string(service.size()) +
                                  " service sockets; cluster serves one (name the admin socket \"admin\")");
    if (service.size() == 1) {
      supervisor_.share_slots(service.front());
    } else {
      listen_address address = resolve_listen_address(opts_.host, opts_.port);
      const int port = claim_port(address, opts_.port);  // refuses a port another program serves
      address.set_port(port);
      supervisor_.open_slots(address, port);
    }
    return admin_fd;
  }

  // What the operator set for the host, done before any socket or fork: the
  // descriptor limit the workers inherit, and the plan for the workers'
  // identity and CPUs, logged once.
  void prepare_host() {
    descriptor_limit lim =
        raise_descriptor_limit(descriptors_needed(opts_.max_connections, std::max(opts_.effective_workers(), 1)));
    if (!lim.shortfall.empty())
      log_line("master", "error: " + lim.shortfall);
    else if (lim.now != lim.before)
      log_line("master", "RLIMIT_NOFILE raised from " + std::to_string(lim.before) + " to " + std::to_string(lim.now) +
                             " for max_connections=" + std::to_string(opts_.max_connections));
    if (identity_.change)
      log_line("master", "workers run as " + identity_.user + " (uid " + std::to_string(identity_.uid) + ", gid " +
                             std::to_string(identity_.gid) + ")");
    if (!cpus_.cpus.empty()) {
      std::string list;
      for (int c : cpus_.cpus) list += (list.empty() ? "" : ",") + std::to_string(c);
      log_line("master", "workers pinned to CPUs " + list + " by slot (cpu_affinity " + opts_.cpu_affinity + ")");
    }
  }

  void fork_worker(fork_plan& plan) {
    int fds[2] = {-1, -1};
    if (int err = make_channel(fds); err != 0) {
      supervisor_.cannot_start(plan, std::string("socketpair for a worker channel: ") + std::strerror(err));
      return;
    }
    plan.setup.channel_fd = fds[1];
    std::fflush(nullptr);  // or buffered output would be written twice
    pid_t master = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      supervisor_.cannot_start(plan, std::string("fork: ") + std::strerror(err));
      return;
    }
    if (pid == 0) {
      ::close(fds[0]);
      int code = run_worker(plan.setup, master);
      std::fflush(nullptr);
      ::_exit(code);
    }
    ::close(fds[1]);
    supervisor_.forked(plan, pid, fds[0]);
  }

  // In the child: shed what belongs to the master and the other slots, then
  // serve. Never returns to the master's code.
  int run_worker(const worker_setup& setup, pid_t master) noexcept {
    try {
      supervisor_.close_in_child(setup.slot);
      ::close(signals_.native_handle());
      drop_inherited_rings();  // io_uring builds: the master's ring is not ours
      if (admin_) admin_->close_descriptors_in_child();
      role_scope no_role({});  // until the worker takes its own
      // Before the parent-death signal: a change of credentials clears it.
      if (std::string failed = take_identity(identity_); !failed.empty()) {
        log_line("worker " + std::to_string(setup.slot), "cannot run as " + identity_.user + ": " + failed);
        return 1;
      }
      if (!pin_to_cpu(cpus_.cpu_for(setup.slot)))
        log_line("worker " + std::to_string(setup.slot),
                 "cannot pin to CPU " + std::to_string(cpus_.cpu_for(setup.slot)) + ": " + std::strerror(errno));
      if (!become_worker_process(master)) return 1;
      Worker<Handler> worker(handler_, opts_, setup);
      return worker.run();
    } catch (const std::exception& e) {
      log_line("worker " + std::to_string(setup.slot), std::string("failed to start: ") + e.what());
      return 1;
    }
  }

  asio::awaitable<void> read_signals() {
    for (;;) {
      auto [ec] = co_await signals_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec) co_return;
      signalfd_siginfo si;
      while (::read(signals_.native_handle(), &si, sizeof si) == static_cast<ssize_t>(sizeof si))
        on_signal(static_cast<int>(si.ssi_signo));
      if (supervisor_.finished()) co_return;
    }
  }

  // What the operator's signals mean (the table in the README).
  void on_signal(int signo) {
    switch (signo) {
      case SIGCHLD: supervisor_.reap(); break;
      case SIGTERM:
      case SIGINT: supervisor_.graceful_stop(signo); break;
      case SIGQUIT: supervisor_.stop_now("SIGQUIT"); break;
      case SIGHUP: supervisor_.lifecycle().reload(); break;
      case SIGTTIN: supervisor_.scale_by(+1); break;
      case SIGTTOU: supervisor_.scale_by(-1); break;
      case SIGUSR2: supervisor_.lifecycle().upgrade(); break;
      default: log_line("master", signal_name(signo) + " ignored"); break;
    }
  }

  Handler& handler_;
  options opts_;
  shared_region cells_;
  process_identity identity_;
  cpu_plan cpus_;
  server_state admin_tcp_state_{opts_};    // before io_: suspended admin connections
  server_state admin_local_state_{opts_};  // unlink from these when io_ is destroyed
  asio::io_context io_{1};  // declared before every Asio object: destroyed after them
  supervisor supervisor_{io_, opts_, cells_};
  std::unique_ptr<admin_server> admin_;
  asio::posix::stream_descriptor signals_{io_};
};

}  // namespace cluster::detail
