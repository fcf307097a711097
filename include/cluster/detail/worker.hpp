// A worker process: its own io_context, its slot's listening socket adopted
// into an acceptor, one coroutine per connection, a heartbeat in shared
// memory, and the control channel to the master.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/connection.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <memory>
#include <string>

#include <sys/signalfd.h>

namespace cluster::detail {

/// What the master hands a worker it forks.
struct worker_setup {
  int slot = 0;
  int family = AF_INET;
  int listen_fd = -1;
  int channel_fd = -1;
  worker_cell* cell = nullptr;
  std::uint64_t request_limit = 0;  ///< 0: never recycle
};

template <class Handler>
class Worker final : private control {
 public:
  /// The setup's descriptors are this worker's; it closes its copies when it
  /// is done (the master keeps its own listening socket).
  Worker(Handler& handler, const options& opts, const worker_setup& setup)
      : handler_(handler),
        opts_(opts),
        slot_(setup.slot),
        state_(opts),
        acceptor_(io_),
        channel_(io_, setup.channel_fd),
        signals_(io_),
        gate_(io_),
        heartbeat_(io_) {
    acceptor_.assign(setup.family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), setup.listen_fd);
    signals_.assign(open_signalfd(signal_set_of({SIGTERM})));
    state_.cell = setup.cell;
    state_.request_limit = setup.request_limit;
    state_.owner = this;
    state_.on_close = [](void* self) { static_cast<Worker*>(self)->on_connection_closed(); };
    state_.on_request_limit = [](void* self) { static_cast<Worker*>(self)->ask(message_kind::recycle); };
    current_control() = this;
  }

  ~Worker() { current_control() = nullptr; }

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Serves until drained; returns the process exit code.
  int run() {
    tick();
    if (opts_.on_worker_start) opts_.on_worker_start(slot_);  // may throw: a boot failure
    asio::co_spawn(io_, accept_loop(), asio::detached);
    asio::co_spawn(io_, read_channel(), asio::detached);
    asio::co_spawn(io_, read_signals(), asio::detached);
    asio::co_spawn(io_, beat(), asio::detached);
    // The slot's socket is already listening in the master; from here on this
    // worker takes connections off its queue.
    ask(message_kind::ready);
    io_.run();
    return 0;
  }

 private:
  std::string role() const { return "worker " + std::to_string(slot_); }

  bool ask(message_kind kind, std::uint32_t type = 0) {
    int err = send_message(channel_.native_handle(), kind, {}, type);
    if (err != 0) log_line(role(), std::string("cannot reach the master: ") + std::strerror(err));
    return err == 0;
  }

  bool reload() override { return ask(message_kind::reload); }
  bool scale(int workers) override { return ask(message_kind::scale, static_cast<std::uint32_t>(workers)); }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      while (state_.open >= static_cast<std::size_t>(opts_.max_connections) && !state_.draining) {
        // At the limit: leave new connections queued in the kernel until one
        // of ours closes.
        gate_.expires_at(clock::time_point::max());
        co_await gate_.async_wait(use_tuple);
      }
      if (state_.draining) co_return;
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        if (state_.draining || ec == asio::error::operation_aborted) co_return;
        // Out of descriptors or a transient error: back off briefly rather
        // than spin on a readable listening socket.
        log_line(role(), "accept failed: " + ec.message());
        gate_.expires_after(std::chrono::milliseconds(50));
        co_await gate_.async_wait(use_tuple);
        continue;
      }
      serve(std::move(socket));
    }
  }

  void serve(asio::ip::tcp::socket socket) {
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    auto c = std::make_shared<connection>(std::move(socket), state_);
    asio::co_spawn(io_, connection::serve(std::move(c), handler_), asio::detached);
  }

  // The event loop's heartbeat: if a handler blocks the loop, the ticks stop
  // and the master notices; how late each tick runs is the loop's lag.
  asio::awaitable<void> beat() {
    auto next = clock::now();
    for (;;) {
      next += opts_.heartbeat_interval;
      heartbeat_.expires_at(next);
      auto [ec] = co_await heartbeat_.async_wait(use_tuple);
      if (ec) co_return;
      auto now = clock::now();
      if (state_.cell)
        state_.cell->loop_lag_us.store(std::chrono::duration_cast<std::chrono::microseconds>(now - next).count(),
                                       std::memory_order_relaxed);
      if (now - next > opts_.heartbeat_interval) next = now;  // don't fire a burst to catch up
      tick();
    }
  }

  void tick() noexcept {
    if (state_.cell) state_.cell->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
  }

  asio::awaitable<void> read_channel() {
    alignas(message_header) char buf[256];
    for (;;) {
      auto [ec] = co_await channel_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec) co_return;
      for (;;) {
        ssize_t n = ::recv(channel_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) {
          // The master is gone (the kernel's parent-death signal normally
          // got here first): finish what is in flight and exit.
          log_line(role(), "control channel closed by the master; draining");
          begin_drain();
          co_return;
        }
        message_header h;
        if (!parse_header({buf, static_cast<std::size_t>(n)}, h)) {
          log_line(role(), "ignored a malformed control message");
          continue;
        }
        if (h.kind == static_cast<std::uint16_t>(message_kind::drain)) begin_drain();
        if (h.kind == static_cast<std::uint16_t>(message_kind::retire)) retire();
        if (!channel_.is_open()) co_return;  // drained and done
      }
    }
  }

  asio::awaitable<void> read_signals() {
    for (;;) {
      auto [ec] = co_await signals_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec) co_return;
      signalfd_siginfo si;
      while (::read(signals_.native_handle(), &si, sizeof si) == static_cast<ssize_t>(sizeof si))
        if (si.ssi_signo == SIGTERM) begin_drain();
    }
  }

  // The slot is being removed: the master has already steered new
  // connections away from its socket, so take everything still queued on it,
  // then drain. Nothing queued is reset when the master closes the socket.
  void retire() {
    if (state_.draining) return;
    acceptor_.non_blocking(true);
    for (int taken = 0; taken < 100'000; ++taken) {
      asio::error_code ec;
      asio::ip::tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec) break;
      serve(std::move(socket));
    }
    begin_drain();
  }

  // Stop accepting (the slot's socket stays open in the master, so queued
  // connections wait for the slot's next worker), let every connection finish
  // its current request, then exit.
  void begin_drain() {
    if (state_.draining) return;
    state_.draining = true;
    asio::error_code ignored;
    acceptor_.close(ignored);
    gate_.cancel();
    for (connection_link* l = state_.connections.next; l != &state_.connections;) {
      connection_link* next = l->next;
      static_cast<connection*>(l)->drain();
      l = next;
    }
    finish_if_drained();
  }

  void on_connection_closed() {
    if (state_.draining)
      finish_if_drained();
    else
      gate_.cancel();  // wake the accept loop if it waits at the limit
  }

  void finish_if_drained() {
    if (state_.open != 0) return;
    asio::error_code ignored;
    channel_.close(ignored);
    signals_.close(ignored);
    heartbeat_.cancel();
    io_.stop();
  }

  Handler& handler_;
  const options& opts_;
  int slot_;
  server_state state_;  // outlives io_: pending handlers may hold connections
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_;
  asio::posix::stream_descriptor channel_;
  asio::posix::stream_descriptor signals_;
  asio::steady_timer gate_;
  asio::steady_timer heartbeat_;
};

}  // namespace cluster::detail
