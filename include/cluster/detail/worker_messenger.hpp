// A worker's messaging client: cluster::this_worker() in a worker process.
// It sends on the worker's control channel (one-way sends, requests and
// broadcasts matched to their answers by correlation id, each with a
// deadline), and takes from the worker's receive loop what the master sends
// back (replies, broadcast acks, user messages for an inbox or a callback).
// It owns no socket and no loop: the worker owns both, so that the messenger
// can be driven over a plain socketpair in a unit test.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/messaging.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cluster::detail {

/// Unreceived messages a worker keeps when it has no on_message callback;
/// past it the oldest is dropped (with one log line), so a worker that never
/// calls receive() cannot be grown without bound by the master's sends.
inline constexpr std::size_t inbox_limit = 4096;

/// The worker side of messaging (see cluster::worker_context), over the
/// worker's control channel.
class worker_messenger final : public worker_context {
  using clock = std::chrono::steady_clock;

 public:
  /// Messages go out on `channel`, whose receive loop (run by the owner)
  /// hands what the master sends to dispatch(); timers run on `io`.
  /// `max_message` is options::max_message.
  worker_messenger(asio::io_context& io, channel_endpoint& channel, int slot, std::size_t max_message)
      : io_(io), channel_(channel), slot_(slot), max_message_(max_message), inbox_signal_(io), call_timer_(io) {}

  worker_messenger(const worker_messenger&) = delete;
  worker_messenger& operator=(const worker_messenger&) = delete;

  /// Takes a message of the kinds that answer or feed the messaging client
  /// (user, reply, broadcast_ack); false for any other kind, which the
  /// owner either handles itself or treats as the sender's fault. A reply
  /// to a call that is no longer pending (it timed out) is dropped.
  bool dispatch(const message_header& h, std::string_view payload) {
    switch (static_cast<message_kind>(h.kind)) {
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
      default: return false;
    }
  }

  /// The receive loop has ended: no call can be answered any more, so the
  /// pending ones fail with `closed` now and later ones at once, and a
  /// receive() waiting on an empty inbox wakes up to fail too.
  void channel_lost() {
    channel_lost_ = true;
    fail_pending(message_errc::closed);
  }

  // --- worker_context --------------------------------------------------------

  int slot() const override { return slot_; }
  asio::any_io_executor executor() override { return io_.get_executor(); }

  std::error_code try_send(const message& m) override {
    if (m.data.size() > max_message_) return make_error_code(message_errc::too_large);
    if (!channel_.is_open()) return make_error_code(message_errc::closed);
    if (!channel_.queue(message_kind::user, m.data, m.type)) return make_error_code(message_errc::full);
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
      if (!channel_.is_open()) throw message_error(message_errc::closed, "the master is gone");
      inbox_signal_.expires_at(clock::time_point::max());
      co_await inbox_signal_.async_wait(use_tuple);
    }
  }

 private:
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
  using pending_map = std::unordered_map<std::uint64_t, pending_call>;

  std::string role() const { return "worker " + std::to_string(slot_); }

  void deliver(message m) {
    if (callback_) {
      try {
        callback_(m);
      } catch (const std::exception& e) {
        log_line(role(), std::string("on_message callback threw: ") + e.what());
      }
      return;
    }
    if (inbox_.size() >= inbox_limit) {
      if (!inbox_overflow_logged_)
        log_line(role(), "unreceived messages exceed " + std::to_string(inbox_limit) + "; dropping the oldest");
      inbox_overflow_logged_ = true;
      inbox_.pop_front();
    }
    inbox_.push_back(std::move(m));
    inbox_signal_.cancel();
  }

  // Queues `m`, waiting for room while the channel is backed up.
  asio::awaitable<void> enqueue(message_kind kind, const message& m, std::uint64_t id) {
    if (m.data.size() > max_message_)
      throw message_error(message_errc::too_large, "message of " + std::to_string(m.data.size()) +
                                                       " bytes exceeds max_message (" + std::to_string(max_message_) +
                                                       ")");
    for (int tries = 0;; ++tries) {
      if (!channel_.is_open()) throw message_error(message_errc::closed, "the master is gone");
      if (channel_.queue(kind, m.data, m.type, id)) co_return;
      co_await channel_.wait_for_room();
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
    if (result.error == message_errc::remote_error) throw message_error(message_errc::remote_error, result.error_text);
    if (result.error != message_errc{}) throw message_error(result.error);
    throw message_error(message_errc::timeout,
                        "no answer from the master within " + std::to_string(timeout.count()) + " ms");
  }

  // Ends a pending call whose result is set (an empty result is a timeout)
  // and resumes its caller, here and now.
  void finish_call(pending_map::iterator it) {
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

  asio::io_context& io_;
  channel_endpoint& channel_;
  int slot_;
  std::size_t max_message_;
  asio::steady_timer inbox_signal_;
  std::deque<message> inbox_;
  std::function<void(const message&)> callback_;
  pending_map pending_;
  std::set<std::pair<clock::time_point, std::uint64_t>> deadlines_;  // of pending_
  asio::steady_timer call_timer_;
  clock::time_point call_timer_armed_ = clock::time_point::max();
  std::uint64_t next_id_ = 0;
  bool channel_lost_ = false;  // the receive loop ended: calls would never be answered
  bool inbox_overflow_logged_ = false;
};

}  // namespace cluster::detail
