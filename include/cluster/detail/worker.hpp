// A worker process: its own io_context, its slot's listening socket adopted
// into an acceptor, one coroutine per connection, and the control channel to
// the master.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/connection.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <memory>
#include <string>

#include <sys/signalfd.h>

namespace cluster::detail {

template <class Handler>
class Worker {
 public:
  /// `listen_fd` and `channel_fd` are this worker's; the worker closes its
  /// copies when it is done (the master keeps its own listening socket).
  Worker(Handler& handler, const options& opts, int slot, int family, int listen_fd, int channel_fd)
      : handler_(handler),
        slot_(slot),
        state_(opts),
        acceptor_(io_),
        channel_(io_, channel_fd),
        signals_(io_),
        gate_(io_) {
    acceptor_.assign(family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), listen_fd);
    signals_.assign(open_signalfd(signal_set_of({SIGTERM})));
    state_.on_close = [](void* self) { static_cast<Worker*>(self)->on_connection_closed(); };
    state_.on_close_arg = this;
  }

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Serves until drained; returns the process exit code.
  int run() {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    asio::co_spawn(io_, read_channel(), asio::detached);
    asio::co_spawn(io_, read_signals(), asio::detached);
    // Listening already happens on the master's socket; from here on this
    // worker takes connections off the slot's queue.
    if (int err = send_message(channel_.native_handle(), message_kind::ready); err != 0)
      log_line(role(), std::string("cannot report ready to the master: ") + std::strerror(err));
    io_.run();
    return 0;
  }

 private:
  std::string role() const { return "worker " + std::to_string(slot_); }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      while (state_.open >= static_cast<std::size_t>(state_.opts.max_connections) && !state_.draining) {
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
      asio::error_code ignored;
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      auto c = std::make_shared<connection>(std::move(socket), state_);
      asio::co_spawn(io_, connection::serve(std::move(c), handler_), asio::detached);
    }
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

  // Stop accepting (the slot's socket stays open in the master, so queued
  // connections wait for the next worker), let every connection finish its
  // current request, then exit.
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
    io_.stop();
  }

  Handler& handler_;
  int slot_;
  server_state state_;  // outlives io_: pending handlers may hold connections
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_;
  asio::posix::stream_descriptor channel_;
  asio::posix::stream_descriptor signals_;
  asio::steady_timer gate_;
};

}  // namespace cluster::detail
