// The master: binds one listening socket per slot, forks a worker into each
// slot, and supervises them from a single-threaded io_context: signals through
// a signalfd, one control channel per worker, timers for respawns and the
// stop deadline. It never serves requests itself.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/worker.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cluster::detail {

template <class Handler>
class Cluster {
 public:
  Cluster(Handler& handler, options opts) : handler_(handler), opts_(std::move(opts)) { opts_.validate(); }

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  ~Cluster() {
    for (slot& s : slots_)
      if (s.listen_fd >= 0) ::close(s.listen_fd);
  }

  /// Runs the cluster until it is stopped; returns the exit code (0 after a
  /// clean stop).
  int run() {
    open_listeners();
    const sigset_t handled = signal_set_of({SIGCHLD, SIGTERM, SIGINT, SIGQUIT});
    sigset_t previous;
    ::sigprocmask(SIG_BLOCK, &handled, &previous);
    struct sigaction old_pipe{};
    struct sigaction ignore{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    signals_.assign(open_signalfd(handled));

    log_line("master", "starting " + std::to_string(slots_.size()) + " workers on " +
                           address_.to_string(port_));
    for (slot& s : slots_) pending_.push_back(s.index);
    asio::co_spawn(io_, read_signals(), asio::detached);
    // Forks happen here, between handlers, never inside one: the child then
    // starts from a plain stack with no Asio frame of the master above it.
    while (!finished_) {
      fork_pending();
      if (finished_) break;
      if (io_.run_one() == 0) break;
    }

    asio::error_code ignored;
    signals_.close(ignored);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    return exit_code_;
  }

 private:
  struct slot {
    int index = 0;
    int listen_fd = -1;
    pid_t pid = -1;
    bool ready = false;
    clock::time_point started{};
    int restarts = 0;
    int quick_failures = 0;  // consecutive exits soon after start
    std::shared_ptr<asio::posix::stream_descriptor> channel;
    std::unique_ptr<asio::steady_timer> respawn;
  };

  void open_listeners() {
    int count = opts_.effective_workers();
    address_ = resolve_listen_address(opts_.host, opts_.port);
    port_ = opts_.port;
    slots_.resize(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      slot& s = slots_[static_cast<std::size_t>(i)];
      s.index = i;
      s.listen_fd = open_listener(address_, port_, opts_.backlog);
      if (i == 0 && port_ == 0) {
        // Every other slot joins the port the kernel picked for the first.
        port_ = bound_port(s.listen_fd);
        address_.set_port(port_);
      }
    }
  }

  void fork_pending() {
    while (!pending_.empty() && !stopping_) {
      int index = pending_.front();
      pending_.erase(pending_.begin());
      fork_worker(slots_[static_cast<std::size_t>(index)]);
    }
    pending_.clear();
  }

  void fork_worker(slot& s) {
    int fds[2];
    make_channel(fds);
    std::fflush(nullptr);  // or buffered output would be written twice
    pid_t master = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      log_line("master", "fork for slot " + std::to_string(s.index) + " failed: " + std::strerror(err));
      schedule_respawn(s, std::chrono::milliseconds(1000));
      return;
    }
    if (pid == 0) {
      ::close(fds[0]);
      int code = run_worker(s, master, fds[1]);
      std::fflush(nullptr);
      ::_exit(code);
    }
    ::close(fds[1]);
    s.pid = pid;
    s.ready = false;
    s.started = clock::now();
    s.channel = std::make_shared<asio::posix::stream_descriptor>(io_, fds[0]);
    log_line("master", "worker " + std::to_string(s.index) + " started (pid " + std::to_string(pid) + ")");
    asio::co_spawn(io_, read_channel(s.index, s.channel), asio::detached);
  }

  // In the child: shed what belongs to the master and the other slots, then
  // serve. Never returns to the master's code.
  int run_worker(slot& own, pid_t master, int channel_fd) noexcept {
    try {
      for (slot& s : slots_) {
        if (&s != &own && s.listen_fd >= 0) ::close(s.listen_fd);
        if (s.channel) ::close(s.channel->native_handle());
      }
      ::close(signals_.native_handle());
      if (!become_worker_process(master)) return 1;
      Worker<Handler> worker(handler_, opts_, own.index, address_.family(), own.listen_fd, channel_fd);
      return worker.run();
    } catch (const std::exception& e) {
      log_line("worker " + std::to_string(own.index), std::string("failed: ") + e.what());
      return 1;
    }
  }

  asio::awaitable<void> read_channel(int index, std::shared_ptr<asio::posix::stream_descriptor> channel) {
    alignas(message_header) char buf[256];
    for (;;) {
      auto [ec] = co_await channel->async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec || !channel->is_open()) co_return;
      for (;;) {
        ssize_t n = ::recv(channel->native_handle(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) co_return;  // the worker is exiting; SIGCHLD tells the rest
        slot& s = slots_[static_cast<std::size_t>(index)];
        message_header h;
        if (!parse_header({buf, static_cast<std::size_t>(n)}, h) ||
            h.kind != static_cast<std::uint16_t>(message_kind::ready)) {
          log_line("master", "worker " + std::to_string(index) + " (pid " + std::to_string(s.pid) +
                                 ") sent a malformed control message; replacing it");
          ::kill(s.pid, SIGKILL);
          co_return;
        }
        on_ready(s);
      }
    }
  }

  void on_ready(slot& s) {
    s.ready = true;
    log_line("master", "worker " + std::to_string(s.index) + " (pid " + std::to_string(s.pid) + ") ready");
    if (announced_ || stopping_) return;
    if (!std::all_of(slots_.begin(), slots_.end(), [](const slot& x) { return x.ready; })) return;
    announced_ = true;
    std::printf("cluster: master %d listening on http://%s with %zu workers\n", static_cast<int>(::getpid()),
                address_.to_string(port_).c_str(), slots_.size());
    std::fflush(stdout);
  }

  asio::awaitable<void> read_signals() {
    for (;;) {
      auto [ec] = co_await signals_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec) co_return;
      signalfd_siginfo si;
      while (::read(signals_.native_handle(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        switch (si.ssi_signo) {
          case SIGCHLD: reap(); break;
          case SIGTERM:
          case SIGINT: graceful_stop(static_cast<int>(si.ssi_signo)); break;
          case SIGQUIT: fast_stop("SIGQUIT"); break;
          default: break;
        }
      }
      if (finished_) co_return;
    }
  }

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = std::find_if(slots_.begin(), slots_.end(), [pid](const slot& s) { return s.pid == pid; });
      if (it == slots_.end()) continue;
      slot& s = *it;
      auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - s.started);
      log_line("master", "worker " + std::to_string(s.index) + " (pid " + std::to_string(pid) + ") " +
                             describe_wait_status(status) + " after " + std::to_string(uptime.count()) + " ms");
      s.pid = -1;
      s.ready = false;
      if (s.channel) {
        asio::error_code ignored;
        s.channel->close(ignored);
        s.channel.reset();
      }
      if (stopping_) continue;
      ++s.restarts;
      // A worker that dies soon after starting is likely to die again: back
      // off so a crash loop does not spin the machine.
      if (uptime >= std::chrono::seconds(1)) s.quick_failures = 0;
      auto delay = s.quick_failures == 0 ? std::chrono::milliseconds(0)
                                         : std::chrono::milliseconds(100 << std::min(s.quick_failures - 1, 6));
      ++s.quick_failures;
      schedule_respawn(s, delay);
    }
    if (stopping_ && live_workers() == 0) finish();
  }

  void schedule_respawn(slot& s, std::chrono::milliseconds delay) {
    if (delay.count() == 0) {
      log_line("master", "respawning worker " + std::to_string(s.index));
      pending_.push_back(s.index);
      return;
    }
    log_line("master", "respawning worker " + std::to_string(s.index) + " in " + std::to_string(delay.count()) +
                           " ms");
    if (!s.respawn) s.respawn = std::make_unique<asio::steady_timer>(io_);
    s.respawn->expires_after(delay);
    s.respawn->async_wait([this, index = s.index](const asio::error_code& ec) {
      if (!ec && !stopping_) pending_.push_back(index);
    });
  }

  std::size_t live_workers() const {
    return static_cast<std::size_t>(std::count_if(slots_.begin(), slots_.end(), [](const slot& s) { return s.pid > 0; }));
  }

  void graceful_stop(int signo) {
    if (stopping_) {
      fast_stop(signal_name(signo) + " during a graceful stop");
      return;
    }
    stopping_ = true;
    cancel_respawns();
    log_line("master", signal_name(signo) + ": graceful stop of " + std::to_string(live_workers()) +
                           " workers (deadline " + std::to_string(opts_.shutdown_timeout.count()) + " ms)");
    for (slot& s : slots_) {
      if (s.pid <= 0) continue;
      if (!s.channel || send_message(s.channel->native_handle(), message_kind::drain) != 0) ::kill(s.pid, SIGTERM);
    }
    if (live_workers() == 0) {
      finish();
      return;
    }
    deadline_.expires_after(opts_.shutdown_timeout);
    deadline_.async_wait([this](const asio::error_code& ec) {
      if (ec || finished_) return;
      log_line("master", std::to_string(live_workers()) + " workers still busy at the shutdown deadline; killing them");
      exit_code_ = 1;
      kill_all();
    });
  }

  void fast_stop(const std::string& why) {
    stopping_ = true;
    cancel_respawns();
    log_line("master", why + ": fast stop, killing " + std::to_string(live_workers()) + " workers");
    kill_all();
    if (live_workers() == 0) finish();
  }

  void kill_all() {
    for (slot& s : slots_)
      if (s.pid > 0) ::kill(s.pid, SIGKILL);
  }

  void cancel_respawns() {
    pending_.clear();
    for (slot& s : slots_)
      if (s.respawn) s.respawn->cancel();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    log_line("master", exit_code_ == 0 ? "stopped" : "stopped after killing workers");
    io_.stop();
  }

  Handler& handler_;
  options opts_;
  asio::io_context io_{1};  // declared first among Asio objects: destroyed last
  listen_address address_;
  int port_ = 0;
  std::vector<slot> slots_;
  std::vector<int> pending_;  // slots waiting for a fork
  asio::posix::stream_descriptor signals_{io_};
  asio::steady_timer deadline_{io_};
  bool announced_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  int exit_code_ = 0;
};

}  // namespace cluster::detail
