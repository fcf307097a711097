// The control channel between the master and one worker: a
// socketpair(AF_UNIX, SOCK_SEQPACKET), so every send is one message and no
// framing code is needed. Each message starts with a fixed header.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <system_error>

#include <sys/socket.h>
#include <unistd.h>

namespace cluster::detail {

/// What a message on the control channel means.
enum class message_kind : std::uint16_t {
  ready = 1,    ///< worker -> master: accepting connections
  drain = 2,    ///< master -> worker: stop accepting, finish, exit 0
  retire = 3,   ///< master -> worker: take what is queued on the slot, then drain
  recycle = 4,  ///< worker -> master: replace me (max_requests reached)
  reload = 5,   ///< worker -> master: start a rolling reload
  scale = 6,    ///< worker -> master: set the worker count to `type`
};

/// The fixed header of every control message. Never trusted as received: see
/// parse_header().
struct message_header {
  static constexpr std::uint32_t magic_value = 0x434c5354;  // "CLST"
  std::uint32_t magic = magic_value;
  std::uint16_t kind = 0;
  std::uint16_t flags = 0;
  std::uint32_t type = 0;    ///< user type tag
  std::uint32_t length = 0;  ///< payload bytes after the header
  std::uint64_t id = 0;      ///< correlation id for request/reply
};
static_assert(sizeof(message_header) == 24);

/// Creates a connected SEQPACKET pair, close-on-exec. Throws std::system_error.
inline void make_channel(int fds[2]) {
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw std::system_error(errno, std::generic_category(), "cluster: socketpair for a worker channel");
}

/// Sends one message without blocking. Returns 0 or an errno value (EAGAIN
/// when the peer's queue is full, EPIPE when the peer is gone).
inline int send_message(int fd, message_kind kind, std::span<const char> payload = {}, std::uint32_t type = 0,
                        std::uint64_t id = 0) noexcept {
  message_header h;
  h.kind = static_cast<std::uint16_t>(kind);
  h.type = type;
  h.length = static_cast<std::uint32_t>(payload.size());
  h.id = id;
  iovec iov[2] = {{&h, sizeof h}, {const_cast<char*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

/// Checks a received message: a known kind, a consistent length. False means
/// the sender is at fault.
inline bool parse_header(std::span<const char> bytes, message_header& out) noexcept {
  if (bytes.size() < sizeof(message_header)) return false;
  std::memcpy(&out, bytes.data(), sizeof out);
  if (out.magic != message_header::magic_value) return false;
  if (out.length != bytes.size() - sizeof(message_header)) return false;
  return out.kind >= static_cast<std::uint16_t>(message_kind::ready) &&
         out.kind <= static_cast<std::uint16_t>(message_kind::scale);
}

}  // namespace cluster::detail
