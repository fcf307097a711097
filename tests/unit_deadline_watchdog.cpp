// Unit tests: a connection's deadlines, one per thing it waits for.
#include "support/memory_socket.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <thread>

namespace {

using namespace std::chrono_literals;
using cluster::detail::waiting_for;

// What a connection is to its watchdog: the socket it cancels, and what the
// armed timer keeps alive.
struct owner : std::enable_shared_from_this<owner> {
  owner(asio::io_context& io, const cluster::detail::server_state& state)
      : socket(io, std::make_shared<test_support::memory_wire>()), watchdog(socket, state, *this) {}
  test_support::memory_socket socket;
  cluster::detail::deadline_watchdog<test_support::memory_socket, owner> watchdog;
};

// An event loop and the server state of the connections under test.
struct rig {
  explicit rig(std::chrono::milliseconds idle_timeout = cluster::options{}.idle_timeout) {
    opts.idle_timeout = idle_timeout;
  }
  std::shared_ptr<owner> connection() { return std::make_shared<owner>(io, state); }
  cluster::options opts;
  cluster::detail::server_state state{opts};
  asio::io_context io{1};  // last: pending waits hold connections that refer to the state
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("watchdog: a header block's deadline runs from its first byte; a body's from the last read") {
    rig r;
    auto c = r.connection();
    c->watchdog.wait_for(waiting_for::headers);
    auto began = c->watchdog.request_began();
    std::this_thread::sleep_for(2ms);
    c->watchdog.wait_for(waiting_for::headers);  // more header bytes: not extended
    CHECK(c->watchdog.request_began() == began);
    c->watchdog.wait_for(waiting_for::body);  // the same request's body
    CHECK(c->watchdog.request_began() == began);
    c->watchdog.wait_for(waiting_for::handler);
    c->watchdog.wait_for(waiting_for::body);  // a body after a handler: a new start
    CHECK(c->watchdog.request_began() > began);
    CHECK(c->watchdog.waiting() == waiting_for::body);
    c->watchdog.stop();
    r.io.run();  // the cancelled wait completes and lets go of the owner
  }

  TEST_CASE("watchdog: a passed deadline is reported once; a running handler has none") {
    rig r(20ms);
    auto c = r.connection();
    c->watchdog.wait_for(waiting_for::request);
    r.io.run_for(300ms);
    CHECK(c->watchdog.expired());
    CHECK(c->watchdog.take_expired());
    CHECK_FALSE(c->watchdog.expired());

    auto d = r.connection();
    d->watchdog.wait_for(waiting_for::request);
    d->watchdog.wait_for(waiting_for::handler);
    r.io.restart();
    r.io.run_for(100ms);
    CHECK_FALSE(d->watchdog.expired());
  }

  TEST_CASE("watchdog: draining shortens a wait for a request or a header block, not a handler's") {
    rig r(10s);
    auto idle = r.connection();
    auto busy = r.connection();
    idle->watchdog.wait_for(waiting_for::request);
    busy->watchdog.wait_for(waiting_for::handler);
    r.state.draining = true;
    idle->watchdog.drain();
    busy->watchdog.drain();
    r.io.run_for(600ms);  // the grace is 250 ms
    CHECK(idle->watchdog.expired());
    CHECK_FALSE(busy->watchdog.expired());
    idle->watchdog.stop();
  }
}
