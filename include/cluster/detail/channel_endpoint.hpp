// One end of a control channel on an io_context: a bounded outbox flushed
// once per event-loop turn (so a burst leaves in one packet), waiting for
// room when the peer is slow, and a receive loop that walks packets.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/channel.hpp>

#include <memory>
#include <span>

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
  /// was malformed (the peer is at fault). `scratch` must hold max_packet.
  template <class F>
  asio::awaitable<bool> receive(std::span<char> scratch, F on_message) {
    auto keep = shared_from_this();
    for (;;) {
      auto [ec] = co_await socket_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
      if (ec || !socket_.is_open()) co_return true;
      // Bounded per wake-up, so a flooding peer cannot starve the loop.
      for (int packets = 0; packets < 16 && socket_.is_open(); ++packets) {
        ssize_t n = ::recv(socket_.native_handle(), scratch.data(), scratch.size(), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) co_return true;  // closed by the peer
        if (static_cast<std::size_t>(n) > scratch.size()) co_return false;  // larger than any packet we send
        if (!for_each_message({scratch.data(), static_cast<std::size_t>(n)}, on_message)) co_return false;
      }
    }
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

  asio::posix::stream_descriptor socket_;
  asio::steady_timer room_;
  outbox outbox_;
  bool flush_scheduled_ = false;
  bool waiting_write_ = false;
};

}  // namespace cluster::detail
