// Unit tests of the control channel, whose bytes are untrusted (the master
// reads what each worker sends): the frame decoder for_each_message() on
// packets built by hand, then the receive loop over a real SEQPACKET
// socketpair (an empty packet from a live peer is malformed, the peer's close
// ends the loop cleanly).
#include <doctest/doctest.h>

#include <cluster/detail/channel_endpoint.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

namespace {

using cluster::detail::message_header;
using cluster::detail::message_kind;

/// One message as a sender frames it; a test changes the header's fields to
/// make it malformed.
struct frame {
  message_header header;
  std::string payload;

  frame(message_kind kind, std::string body, std::uint32_t type = 0, std::uint64_t id = 0) : payload(std::move(body)) {
    header.kind = static_cast<std::uint16_t>(kind);
    header.type = type;
    header.id = id;
    header.length = static_cast<std::uint32_t>(payload.size());
  }

  std::string bytes() const {
    std::string out(reinterpret_cast<const char*>(&header), sizeof header);
    return out + payload;
  }
};

/// What the decoder handed its callback, in order.
struct delivered {
  std::uint16_t kind;
  std::uint32_t type;
  std::uint64_t id;
  std::string payload;
  bool operator==(const delivered&) const = default;
};

/// Walks `packet` with a callback that records every message and refuses
/// the kinds in `refused`; returns what for_each_message returned.
bool walk(const std::string& packet, std::vector<delivered>& got, std::vector<message_kind> refused = {}) {
  return cluster::detail::for_each_message(
      std::span<const char>(packet.data(), packet.size()), [&](const message_header& h, std::string_view payload) {
        got.push_back({h.kind, h.type, h.id, std::string(payload)});
        return std::ranges::find(refused, static_cast<message_kind>(h.kind)) == refused.end();
      });
}

// Runs the receive loop on one end while `feed` acts on the other; returns
// what the loop reported (true: the peer closed; false: malformed input).
template <class Feed>
std::optional<bool> receive_after(Feed feed) {
  asio::io_context io(1);
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
  auto endpoint = std::make_shared<cluster::detail::channel_endpoint>(io, fds[0], 1024);
  auto scratch = std::make_unique<char[]>(cluster::detail::receive_scratch);
  std::optional<bool> result;
  asio::co_spawn(io,
                 endpoint->receive({scratch.get(), cluster::detail::receive_scratch},
                                   [](const cluster::detail::message_header&, std::string_view) { return true; }),
                 [&](std::exception_ptr, bool ok) { result = ok; });
  feed(fds[1]);
  io.run_for(std::chrono::seconds(5));
  endpoint->close();
  io.restart();
  io.poll();
  if (fds[1] >= 0) ::close(fds[1]);
  return result;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("channel decoder: one well-formed message is delivered with its header fields and payload") {
    std::vector<delivered> got;
    CHECK(walk(frame(message_kind::user, "hello", 7, 42).bytes(), got));
    REQUIRE(got.size() == 1);
    CHECK(got[0] == delivered{16, 7, 42, "hello"});
  }

  TEST_CASE("channel decoder: several messages back to back are delivered in order") {
    std::string packet = frame(message_kind::user, "one", 1).bytes() + frame(message_kind::request, "", 2, 9).bytes() +
                         frame(message_kind::reply, "three", 3, 9).bytes();
    std::vector<delivered> got;
    CHECK(walk(packet, got));
    CHECK(got == std::vector<delivered>{{16, 1, 0, "one"}, {17, 2, 9, ""}, {18, 3, 9, "three"}});
  }

  TEST_CASE("channel decoder: a message with a zero-length payload is well-formed") {
    std::vector<delivered> got;
    CHECK(walk(frame(message_kind::ready, "").bytes(), got));
    REQUIRE(got.size() == 1);
    CHECK(got[0].payload.empty());
  }

  TEST_CASE("channel decoder: an empty packet is malformed (no packet we send is empty)") {
    std::vector<delivered> got;
    CHECK_FALSE(walk("", got));
    CHECK(got.empty());
  }

  TEST_CASE("channel decoder: a header cut short is malformed and nothing is delivered") {
    std::string packet = frame(message_kind::user, "x").bytes().substr(0, sizeof(message_header) - 1);
    std::vector<delivered> got;
    CHECK_FALSE(walk(packet, got));
    CHECK(got.empty());
  }

  TEST_CASE("channel decoder: a header with the wrong magic is malformed and not delivered") {
    frame f(message_kind::user, "x");
    f.header.magic = 0x54534c43;  // "CLST" in the other byte order
    std::vector<delivered> got;
    CHECK_FALSE(walk(f.bytes(), got));
    CHECK(got.empty());
  }

  TEST_CASE("channel decoder: a kind outside the known ones is malformed and not delivered") {
    for (std::uint16_t kind : {0, 9, 15, 21, 0xffff}) {
      CAPTURE(kind);
      frame f(message_kind::user, "x");
      f.header.kind = kind;
      std::vector<delivered> got;
      CHECK_FALSE(walk(f.bytes(), got));
      CHECK(got.empty());
    }
  }

  TEST_CASE("channel decoder: a length past the end of the packet is malformed and not delivered") {
    frame f(message_kind::user, "four");
    f.header.length = 5;
    std::vector<delivered> got;
    CHECK_FALSE(walk(f.bytes(), got));
    CHECK(got.empty());
  }

  TEST_CASE("channel decoder: bytes left over after the last whole message make the packet malformed") {
    std::vector<delivered> got;
    CHECK_FALSE(walk(frame(message_kind::user, "whole").bytes() + "tail", got));
    // The whole message before them was delivered: the walk stops at the fault.
    CHECK(got == std::vector<delivered>{{16, 0, 0, "whole"}});
  }

  TEST_CASE("channel decoder: a message the receiver refuses stops the walk and fails the packet") {
    std::string packet = frame(message_kind::user, "a").bytes() + frame(message_kind::drain, "").bytes() +
                         frame(message_kind::user, "never seen").bytes();
    std::vector<delivered> got;
    CHECK_FALSE(walk(packet, got, {message_kind::drain}));
    CHECK(got == std::vector<delivered>{{16, 0, 0, "a"}, {2, 0, 0, ""}});
  }

  TEST_CASE("channel decoder: a payload of max_payload fills a largest packet exactly and is delivered") {
    std::string packet = frame(message_kind::user, std::string(cluster::detail::max_payload, 'p')).bytes();
    REQUIRE(packet.size() == cluster::detail::max_packet);
    std::vector<delivered> got;
    CHECK(walk(packet, got));
    REQUIRE(got.size() == 1);
    CHECK(got[0].payload.size() == cluster::detail::max_payload);
  }

  TEST_CASE("channel decoder: a length of max_payload + 1 in a largest packet is malformed") {
    // No larger packet is ever received: the receive loop's buffer holds
    // max_packet bytes and a longer packet arrives cut (MSG_TRUNC, refused).
    frame f(message_kind::user, std::string(cluster::detail::max_payload, 'p'));
    f.header.length = static_cast<std::uint32_t>(cluster::detail::max_payload + 1);
    std::vector<delivered> got;
    CHECK_FALSE(walk(f.bytes(), got));
    CHECK(got.empty());
  }

  TEST_CASE("channel decoder: a length near 2^32 does not wrap the bounds check") {
    frame f(message_kind::user, "x");
    f.header.length = 0xffffffffu;
    std::vector<delivered> got;
    CHECK_FALSE(walk(f.bytes() + std::string(64, 'y'), got));
    CHECK(got.empty());
  }

  TEST_CASE("channel: an empty packet from a live peer is malformed, not a close (its channel would go silent)") {
    auto r = receive_after([](int& peer) { REQUIRE(::send(peer, "", 0, 0) == 0); });
    REQUIRE(r);
    CHECK(*r == false);
  }

  TEST_CASE("channel: the peer's close ends the receive loop cleanly") {
    auto r = receive_after([](int& peer) {
      ::close(peer);
      peer = -1;
    });
    REQUIRE(r);
    CHECK(*r == true);
  }
}
