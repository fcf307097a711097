// The master's end of the workers' control channels: reads each channel,
// dispatches what a worker says (ready, recycle, reload, scale, user
// messages), answers requests through options::on_request, relays
// broadcasts, and sends to a worker. What a worker sends is untrusted: a
// malformed packet is reported as that worker's fault.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/limits.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/messaging.hpp>
#include <cluster/options.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

namespace cluster::detail {

/// What the master does about a worker's lifecycle messages.
class worker_listener {
 public:
  /// The worker accepts connections.
  virtual void worker_ready(pid_t pid) = 0;
  /// The worker answered max_requests and asks to be replaced.
  virtual void worker_wants_recycle(pid_t pid) = 0;
  /// The worker sent a packet that is no valid message: it must go.
  virtual void worker_malformed(pid_t pid) = 0;

 protected:
  ~worker_listener() = default;
};

/// The control channels of the live workers.
class master_messenger {
 public:
  /// `lifecycle` takes the reload and scale requests workers forward.
  master_messenger(asio::io_context& io, const options& opts, worker_listener& listener, control& lifecycle)
      : io_(io), opts_(opts), listener_(listener), lifecycle_(lifecycle) {}

  master_messenger(const master_messenger&) = delete;
  master_messenger& operator=(const master_messenger&) = delete;

  /// Adopts the master's end `fd` of a new worker's channel and reads it.
  void attach(pid_t pid, int slot, int fd) {
    auto channel = std::make_shared<channel_endpoint>(io_, fd, channel_queue_bytes);
    channels_.push_back({pid, slot, channel});
    asio::co_spawn(io_, read(pid, std::move(channel)), asio::detached);
  }

  /// The worker exited: its channel closes and its messages are no longer read.
  void detach(pid_t pid) {
    auto it = std::ranges::find(channels_, pid, &entry::pid);
    if (it == channels_.end()) return;
    it->channel->close();
    channels_.erase(it);
  }

  /// Sends a lifecycle command (drain, retire) now; false when the worker
  /// has no open channel (the caller falls back to a signal).
  bool command(pid_t pid, message_kind kind) {
    entry* e = find(pid);
    return e && e->channel->send_now(kind);
  }

  /// Sends a user message to one worker; no_worker, too_large or full.
  std::error_code send(pid_t pid, const message& m) {
    if (m.data.size() > opts_.max_message) return make_error_code(message_errc::too_large);
    entry* e = find(pid);
    if (!e || !e->channel->is_open()) return make_error_code(message_errc::no_worker);
    if (!e->channel->queue(message_kind::user, m.data, m.type)) return make_error_code(message_errc::full);
    return {};
  }

  /// Sends a user message to every live worker; returns how many it was queued for.
  std::size_t broadcast(const message& m) {
    if (m.data.size() > opts_.max_message) return 0;
    std::size_t queued = 0;
    for (entry& e : channels_)
      if (e.channel->queue(message_kind::user, m.data, m.type, 0, flag_broadcast)) ++queued;
    return queued;
  }

  /// In a freshly forked worker: closes the master's ends of every channel.
  void close_in_child() noexcept {
    for (entry& e : channels_) ::close(e.channel->fd());
  }

 private:
  struct entry {
    pid_t pid;
    int slot;
    std::shared_ptr<channel_endpoint> channel;
  };

  entry* find(pid_t pid) {
    auto it = std::ranges::find(channels_, pid, &entry::pid);
    return it == channels_.end() ? nullptr : &*it;
  }

  asio::awaitable<void> read(pid_t pid, std::shared_ptr<channel_endpoint> channel) {
    bool well_formed = co_await channel->receive({scratch_.get(), receive_scratch},
                                                 [this, pid](const message_header& h, std::string_view p) {
      entry* e = find(pid);
      return !e || dispatch(*e, h, p);  // a detached worker's last messages are dropped
    });
    // A closed channel means the worker is exiting: SIGCHLD tells the rest.
    if (!well_formed && find(pid)) listener_.worker_malformed(pid);
  }

  bool dispatch(entry& from, const message_header& h, std::string_view payload) {
    switch (static_cast<message_kind>(h.kind)) {
      case message_kind::ready: listener_.worker_ready(from.pid); return true;
      case message_kind::recycle: listener_.worker_wants_recycle(from.pid); return true;
      case message_kind::reload: asio::post(io_, [this] { lifecycle_.reload(); }); return true;
      case message_kind::scale:
        asio::post(io_, [this, n = h.type] { lifecycle_.scale(static_cast<int>(n)); });
        return true;
      case message_kind::upgrade: asio::post(io_, [this] { lifecycle_.upgrade(); }); return true;
      case message_kind::user:
        if (opts_.on_message) {
          try {
            opts_.on_message(from.slot, message{h.type, std::string(payload)});
          } catch (const std::exception& e) {
            log_line("master", std::string("on_message callback threw: ") + e.what());
          }
        }
        return true;
      case message_kind::request:
        if (opts_.on_request.answers_at_once())
          answer_now(from, h, payload);  // no coroutine: the reply leaves with this receive batch
        else
          asio::co_spawn(io_, answer(from.slot, from.channel, h.id, message{h.type, std::string(payload)}),
                         asio::detached);
        return true;
      case message_kind::broadcast: relay(from, h, payload); return true;
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
  void answer_now(entry& from, const message_header& h, std::string_view payload) {
    std::shared_ptr<channel_endpoint> channel = from.channel;  // `from` is not used after the callback
    message reply;
    std::uint16_t flags = 0;
    try {
      reply = opts_.on_request.answer_now(from.slot, message{h.type, std::string(payload)});
      check_reply(reply, flags);
    } catch (const std::exception& e) {
      reply = message{0, std::string("on_request threw: ") + e.what()};
      flags = flag_error;
    }
    channel->queue(message_kind::reply, reply.data, reply.type, h.id, flags);
  }

  static void check_reply(message& reply, std::uint16_t& flags) {
    if (reply.data.size() > max_payload) {
      reply = message{0, "the on_request answer exceeds the largest message"};
      flags = flag_error;
    }
  }

  // A broadcast goes to every live worker, the sender included, and then
  // the sender gets its acknowledgement (after its own copy, on the same channel).
  void relay(entry& from, const message_header& h, std::string_view payload) {
    std::shared_ptr<channel_endpoint> sender = from.channel;
    std::size_t refused = 0;
    for (entry& e : channels_)
      if (!e.channel->queue(message_kind::user, payload, h.type, 0, flag_broadcast)) ++refused;
    if (refused != 0) log_line("master", "broadcast not queued for " + std::to_string(refused) + " backed-up workers");
    sender->queue(message_kind::broadcast_ack, {}, 0, h.id);
  }

  asio::io_context& io_;
  const options& opts_;
  worker_listener& listener_;
  control& lifecycle_;
  std::vector<entry> channels_;
  // Receive buffer shared by all channels; pages are touched only as packets need them.
  std::unique_ptr<char[]> scratch_ = std::make_unique_for_overwrite<char[]>(receive_scratch);
};

}  // namespace cluster::detail
