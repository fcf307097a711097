// Unit tests: the control channel's receive loop over a real SEQPACKET
// socketpair, as the master runs it on each worker's channel (whose bytes are
// untrusted): an empty packet from a live peer is malformed, the peer's close
// ends the loop cleanly.
#include <doctest/doctest.h>

#include <cluster/detail/channel_endpoint.hpp>

#include <memory>
#include <optional>

#include <sys/socket.h>
#include <unistd.h>

namespace {

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
