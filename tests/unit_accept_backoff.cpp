// Unit tests: how an accept loop answers accept(2) failures (accept_backoff):
// resource exhaustion pauses accepting, longer each time up to a cap, and is
// logged once per interval; per-connection errors never pause or log.
#include <doctest/doctest.h>

#include <cluster/detail/accept_backoff.hpp>

#include <cerrno>

using cluster::detail::accept_backoff;

namespace {
std::error_code sys(int e) { return {e, asio::error::get_system_category()}; }
}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("accept backoff: out of descriptors pauses, doubling up to the cap, and logs once per interval") {
    accept_backoff b;
    auto t = accept_backoff::clock::now();
    auto first = b.failed(sys(EMFILE), t);
    CHECK(first.pause == accept_backoff::first_pause);
    CHECK_FALSE(first.log.empty());
    CHECK(first.log.find("pausing accepts") != std::string::npos);
    auto second = b.failed(sys(EMFILE), t + std::chrono::milliseconds(20));
    CHECK(second.pause == 2 * accept_backoff::first_pause);
    CHECK(second.log.empty());  // not again within the interval
    std::chrono::milliseconds last{};
    int logs = 0;
    for (int i = 0; i < 1000; ++i) {  // ~17 minutes of failures at the cap
      auto d = b.failed(sys(ENFILE), t + std::chrono::seconds(1) * i);
      last = d.pause;
      logs += !d.log.empty();
    }
    CHECK(last == accept_backoff::max_pause);
    CHECK(logs <= 1000 / 10 + 1);
    CHECK(logs >= 1000 / 10 - 1);
    CHECK(b.failures() == 1002);
    std::string back = b.succeeded(t + std::chrono::seconds(1000));
    CHECK(back.find("1002 failed accepts") != std::string::npos);
    CHECK(b.failures() == 0);
    CHECK(b.succeeded().empty());
    // A new run starts from the first pause again, and logs at once.
    auto again = b.failed(sys(ENOBUFS), t + std::chrono::seconds(1001));
    CHECK(again.pause == accept_backoff::first_pause);
    CHECK_FALSE(again.log.empty());
  }

  TEST_CASE("accept backoff: an error about one connection neither pauses nor logs") {
    accept_backoff b;
    for (int e : {ECONNABORTED, EPROTO, EPERM, EINTR}) {
      auto d = b.failed(sys(e));
      CHECK(d.pause.count() == 0);
      CHECK(d.log.empty());
    }
    CHECK(b.failures() == 0);
    CHECK(b.transient() == 4);
  }
}
