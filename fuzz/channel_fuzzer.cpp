// libFuzzer target: the control channel's receiving side, which the master
// runs on every worker's packets (a worker's bytes are untrusted: it may be
// buggy or compromised). Arbitrary packets go through
//   1. detail::for_each_message() over a buffer of exactly the packet's size
//      (so ASan sees any read past the packet), and
//   2. channel_endpoint::receive() over a real SOCK_SEQPACKET socketpair
//      (recvmmsg batches, packets larger than any the master accepts, an
//      empty packet, the peer closing),
// with the master's dispatch rule: a message of a kind the master never gets
// (drain, retire, reply, broadcast_ack) is refused, as Cluster::on_message
// does. The oracle is an independent decoder: every message delivered must be
// one it finds, with the same header fields and payload bytes lying inside
// the packet, and the walk must fail exactly when a packet is malformed
// (short header, bad magic, unknown kind, a length that disagrees with the
// packet) or refused; no crash, no sanitizer report, the receive loop ends.
//
// Input: byte 0 bit 0 applies the worker's dispatch rule instead of the
// master's; then packets, each as [length: 2 bytes LE][repeat: 1 byte]
// followed by `length` bytes, sent as those bytes repeated 1 + repeat*64
// times (cut at 170 KiB, past detail::max_packet) so that short inputs make
// large packets.
//   fuzz/run channel [seconds]
#include <cluster/detail/channel.hpp>
#include <cluster/detail/channel_endpoint.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

namespace {

using cluster::detail::message_header;
using cluster::detail::message_kind;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what);
  std::abort();
}

constexpr std::size_t max_packets = 12;
constexpr std::size_t largest_packet = 170 * 1024;  // > max_packet, < the socket's send buffer

// The kinds each side accepts: Cluster::on_message and Worker::on_channel_message.
bool master_accepts(std::uint16_t kind) {
  switch (static_cast<message_kind>(kind)) {
    case message_kind::ready:
    case message_kind::recycle:
    case message_kind::reload:
    case message_kind::scale:
    case message_kind::upgrade:
    case message_kind::user:
    case message_kind::request:
    case message_kind::broadcast: return true;
    default: return false;
  }
}
bool worker_accepts(std::uint16_t kind) {
  switch (static_cast<message_kind>(kind)) {
    case message_kind::drain:
    case message_kind::retire:
    case message_kind::lame_duck:
    case message_kind::user:
    case message_kind::reply:
    case message_kind::broadcast_ack: return true;
    default: return false;
  }
}

struct seen {
  std::uint16_t kind, flags;
  std::uint32_t type;
  std::uint64_t id;
  std::string payload;
  bool operator==(const seen&) const = default;
};

// The oracle's decoder, written apart from for_each_message: reads the
// fields one by one at their offsets. Appends the messages a receiver gets
// and returns false when the packet is malformed or a message is refused.
bool reference(std::string_view p, bool (*accepts)(std::uint16_t), std::vector<seen>& out) {
  if (p.empty()) return false;
  auto u16 = [&](std::size_t at) { return std::uint16_t(std::uint8_t(p[at]) | std::uint8_t(p[at + 1]) << 8); };
  auto u32 = [&](std::size_t at) { return std::uint32_t(u16(at)) | std::uint32_t(u16(at + 2)) << 16; };
  auto u64 = [&](std::size_t at) { return std::uint64_t(u32(at)) | std::uint64_t(u32(at + 4)) << 32; };
  std::size_t at = 0;
  while (at != p.size()) {
    if (p.size() - at < 24) return false;
    std::uint32_t magic = u32(at), length = u32(at + 12);
    std::uint16_t kind = u16(at + 4);
    bool known = (kind >= 1 && kind <= 8) || (kind >= 16 && kind <= 20);
    if (magic != 0x434c5354 || !known || length > p.size() - at - 24) return false;
    // The receiver sees a message before it refuses it.
    out.push_back({kind, u16(at + 6), u32(at + 8), u64(at + 16), std::string(p.substr(at + 24, length))});
    if (!accepts(kind)) return false;
    at += 24 + length;
  }
  return true;
}

// What a receiver callback saw, checked against the oracle as it goes.
struct recorder {
  bool (*accepts)(std::uint16_t);
  const char* lo;  // payloads must lie in [lo, hi)
  const char* hi;
  std::vector<seen> got;

  bool operator()(const message_header& h, std::string_view payload) {
    if (payload.size() != h.length) fail("a payload whose size is not its header's length");
    if (!payload.empty() && (payload.data() < lo || payload.data() + payload.size() > hi))
      fail("a payload outside the receive buffer");
    got.push_back({h.kind, h.flags, h.type, h.id, std::string(payload)});
    return accepts(h.kind);
  }
};

std::vector<std::string> packets_of(std::string_view in) {
  std::vector<std::string> packets;
  while (in.size() >= 3 && packets.size() < max_packets) {
    std::size_t length = std::min<std::size_t>(std::uint8_t(in[0]) | std::uint8_t(in[1]) << 8, in.size() - 3);
    std::size_t repeat = 1 + 64 * std::size_t(std::uint8_t(in[2]));
    std::string_view bytes = in.substr(3, length);
    in.remove_prefix(3 + length);
    std::string p;
    for (std::size_t i = 0; i < repeat && p.size() < largest_packet && !bytes.empty(); ++i) p.append(bytes);
    if (p.size() > largest_packet) p.resize(largest_packet);
    packets.push_back(std::move(p));
  }
  return packets;
}

// 1. The decoder alone, over exactly-sized copies.
void decode_directly(const std::vector<std::string>& packets, bool (*accepts)(std::uint16_t)) {
  for (const std::string& p : packets) {
    auto copy = std::make_unique<char[]>(p.size() + (p.empty() ? 1 : 0));
    std::memcpy(copy.get(), p.data(), p.size());
    recorder r{accepts, copy.get(), copy.get() + p.size(), {}};
    bool ok = cluster::detail::for_each_message(std::span<const char>(copy.get(), p.size()), r);
    std::vector<seen> expected;
    bool expected_ok = reference(p, accepts, expected);
    if (ok != expected_ok) fail("for_each_message: accepted or refused a packet unlike the reference decoder");
    if (r.got != expected) fail("for_each_message: delivered other messages than the packet holds");
  }
}

// 2. The endpoint's receive loop over a socketpair, as the master runs it.
void receive_over_socket(const std::vector<std::string>& packets, bool (*accepts)(std::uint16_t)) {
  static asio::io_context io(1);
  static auto scratch = std::make_unique<char[]>(cluster::detail::receive_scratch);
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair failed");
  auto endpoint = std::make_shared<cluster::detail::channel_endpoint>(io, fds[0], 1024);
  recorder r{accepts, scratch.get(), scratch.get() + cluster::detail::receive_scratch, {}};
  int result = -1;  // -1: still receiving
  asio::co_spawn(io, endpoint->receive({scratch.get(), cluster::detail::receive_scratch}, std::ref(r)),
                 [&](std::exception_ptr e, bool ok) {
                   if (e) fail("receive threw");
                   result = ok ? 1 : 0;
                 });
  io.restart();
  std::size_t steps = 0;
  auto pump = [&] {
    while (io.poll_one())
      if (++steps > 100'000) fail("the receive loop does not settle (a busy loop)");
  };

  // What the receiver must report: messages up to the first bad packet; an
  // empty packet from a peer that is still there is a bad packet (only the
  // peer's close reads as empty and ends the loop well).
  std::vector<seen> expected;
  int expected_result = 1;
  for (const std::string& p : packets) {
    if (p.empty()) {
      expected_result = 0;
      break;
    }
    // A packet larger than max_packet is cut by the kernel (MSG_TRUNC) and
    // refused as a whole, before any of its messages.
    if (p.size() > cluster::detail::max_packet || !reference(p, accepts, expected)) {
      expected_result = 0;
      break;
    }
  }

  for (const std::string& p : packets) {
    for (int tries = 0;; ++tries) {
      if (::send(fds[1], p.data(), p.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) break;
      if (errno != EAGAIN || tries == 100) fail("send to the channel failed");
      pump();  // the receiver makes room
      if (result != -1) break;
    }
    pump();
    if (result != -1) break;
  }
  ::close(fds[1]);
  pump();
  if (result == -1) fail("the receive loop did not end after the peer closed");
  endpoint->close();
  pump();
  if (!io.stopped()) fail("work left on the io_context after the channel closed");

  if (result != expected_result) fail("receive: the packets were judged unlike the reference decoder");
  if (r.got != expected) fail("receive: delivered other messages than the packets hold");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  bool (*accepts)(std::uint16_t) = (data[0] & 1) ? worker_accepts : master_accepts;
  std::vector<std::string> packets = packets_of({reinterpret_cast<const char*>(data + 1), size - 1});
  decode_directly(packets, accepts);
  receive_over_socket(packets, accepts);
  return 0;
}
