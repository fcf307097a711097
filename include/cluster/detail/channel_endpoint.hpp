// One end of a control channel on an io_context: a bounded outbox flushed
// once per event-loop turn (so a burst leaves in one packet), waiting for
// room when the peer is slow, and a receive loop that walks packets.
//
// System calls are what a message costs (a round trip is a handful of them
// on each side), so the loop is frugal: one recvmmsg() takes the packet that
// woke it and learns in the same call whether another one waits, and what the
// messages of a batch queue on this channel (a request's reply, the next
// request of a caller resumed by its answer) leaves in one send() right after
// the batch, instead of in a flush posted to a later turn of the loop.
#pragma once

#include <poll.h>

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>

#include <memory>
#include <span>

#include <sys/socket.h>

namespace cluster::detail {

class channel_endpoint : public std::enable_shared_from_this<channel_endpoint> {
 public:
  /// Adopts `fd`; at most `limit` bytes wait in the outbox.
  channel_endpoint(asio::io_context& io, int fd, std::size_t limit)
      : socket_(io, fd), room_(io), outbox_(limit) {}

  channel_endpoint(const channel_endpoint&) = delete;
  channel_endpoint& operator=(const channel_endpoint&) = delete;

  int fd() noexcept { return socket_.native_handle(); }
  bool is_open() const noexcept { return socket_.is_open(); }

  /// Queues a message, sent at the end of this event-loop turn with whatever
  /// else is queued by then. False when closed or the outbox is full.
  bool queue(message_kind kind, std::string_view payload = {}, std::uint32_t type = 0, std::uint64_t id = 0,
             std::uint16_t flags = 0) {
    if (!socket_.is_open() || !outbox_.append(kind, payload, type, id, flags)) return false;
    // Queued while this channel's receive loop handles a batch: it sends
    // right after the batch, still this turn.
    if (receiving_) return true;
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      asio::post(socket_.get_executor(), [self = shared_from_this()] {
        self->flush_scheduled_ = false;
        self->flush();
      });
    }
    return true;
  }

  /// Queues a message and sends everything queued now.
  bool send_now(message_kind kind, std::string_view payload = {}, std::uint32_t type = 0, std::uint64_t id = 0) {
    if (!socket_.is_open() || !outbox_.append(kind, payload, type, id)) return false;
    return flush();
  }

  /// Waits until the outbox has room for `bytes` more, or the channel closed.
  asio::awaitable<void> wait_for_room() {
    while (socket_.is_open() && outbox_.pending() != 0) {
      room_.expires_at(asio::steady_timer::time_point::max());
      co_await room_.async_wait(use_tuple);
    }
  }

  /// Reads packets until the channel closes, calling
  /// on_message(header, payload) per message. Returns false when a packet
  /// was malformed (the peer is at fault). `scratch` must hold
  /// receive_scratch bytes; it is only used between suspensions, so one
  /// buffer can serve every channel of an io_context.
  template <class F>
  asio::awaitable<bool> receive(std::span<char> scratch, F on_message) {
    auto keep = shared_from_this();
    for (;;) {
      auto [ec] = co_await socket_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec || !socket_.is_open()) co_return true;
      batch_guard guard(*this);
      // Bounded per wake-up, so a flooding peer cannot starve the loop.
      for (int packets = 0; packets < 16 && socket_.is_open();) {
        // Up to two packets per call: fewer than two means none is left, and
        // the edge-triggered wait may begin without another recv.
        mmsghdr msgs[receive_batch];
        iovec iov[receive_batch];
        for (std::size_t i = 0; i < receive_batch; ++i) {
          iov[i] = {scratch.data() + i * max_packet, max_packet};
          msgs[i] = {};
          msgs[i].msg_hdr.msg_iov = &iov[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int got = ::recvmmsg(socket_.native_handle(), msgs, receive_batch, MSG_DONTWAIT, nullptr);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        if (got <= 0) co_return true;  // the peer is gone
        for (int i = 0; i < got; ++i) {
          // recvmmsg reports the peer's close and an empty packet alike;
          // only a close hangs the socket up. No packet we send is empty,
          // so one from a live peer is malformed (its channel would
          // otherwise go silent while the peer runs on).
          if (msgs[i].msg_len == 0) co_return peer_hung_up();
          // Larger than any packet we send: cut to fit, so the peer is at fault.
          if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) co_return false;
          if (!for_each_message({static_cast<const char*>(iov[i].iov_base), msgs[i].msg_len}, on_message))
            co_return false;
          if (!socket_.is_open()) break;
        }
        packets += got;
        if (got < static_cast<int>(receive_batch)) break;
      }
    }
  }

  bool peer_hung_up() noexcept {
    pollfd p{socket_.native_handle(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
  }

  void close() {
    asio::error_code ignored;
    socket_.close(ignored);
    room_.cancel();
  }

 private:
  bool flush() {
    if (!socket_.is_open()) return false;
    int err = outbox_.flush(socket_.native_handle());
    if (err == 0) {
      room_.cancel();
      return true;
    }
    if (err != EAGAIN) {
      close();
      return false;
    }
    if (!waiting_write_) {
      // The peer's queue is full: send the rest when it has room.
      waiting_write_ = true;
      socket_.async_wait(asio::posix::stream_descriptor::wait_write,
                         [self = shared_from_this()](const asio::error_code& ec) {
                           self->waiting_write_ = false;
                           if (!ec) self->flush();
                         });
    }
    return true;
  }

  // While a batch of received messages is handled: what they queue on this
  // channel leaves in one send() when the batch is done (also when a
  // callback throws, or nothing would ever flush this channel again).
  struct batch_guard {
    explicit batch_guard(channel_endpoint& e) : e(e) { e.receiving_ = true; }
    ~batch_guard() {
      e.receiving_ = false;
      if (!e.outbox_.empty() && !e.waiting_write_) e.flush();
    }
    batch_guard(const batch_guard&) = delete;
    batch_guard& operator=(const batch_guard&) = delete;
    channel_endpoint& e;
  };

  asio::posix::stream_descriptor socket_;
  asio::steady_timer room_;
  outbox outbox_;
  bool flush_scheduled_ = false;
  bool waiting_write_ = false;
  bool receiving_ = false;
};

}  // namespace cluster::detail
