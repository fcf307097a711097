// Unit tests: the crash policy as plain code, with the jitter pinned. Early
// deaths back off exponentially up to a cap, jittered by ±20%; a healthy run
// ends the backoff; boot failures stop the service only past crash_limit
// within crash_window, and only while no slot serves.
#include <doctest/doctest.h>

#include <cluster/detail/respawn_policy.hpp>

#include <chrono>

using namespace cluster::detail;
using namespace std::chrono_literals;

namespace {

cluster::options policy_options() {
  cluster::options o;
  o.restart_delay = 100ms;
  o.restart_factor = 2.0;
  o.restart_max_delay = 1000ms;
  o.healthy_after = 1000ms;
  o.crash_limit = 3;
  o.crash_window = 10'000ms;
  return o;
}

const auto t0 = std::chrono::steady_clock::now();
auto never_looping = [] { return false; };
auto always_looping = [] { return true; };

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("respawn policy: the first early death respawns at once, then the delay doubles up to the cap") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });  // the middle of the jitter range: no jitter
    CHECK(p.delay(0) == 0ms);
    CHECK(p.delay(1) == 0ms);
    CHECK(p.delay(2) == 100ms);
    CHECK(p.delay(3) == 200ms);
    CHECK(p.delay(4) == 400ms);
    CHECK(p.delay(5) == 800ms);
    CHECK(p.delay(6) == 1000ms);  // restart_max_delay
    CHECK(p.delay(40) == 1000ms);
  }

  TEST_CASE("respawn policy: the jitter stays within ±20% of the delay") {
    cluster::options o = policy_options();
    respawn_policy low(o, [] { return 0.0; });
    respawn_policy high(o, [] { return 1.0; });
    respawn_policy wild(o, [] { return 7.0; });  // a broken source cannot leave the range
    CHECK(low.delay(3) == 160ms);
    CHECK(high.delay(3) == 240ms);
    CHECK(wild.delay(3) == 240ms);
    CHECK(low.delay(9) == 800ms);  // the cap is jittered too
    CHECK(high.delay(9) == 1200ms);
  }

  TEST_CASE("respawn policy: deaths before healthy_after count in a row; a longer run resets the count") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b;
    death_verdict v = p.on_death(b, true, 50ms, t0, never_looping);
    CHECK(v.early);
    CHECK(b.early_failures == 1);
    CHECK(v.delay == 0ms);
    v = p.on_death(b, true, 50ms, t0, never_looping);
    CHECK(b.early_failures == 2);
    CHECK(v.delay == 100ms);
    v = p.on_death(b, true, 5000ms, t0, never_looping);  // it ran healthy
    CHECK_FALSE(v.early);
    CHECK(b.early_failures == 0);
    CHECK(v.delay == 0ms);
    CHECK(b.boot_failures == 0);
    CHECK_FALSE(v.give_up);
  }

  TEST_CASE("respawn policy: a worker up healthy_after ends its slot's run of early deaths") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b{.early_failures = 4, .boot_failures = 0};
    CHECK(p.note_uptime(b, 999ms) == 0);
    CHECK(b.early_failures == 4);
    CHECK(p.note_uptime(b, 1000ms) == 4);
    CHECK(b.early_failures == 0);
    CHECK(p.note_uptime(b, 5000ms) == 0);  // nothing left to reset
  }

  TEST_CASE("respawn policy: a ready worker ends its slot's boot failures, not its early deaths") {
    slot_backoff b{.early_failures = 3, .boot_failures = 3};
    respawn_policy::note_ready(b);
    CHECK(b.boot_failures == 0);
    CHECK(b.early_failures == 3);
  }

  TEST_CASE("respawn policy: boot failures give up at crash_limit within crash_window, only while no slot serves") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b;
    CHECK_FALSE(p.on_death(b, false, 10ms, t0, always_looping).give_up);
    CHECK_FALSE(p.on_death(b, false, 10ms, t0 + 1s, always_looping).give_up);
    CHECK(b.boot_failures == 2);
    CHECK(b.early_failures == 2);
    death_verdict v = p.on_death(b, false, 10ms, t0 + 2s, never_looping);  // another slot serves
    CHECK_FALSE(v.give_up);
    CHECK(v.boot_failures_in_window == 3);
    CHECK_FALSE(v.every_slot_boot_looping);
    CHECK(v.delay == 200ms);
    v = p.on_death(b, false, 10ms, t0 + 3s, always_looping);
    CHECK(v.give_up);
    CHECK(v.delay == 0ms);
    CHECK(v.boot_failures_in_window == 4);
  }

  TEST_CASE("respawn policy: boot failures older than crash_window no longer count") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b;
    p.on_death(b, false, 10ms, t0, always_looping);
    p.on_death(b, false, 10ms, t0 + 1s, always_looping);
    death_verdict v = p.on_death(b, false, 10ms, t0 + 12s, always_looping);
    CHECK(v.boot_failures_in_window == 1);
    CHECK_FALSE(v.give_up);
  }

  TEST_CASE("respawn policy: runtime deaths never count toward the breaker") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b;
    for (int i = 0; i < 10; ++i) {
      death_verdict v = p.on_death(b, true, 10ms, t0, always_looping);
      CHECK_FALSE(v.give_up);
      CHECK(v.boot_failures_in_window == 0);
    }
    CHECK(b.early_failures == 10);
    CHECK(b.boot_failures == 0);
  }

  TEST_CASE("respawn policy: the log says why and how long a slot waits") {
    cluster::options o = policy_options();
    respawn_policy p(o, [] { return 0.5; });
    slot_backoff b{.early_failures = 2, .boot_failures = 0};
    death_verdict early{.early = true, .delay = 100ms};
    CHECK(p.explain(early, b, true, 40ms) ==
          "early death 2 in a row (up 40 ms, healthy_after 1000 ms); respawning in 100 ms");
    death_verdict healthy{.early = false};
    CHECK(p.explain(healthy, b, true, 4000ms) == "its worker ran 4000 ms (healthy); respawning at once");
    slot_backoff boot{.early_failures = 1, .boot_failures = 1};
    death_verdict failed{.early = true, .boot_failures_in_window = 1};
    CHECK(p.explain(failed, boot, false, 5ms) ==
          "worker failed to boot (1 in a row, 1 within crash_window); respawning at once; other slots serve, so the "
          "service stays up");
    death_verdict gave_up{.give_up = true, .boot_failures_in_window = 3};
    CHECK(p.explain_giving_up(gave_up, "worker 0 exited with code 1") ==
          "boot loop: 3 workers failed to boot within 10000 ms and no slot has a ready worker (last: worker 0 exited "
          "with code 1 before it was ready); giving up (crash_limit 3)");
  }
}
