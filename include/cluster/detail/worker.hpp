// A worker process: its own io_context, its slot's listening socket adopted
// into an acceptor, one coroutine per connection, a heartbeat in shared
// memory, and the control channel to the master.
#pragma once

#include <cluster/detail/accept_backoff.hpp>
#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>
#include <cluster/detail/connection.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <cluster/messaging.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <malloc.h>
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

/// Bytes of messages a process keeps queued for one channel before senders
/// get backpressure (try_send fails with `full`, send waits).
inline constexpr std::size_t channel_queue_bytes = 1 << 20;

template <class Handler>
class Worker final : private control, private worker_context, private connection_events {
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
        inbox_signal_(io_),
        call_timer_(io_),
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
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    auto c = std::make_shared<connection>(std::move(socket), state_);
    asio::co_spawn(io_, connection::serve(std::move(c), handler_), asio::detached);
    peak_open_ = std::max(peak_open_, state_.connections.size());
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
    auto scratch = std::make_unique_for_overwrite<char[]>(receive_scratch);
    bool well_formed = co_await channel_->receive({scratch.get(), receive_scratch},
                                                  [this](const message_header& h, std::string_view payload) {
                                                    return on_channel_message(h, payload);
                                                  });
    if (!well_formed) log_line(role(), "malformed control message from the master");
    channel_lost_ = true;
    fail_pending(message_errc::closed);
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
      case message_kind::user: deliver(message{h.type, std::string(payload)}); return true;
      case message_kind::reply:
      case message_kind::broadcast_ack: {
        auto it = pending_.find(h.id);
        if (it == pending_.end()) return true;  // its request timed out already
        call_result& r = *it->second.result;
        if (h.flags & flag_error) {
          r.error = message_errc::remote_error;
          r.error_text = std::string(payload);
        } else {
          r.answer = message{h.type, std::string(payload)};
        }
        finish_call(it);
        return true;
      }
      default: return false;  // not a message a worker gets
    }
  }

  // --- worker_context --------------------------------------------------------

  // What a call (request or broadcast) ends with; lives in the caller's
  // coroutine frame.
  struct call_result {
    std::optional<message> answer;
    message_errc error{};
    std::string error_text;
  };

  // A suspended caller's completion handler, type-erased (it is move-only).
  struct resumer {
    virtual ~resumer() = default;
    virtual void resume() = 0;
  };
  template <class H>
  struct resumer_for final : resumer {
    explicit resumer_for(H&& h) : handler(std::move(h)) {}
    void resume() override { handler(); }
    H handler;
  };

  // A call waiting for its answer. Owned here, not by the caller's frame:
  // destroying the handler unwinds a caller that never got its answer (the
  // worker is going away).
  struct pending_call {
    call_result* result = nullptr;
    clock::time_point deadline{};
    std::unique_ptr<resumer> caller;
  };

  int slot() const override { return slot_; }
  asio::any_io_executor executor() override { return io_.get_executor(); }

  std::error_code try_send(const message& m) override {
    if (m.data.size() > opts_.max_message) return make_error_code(message_errc::too_large);
    if (!channel_->is_open()) return make_error_code(message_errc::closed);
    if (!channel_->queue(message_kind::user, m.data, m.type)) return make_error_code(message_errc::full);
    return {};
  }

  asio::awaitable<void> send(message m) override { co_await enqueue(message_kind::user, m, 0); }

  asio::awaitable<message> request(message m, std::chrono::milliseconds timeout) override {
    co_return co_await call(message_kind::request, std::move(m), timeout);
  }

  asio::awaitable<void> broadcast(message m, std::chrono::milliseconds timeout) override {
    co_await call(message_kind::broadcast, std::move(m), timeout);
  }

  void on_message(std::function<void(const message&)> f) override {
    callback_ = std::move(f);
    while (callback_ && !inbox_.empty()) {
      message m = std::move(inbox_.front());
      inbox_.pop_front();
      callback_(m);
    }
  }

  asio::awaitable<message> receive() override {
    for (;;) {
      if (!inbox_.empty()) {
        message m = std::move(inbox_.front());
        inbox_.pop_front();
        co_return m;
      }
      if (!channel_->is_open()) throw message_error(message_errc::closed, "the master is gone");
      inbox_signal_.expires_at(clock::time_point::max());
      co_await inbox_signal_.async_wait(use_tuple);
    }
  }

  void deliver(message m) {
    if (callback_) {
      try {
        callback_(m);
      } catch (const std::exception& e) {
        log_line(role(), std::string("on_message callback threw: ") + e.what());
      }
      return;
    }
    if (inbox_.size() >= 4096) {
      if (!inbox_overflow_logged_) log_line(role(), "unreceived messages exceed 4096; dropping the oldest");
      inbox_overflow_logged_ = true;
      inbox_.pop_front();
    }
    inbox_.push_back(std::move(m));
    inbox_signal_.cancel();
  }

  // Queues `m`, waiting for room while the channel is backed up.
  asio::awaitable<void> enqueue(message_kind kind, const message& m, std::uint64_t id) {
    if (m.data.size() > opts_.max_message)
      throw message_error(message_errc::too_large, "message of " + std::to_string(m.data.size()) +
                                                       " bytes exceeds max_message (" +
                                                       std::to_string(opts_.max_message) + ")");
    for (int tries = 0;; ++tries) {
      if (!channel_->is_open()) throw message_error(message_errc::closed, "the master is gone");
      if (channel_->queue(kind, m.data, m.type, id)) co_return;
      co_await channel_->wait_for_room();
    }
  }

  // Sends a request or broadcast and waits for its answer, the timeout or
  // the end of the channel. The answer resumes the caller directly from the
  // receive loop (no timer cancelled, no handler posted), so whatever the
  // caller queues next leaves with the receive batch: a sequential
  // request/answer loop costs one send and one receive per round trip.
  asio::awaitable<message> call(message_kind kind, message m, std::chrono::milliseconds timeout) {
    if (channel_lost_) throw message_error(message_errc::closed, "the master is gone");
    std::uint64_t id = ++next_id_;
    // The timeout runs from here, a wait for room in the outbox included.
    auto now = clock::now();
    auto deadline = timeout.count() <= 0                       ? now
                    : timeout < clock::time_point::max() - now ? now + timeout
                                                               : clock::time_point::max();
    co_await enqueue(kind, m, id);
    call_result result;
    auto [it, inserted] = pending_.try_emplace(id);
    it->second.result = &result;
    it->second.deadline = deadline;
    deadlines_.emplace(deadline, id);
    arm_call_timer(deadline);
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [this, id](auto handler) {
          // A cancelled caller (e.g. one side of an awaitable `||`) ends as
          // a timeout would, from a handler of its own.
          if (auto slot = asio::get_associated_cancellation_slot(handler); slot.is_connected())
            slot.assign([this, id](asio::cancellation_type) {
              asio::post(io_, [this, id] {
                if (auto it = pending_.find(id); it != pending_.end()) finish_call(it);
              });
            });
          pending_.at(id).caller = std::make_unique<resumer_for<decltype(handler)>>(std::move(handler));
        },
        asio::use_awaitable);
    if (result.answer) co_return std::move(*result.answer);
    if (result.error == message_errc::remote_error)
      throw message_error(message_errc::remote_error, result.error_text);
    if (result.error != message_errc{}) throw message_error(result.error);
    throw message_error(message_errc::timeout, "no answer from the master within " +
                                                   std::to_string(timeout.count()) + " ms");
  }

  // Ends a pending call whose result is set (an empty result is a timeout)
  // and resumes its caller, here and now.
  void finish_call(typename std::unordered_map<std::uint64_t, pending_call>::iterator it) {
    auto node = pending_.extract(it);
    deadlines_.erase({node.mapped().deadline, node.key()});
    if (auto caller = std::move(node.mapped().caller)) {
      try {
        caller->resume();
      } catch (const std::exception& e) {
        log_line(role(), std::string("a messaging caller threw: ") + e.what());
      }
    }
  }

  // One timer for every pending call, armed for the earliest deadline; moved
  // only when a call's deadline comes before it, so a steady stream of calls
  // with one timeout never touches it.
  void arm_call_timer(clock::time_point deadline) {
    if (deadline >= call_timer_armed_) return;
    call_timer_armed_ = deadline;
    call_timer_.expires_at(deadline);
    call_timer_.async_wait([this](const asio::error_code& ec) {
      if (ec) return;  // moved earlier, or the worker is stopping
      call_timer_armed_ = clock::time_point::max();
      expire_calls();
    });
  }

  // The calls due now time out; calls their callers make meanwhile wait for
  // a later turn (a caller retrying with no timeout cannot spin here).
  void expire_calls() {
    auto now = clock::now();
    std::vector<std::uint64_t> due;
    for (const auto& [deadline, id] : deadlines_) {
      if (deadline > now) break;
      due.push_back(id);
    }
    for (std::uint64_t id : due)
      if (auto it = pending_.find(id); it != pending_.end()) finish_call(it);  // no answer: a timeout
    if (!deadlines_.empty()) arm_call_timer(deadlines_.begin()->first);
  }

  void fail_pending(message_errc why) {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, call] : pending_) ids.push_back(id);
    for (std::uint64_t id : ids) {
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      it->second.result->error = why;
      finish_call(it);
    }
    inbox_signal_.cancel();
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
  asio::steady_timer inbox_signal_;
  std::deque<message> inbox_;
  std::function<void(const message&)> callback_;
  std::unordered_map<std::uint64_t, pending_call> pending_;
  std::set<std::pair<clock::time_point, std::uint64_t>> deadlines_;  // of pending_
  asio::steady_timer call_timer_;
  clock::time_point call_timer_armed_ = clock::time_point::max();
  std::uint64_t next_id_ = 0;
  bool channel_lost_ = false;  // the receive loop ended: calls would never be answered
  bool inbox_overflow_logged_ = false;
  // Connections open at once that make a later drop worth a malloc_trim.
  static constexpr std::size_t trim_after_connections = 256;
  std::size_t peak_open_ = 0;  // since the last trim
  asio::steady_timer gate_;  // the accept loop waits on it: at the connection limit, or pausing
  accept_backoff accept_backoff_;
  asio::steady_timer heartbeat_;
  // Last: this_worker() and reload() stop answering before anything above is destroyed.
  role_scope role_{{.lifecycle = this, .worker = this}};
};

}  // namespace cluster::detail
