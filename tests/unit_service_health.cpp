// Unit tests: what /livez and /readyz answer, judged from the slot table and
// the master's phase without a running cluster.
#include <doctest/doctest.h>

#include <cluster/detail/service_health.hpp>
#include <cluster/detail/slot_table.hpp>

#include <chrono>

using namespace cluster::detail;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;
const clock_type::time_point t0 = clock_type::now();

// Two slots, each with a ready worker.
slot_table two_ready_slots() {
  slot_table t;
  for (int i = 0; i < 2; ++i) {
    t.add_slot(100 + i);
    t.add_worker(i, 1000 + i, static_cast<std::size_t>(i), false, t0);
    REQUIRE(t.ready(1000 + i).serves);
  }
  return t;
}

health_inputs at(service_phase phase) {
  return {.phase = phase, .now = t0 + 1s, .last_tick = t0 + 900ms, .tick_stall_limit = 2s, .leave_ends = {}};
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("readyz: ready only while serving with a ready worker in every active slot") {
    slot_table t = two_ready_slots();
    auto h = judge_health(t, at(service_phase::serving));
    CHECK(h.ready.ok);
    CHECK(h.ready.reason.empty());
    CHECK(h.live.ok);

    CHECK(judge_health(t, at(service_phase::starting)).ready.reason == "starting");
    CHECK(judge_health(t, at(service_phase::stopping)).ready.reason == "stopping");
    CHECK_FALSE(judge_health(t, at(service_phase::finished)).ready.ok);
  }

  TEST_CASE("readyz: a slot whose worker died is named until its respawn is ready") {
    slot_table t = two_ready_slots();
    t.exited(1001, false);
    auto h = judge_health(t, at(service_phase::serving));
    CHECK_FALSE(h.ready.ok);
    CHECK(h.ready.reason == "slot 1 has no ready worker");
    CHECK(h.live.ok);  // the master supervises: it respawns the slot
    t.add_worker(1, 1002, 2, false, t0);
    CHECK_FALSE(judge_health(t, at(service_phase::serving)).ready.ok);  // starting is not ready
    t.ready(1002);
    CHECK(judge_health(t, at(service_phase::serving)).ready.ok);
  }

  TEST_CASE("readyz: a worker being replaced keeps its slot ready until its successor takes over") {
    slot_table t = two_ready_slots();
    t.add_worker(0, 1010, 10, true, t0);  // a reload's successor, starting
    CHECK(judge_health(t, at(service_phase::serving)).ready.ok);
    t.ready(1010);
    CHECK(judge_health(t, at(service_phase::serving)).ready.ok);
  }

  TEST_CASE("readyz: a retiring slot (scaling down) does not count") {
    slot_table t = two_ready_slots();
    t.retire(1, t0 + 10s);
    CHECK(judge_health(t, at(service_phase::serving)).ready.ok);
  }

  TEST_CASE("readyz: leaving says when the graceful stop begins") {
    slot_table t = two_ready_slots();
    health_inputs in = at(service_phase::leaving);
    in.leave_ends = in.now + 1500ms;
    auto h = judge_health(t, in);
    CHECK_FALSE(h.ready.ok);
    CHECK(h.ready.reason == "leaving: the graceful stop begins in 1500 ms");
    CHECK(h.live.ok);
    in.leave_ends = in.now - 5ms;  // the timer is due: never a negative count
    CHECK(judge_health(t, in).ready.reason == "leaving: the graceful stop begins in 0 ms");
  }

  TEST_CASE("livez: live while the supervision tick runs, not once it stalls or the master finished") {
    slot_table t = two_ready_slots();
    health_inputs in = at(service_phase::serving);
    in.last_tick = in.now - 2s;  // exactly at the limit
    CHECK(judge_health(t, in).live.ok);
    in.last_tick = in.now - 2001ms;
    auto h = judge_health(t, in);
    CHECK_FALSE(h.live.ok);
    CHECK(h.live.reason == "supervision stalled for 2001 ms");
    CHECK(judge_health(t, at(service_phase::finished)).live.reason == "stopped");
    CHECK(judge_health(t, at(service_phase::stopping)).live.ok);  // a stop is supervised too
  }

  TEST_CASE("phase names are what /status shows") {
    CHECK(std::string_view(phase_name(service_phase::starting)) == "starting");
    CHECK(std::string_view(phase_name(service_phase::serving)) == "running");
    CHECK(std::string_view(phase_name(service_phase::leaving)) == "leaving");
    CHECK(std::string_view(phase_name(service_phase::stopping)) == "stopping");
    CHECK(std::string_view(phase_name(service_phase::finished)) == "stopped");
  }
}
