// A worker process: its own io_context, its slot's listening socket adopted
// into an acceptor, one coroutine per connection, a heartbeat in shared
// memory, the control channel's receive loop and the drain that ends it.
// Messaging from the worker's code is worker_messenger's job.
#pragma once

#include <cluster/detail/accept_backoff.hpp>
#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>
#include <cluster/detail/connection.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/exit_flush.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/worker_messenger.hpp>
#include <cluster/detail/worker_setup.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <malloc.h>
#include <sys/signalfd.h>

namespace cluster::detail {

template <class Handler>
class Worker final : private control, private connection_events {
 public:
  /// The setup's descriptors are this worker's; it closes its copies when it
  /// is done (the master keeps its own listening socket).
  Worker(Handler& handler, const options& opts, const worker_setup& setup)
      : handler_(handler),
        opts_(opts),
        slot_(setup.slot),
        state_(opts, this),
        acceptor_(io_),
        channel_(std::make_shared<channel_endpoint>(io_, setup.channel_fd, channel_queue_bytes)),
        signals_(io_),
        messenger_(io_, *channel_, setup.slot, opts.max_message),
        gate_(io_),
        heartbeat_(io_) {
    acceptor_.assign(setup.family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), setup.listen_fd);
    signals_.assign(open_signalfd(signal_set_of({SIGTERM})));
    state_.cell = setup.cell;
    state_.request_limit = setup.request_limit;
  }

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
    exit_flush::flush_all();  // the process ends with _exit: buffered output goes now
    return 0;
  }

 private:
  std::string role() const { return "worker " + std::to_string(slot_); }

  bool ask(message_kind kind, std::uint32_t type = 0) {
    bool sent = channel_->send_now(kind, {}, type);
    if (!sent) log_line(role(), "cannot reach the master: control channel closed or full");
    return sent;
  }

  bool reload() override { return ask(message_kind::reload); }
  bool scale(int workers) override { return ask(message_kind::scale, static_cast<std::uint32_t>(workers)); }
  bool upgrade() override { return ask(message_kind::upgrade); }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      while (state_.connections.size() >= static_cast<std::size_t>(opts_.max_connections) && !state_.draining) {
        // At the limit: leave new connections queued in the kernel until one
        // of ours closes.
        gate_.expires_at(clock::time_point::max());
        co_await gate_.async_wait(use_tuple);
      }
      if (state_.draining) co_return;
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        if (state_.draining || ec == asio::error::operation_aborted) co_return;
        // Out of descriptors: pause (longer each time; a connection that
        // closes ends the pause) rather than spin on a readable socket.
        auto d = accept_backoff_.failed(ec);
        if (!d.log.empty()) log_line(role(), d.log);
        if (d.pause.count() != 0) {
          gate_.expires_after(d.pause);
          co_await gate_.async_wait(use_tuple);
        }
        continue;
      }
      if (accept_backoff_.failures() != 0) log_line(role(), accept_backoff_.succeeded());
      serve(std::move(socket));
    }
  }

  void serve(asio::ip::tcp::socket socket) {
    reserve_socket_records();
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    auto c = connection::open(std::move(socket), state_);
    asio::co_spawn(io_, connection::serve(std::move(c), handler_), asio::detached);
    peak_open_ = std::max(peak_open_, state_.connections.size());
  }

  // Asio keeps a record per registered socket (about 170 bytes) and never
  // frees it: a closed socket's record waits in a free list for the next
  // socket. Made one at a time, the records sit between the buffers and
  // coroutine frames of the connections of their day, and once those are
  // freed (idle connections park, connections close) the records keep the
  // pages around them from going back to the kernel. So make them ahead, in
  // batches of an eighth more (a few system calls per connection, only when
  // the number open reaches a new peak), next to each other.
  void reserve_socket_records() {
    if (state_.connections.size() + 1 < socket_records_) return;
    std::size_t batch = std::max<std::size_t>(64, socket_records_ / 8);
    std::vector<asio::ip::tcp::socket> sockets;
    sockets.reserve(batch);
    for (std::size_t i = 0; i < batch; ++i) {
      asio::ip::tcp::socket s(io_);
      asio::error_code ec;
      s.open(asio::ip::tcp::v4(), ec);
      if (ec) break;  // out of descriptors: fewer records now, more at the next peak
      sockets.push_back(std::move(s));
    }
    socket_records_ += sockets.size();
  }  // the sockets close here: their records wait in Asio's free list

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
    release_idle_sessions();
  }

  // Keep-alive connections idle for a whole heartbeat interval give back
  // their buffers and coroutine (basic_connection::check_idle); once
  // many did, the next tick (by when they have parked) hands the freed
  // pages back to the kernel, as give_memory_back() does after closes.
  void release_idle_sessions() noexcept {
    if (released_since_trim_ >= trim_after_connections) {
      ::malloc_trim(0);
      released_since_trim_ = 0;
    }
    auto idle_before = clock::now() - opts_.heartbeat_interval;
    state_.connections.for_each([&](open_connection& c) {
      if (c.check_idle(idle_before)) ++released_since_trim_;
    });
  }

  asio::awaitable<void> read_channel() {
    auto scratch = std::make_unique_for_overwrite<char[]>(receive_scratch);
    bool well_formed = co_await channel_->receive({scratch.get(), receive_scratch},
                                                  [this](const message_header& h, std::string_view payload) {
                                                    return on_channel_message(h, payload);
                                                  });
    if (!well_formed) log_line(role(), "malformed control message from the master");
    messenger_.channel_lost();
    if (!state_.draining) {
      // The master is gone (the kernel's parent-death signal normally got
      // here first): finish what is in flight and exit.
      log_line(role(), "control channel closed by the master; draining");
      begin_drain();
    }
  }

  bool on_channel_message(const message_header& h, std::string_view payload) {
    switch (static_cast<message_kind>(h.kind)) {
      case message_kind::drain: begin_drain(); return true;
      case message_kind::retire: retire(); return true;
      case message_kind::lame_duck: state_.closing = true; return true;
      default: return messenger_.dispatch(h, payload);  // false: not a message a worker gets
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
    state_.connections.for_each([](open_connection& c) { c.drain(); });
    finish_if_drained();
  }

  void on_request_limit() override { ask(message_kind::recycle); }

  void on_connection_closed() override {
    if (state_.draining)
      finish_if_drained();
    else
      gate_.cancel();  // wake the accept loop if it waits at the limit
    give_memory_back();
  }

  // Thousands of connections leave thousands of freed buffers scattered
  // through the heap, which malloc keeps (it returns only the top of the
  // heap): once half of a large peak has closed, hand the free pages back to
  // the kernel. A few runs per burst, never per request.
  void give_memory_back() noexcept {
    if (peak_open_ < trim_after_connections || state_.connections.size() > peak_open_ / 2) return;
    ::malloc_trim(0);
    peak_open_ = state_.connections.size();
  }

  void finish_if_drained() {
    if (state_.connections.size() != 0) return;
    asio::error_code ignored;
    channel_->close();
    signals_.close(ignored);
    heartbeat_.cancel();
    io_.stop();
  }

  Handler& handler_;
  const options& opts_;
  int slot_;
  server_state state_;  // outlives io_: pending handlers may hold connections
  // One thread runs this loop, ever: no locking in the scheduler or reactor.
  asio::io_context io_{ASIO_CONCURRENCY_HINT_UNSAFE};
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<channel_endpoint> channel_;
  asio::posix::stream_descriptor signals_;
  worker_messenger messenger_;  // cluster::this_worker(); uses channel_
  // Connections open at once that make a later drop worth a malloc_trim.
  static constexpr std::size_t trim_after_connections = 256;
  std::size_t peak_open_ = 0;  // since the last trim
  std::size_t released_since_trim_ = 0;  // connections parked since the last trim
  std::size_t socket_records_ = 0;       // made by reserve_socket_records()
  asio::steady_timer gate_;  // the accept loop waits on it: at the connection limit, or pausing
  accept_backoff accept_backoff_;
  asio::steady_timer heartbeat_;
  // Last: this_worker() and reload() stop answering before anything above is destroyed.
  role_scope role_{{.lifecycle = this, .worker = &messenger_}};
};

}  // namespace cluster::detail
