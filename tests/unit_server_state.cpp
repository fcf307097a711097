// Unit tests: what a server's connections share: the registry of open
// connections and the events its owner hears of.
#include <cluster/detail/server_state.hpp>

#include <doctest/doctest.h>

#include <vector>

namespace {

struct fake_connection final : cluster::detail::open_connection {
  explicit fake_connection(int fd) : fd(fd) {}
  void drain() override { ++drains; }
  int native_handle() noexcept override { return fd; }
  bool check_idle(std::chrono::steady_clock::time_point) noexcept override {
    return false;
  }
  int fd;
  int drains = 0;
};

struct recorder final : cluster::detail::connection_events {
  void on_connection_closed() override { ++closed; }
  void on_request_limit() override { ++limits; }
  int closed = 0;
  int limits = 0;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("server state: the registry holds the open connections, and each close is reported once") {
    cluster::options o;
    recorder events;
    cluster::detail::server_state state(o, &events);
    fake_connection a(3), b(4), c(5);
    state.opened(a);
    state.opened(b);
    state.opened(c);
    CHECK(state.connections.size() == 3);
    std::vector<int> seen;
    state.connections.for_each([&](cluster::detail::open_connection& x) { seen.push_back(x.native_handle()); });
    CHECK(seen == std::vector<int>{5, 4, 3});  // newest first
    state.closed(b);
    CHECK(events.closed == 1);
    CHECK(state.connections.size() == 2);
    // for_each survives the removal of the connection it is at.
    state.connections.for_each([&](cluster::detail::open_connection& x) {
      x.drain();
      state.closed(x);
    });
    CHECK(a.drains == 1);
    CHECK(b.drains == 0);
    CHECK(c.drains == 1);
    CHECK(state.connections.size() == 0);
    CHECK(events.closed == 3);
  }

  TEST_CASE("server state: without a cell nothing is counted and no limit is reported") {
    cluster::options o;
    recorder events;
    cluster::detail::server_state state(o, &events);
    state.request_limit = 1;
    state.count_request(200, std::chrono::steady_clock::now());
    state.count_bytes(&cluster::detail::worker_cell::bytes_in, 10);
    CHECK(events.limits == 0);
    cluster::detail::server_state quiet(o);  // no events at all: an admin listener
    fake_connection a(3);
    quiet.opened(a);
    quiet.closed(a);
    CHECK(quiet.connections.size() == 0);
  }
}

TEST_SUITE("unit") {
  TEST_CASE("server state: the cell counts requests, bytes and connections, and the request limit is reported once") {
    cluster::options o;
    recorder events;
    cluster::detail::server_state state(o, &events);
    cluster::detail::worker_cell cell;
    state.cell = &cell;
    state.request_limit = 2;
    fake_connection a(3);
    state.opened(a);
    CHECK(cell.connections.load() == 1);
    CHECK(cell.open_connections.load() == 1);
    for (int i = 0; i < 3; ++i) state.count_request(200, std::chrono::steady_clock::now());
    CHECK(cell.requests.load() == 3);
    CHECK(events.limits == 1);
    state.count_bytes(&cluster::detail::worker_cell::bytes_out, 42);
    CHECK(cell.bytes_out.load() == 42);
    state.closed(a);
    CHECK(cell.open_connections.load() == 0);
    CHECK(cell.connections.load() == 1);
  }
}
