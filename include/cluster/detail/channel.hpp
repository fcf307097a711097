// The control channel between the master and one worker: a
// socketpair(AF_UNIX, SOCK_SEQPACKET), so packet boundaries are kept by the
// kernel. A packet carries one or more messages back to back, each behind a
// fixed header: a burst of small messages leaves in one system call.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include <cluster/detail/limits.hpp>

namespace cluster::detail {

/// What a message on the control channel means.
enum class message_kind : std::uint16_t {
  ready = 1,           ///< worker -> master: accepting connections
  drain = 2,           ///< master -> worker: stop accepting, finish, exit 0
  retire = 3,          ///< master -> worker: take what is queued on the slot, then drain
  recycle = 4,         ///< worker -> master: replace me (max_requests reached)
  reload = 5,          ///< worker -> master: start a rolling reload
  scale = 6,           ///< worker -> master: set the worker count to `type`
  upgrade = 7,         ///< worker -> master: start a binary upgrade
  lame_duck = 8,       ///< master -> worker: the service is leaving its balancer; close each connection after its response
  user = 16,           ///< either way: an application message
  request = 17,        ///< worker -> master: an application request, answered by `reply` with the same id
  reply = 18,          ///< master -> worker: the answer to `request` `id`
  broadcast = 19,      ///< worker -> master: relay to every worker, then `broadcast_ack` with the same id
  broadcast_ack = 20,  ///< master -> worker: the broadcast `id` was relayed
};

/// message_header::flags bits.
enum message_flags : std::uint16_t {
  flag_error = 1,      ///< a reply carrying an error text instead of an answer
  flag_broadcast = 2,  ///< a user message that is a relayed broadcast
};

/// The fixed header in front of every message. Never trusted as received:
/// see for_each_message().
struct message_header {
  static constexpr std::uint32_t magic_value = 0x434c5354;  // "CLST"
  std::uint32_t magic = magic_value;
  std::uint16_t kind = 0;
  std::uint16_t flags = 0;
  std::uint32_t type = 0;    ///< application type tag
  std::uint32_t length = 0;  ///< payload bytes after the header
  std::uint64_t id = 0;      ///< correlation id of request/reply and broadcast/ack
};
static_assert(sizeof(message_header) == message_header_size);

/// Packets a receiver takes per recvmmsg(): two, so that one call both takes
/// the packet that woke it and tells whether another one waits.
inline constexpr std::size_t receive_batch = 2;

/// Bytes of the receive buffer: room for receive_batch packets.
inline constexpr std::size_t receive_scratch = receive_batch * max_packet;

/// Creates a connected SEQPACKET pair, close-on-exec; returns 0, or the errno
/// (EMFILE when the master is out of descriptors: no exception, the master
/// retries later).
inline int make_channel(int fds[2]) noexcept {
  return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : errno;
}

/// Walks the messages of a received packet, calling f(header, payload),
/// which returns false for a message its receiver must not get. Returns
/// false, having stopped, at the first malformed header, refused message or
/// when bytes are left over: the sender is at fault.
template <class F>
bool for_each_message(std::span<const char> packet, F&& f) {
  std::size_t pos = 0;
  if (packet.empty()) return false;
  while (pos < packet.size()) {
    if (packet.size() - pos < sizeof(message_header)) return false;
    message_header h;
    std::memcpy(&h, packet.data() + pos, sizeof h);
    pos += sizeof h;
    bool known = (h.kind >= static_cast<std::uint16_t>(message_kind::ready) &&
                  h.kind <= static_cast<std::uint16_t>(message_kind::lame_duck)) ||
                 (h.kind >= static_cast<std::uint16_t>(message_kind::user) &&
                  h.kind <= static_cast<std::uint16_t>(message_kind::broadcast_ack));
    if (h.magic != message_header::magic_value || !known || h.length > packet.size() - pos) return false;
    if (!f(h, std::string_view(packet.data() + pos, h.length))) return false;
    pos += h.length;
  }
  return true;
}

/// Messages waiting to be sent on one channel, with a bound on the bytes
/// kept: past it, append() refuses (the caller reports backpressure).
class outbox {
 public:
  explicit outbox(std::size_t limit) : limit_(limit) {}

  /// Queues a message; false when it would exceed the bound.
  bool append(message_kind kind, std::string_view payload = {}, std::uint32_t type = 0, std::uint64_t id = 0,
              std::uint16_t flags = 0) {
    if (pending() + sizeof(message_header) + payload.size() > limit_) return false;
    message_header h;
    h.kind = static_cast<std::uint16_t>(kind);
    h.flags = flags;
    h.type = type;
    h.length = static_cast<std::uint32_t>(payload.size());
    h.id = id;
    const char* hp = reinterpret_cast<const char*>(&h);
    buf_.insert(buf_.end(), hp, hp + sizeof h);
    buf_.insert(buf_.end(), payload.begin(), payload.end());
    return true;
  }

  /// Bytes queued and not yet sent.
  std::size_t pending() const noexcept { return buf_.size() - sent_; }
  bool empty() const noexcept { return pending() == 0; }

  /// Sends queued messages in packets of whole messages. Returns 0 when all
  /// went, EAGAIN when the peer's queue is full (the rest stays queued), or
  /// another errno when the peer is gone.
  int flush(int fd) {
    while (sent_ < buf_.size()) {
      std::size_t end = packet_end();
      ssize_t n = ::send(fd, buf_.data() + sent_, end - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EWOULDBLOCK ? EAGAIN : errno;
      }
      sent_ = end;
    }
    buf_.clear();
    sent_ = 0;
    if (buf_.capacity() > 4 * max_packet) buf_.shrink_to_fit();
    return 0;
  }

 private:
  // The end of the longest run of whole messages from sent_ that fits a packet.
  std::size_t packet_end() const noexcept {
    std::size_t pos = sent_;
    while (pos < buf_.size()) {
      message_header h;
      std::memcpy(&h, buf_.data() + pos, sizeof h);
      std::size_t next = pos + sizeof h + h.length;
      if (next - sent_ > max_packet && pos != sent_) break;
      pos = next;
    }
    return pos;
  }

  std::size_t limit_;
  std::vector<char> buf_;
  std::size_t sent_ = 0;
};

}  // namespace cluster::detail
