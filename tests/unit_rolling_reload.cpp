// Unit tests: a rolling reload's progress, decided by one object. Slots are
// replaced one at a time, each only after the previous slot's new worker
// serves; slots with nothing to replace are passed over; a failure stops the
// reload and leaves the old generation serving; the on_reload hook hears
// each phase once.
#include <doctest/doctest.h>

#include <cluster/detail/rolling_reload.hpp>

#include <set>
#include <stdexcept>
#include <vector>

using namespace cluster::detail;
using kind = reload_step::kind;

namespace {

struct hook_log {
  std::vector<cluster::reload_event> events;
  rolling_reload reload() {
    return rolling_reload([this](cluster::reload_event e) { events.push_back(e); });
  }
};

auto every_slot = [](int) { return true; };

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("rolling reload: slots are replaced one at a time, each after the previous one serves") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    CHECK_FALSE(r.active());
    CHECK(r.begin({0, 1, 2}, every_slot) == reload_step{kind::replace, 0});
    CHECK(r.active());
    CHECK(r.slot() == 0);
    CHECK(r.remaining() == 2);
    CHECK(r.serving(1, every_slot) == reload_step{});  // not the slot it waits for
    CHECK(r.serving(0, every_slot) == reload_step{kind::replace, 1});
    CHECK(r.serving(1, every_slot) == reload_step{kind::replace, 2});
    CHECK(r.serving(2, every_slot) == reload_step{kind::finished, -1});
    CHECK_FALSE(r.active());
    CHECK(r.slot() == -1);
    CHECK(hooks.events == std::vector{cluster::reload_event::begun, cluster::reload_event::finished});
  }

  TEST_CASE("rolling reload: a second request while one runs changes nothing") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    r.begin({0, 1}, every_slot);
    CHECK(r.begin({0, 1}, every_slot) == reload_step{});
    CHECK(r.slot() == 0);
    CHECK(r.remaining() == 1);
    CHECK(hooks.events.size() == 1);
  }

  TEST_CASE("rolling reload: slots without a worker to replace are passed over") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    std::set<int> empty{0, 2};
    auto has_worker = [&](int slot) { return !empty.contains(slot); };
    CHECK(r.begin({0, 1, 2, 3}, has_worker) == reload_step{kind::replace, 1});
    CHECK(r.serving(1, has_worker) == reload_step{kind::replace, 3});
    // Its worker died before the successor was forked: the respawn gives it a new one.
    CHECK(r.passed_over(3, has_worker) == reload_step{kind::finished, -1});
  }

  TEST_CASE("rolling reload: with no slot to replace it begins and finishes at once") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    CHECK(r.begin({0, 1}, [](int) { return false; }) == reload_step{kind::finished, -1});
    CHECK(hooks.events == std::vector{cluster::reload_event::begun, cluster::reload_event::finished});
  }

  TEST_CASE("rolling reload: a new worker that fails stops the reload; the remaining slots keep their workers") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    r.begin({0, 1, 2}, every_slot);
    r.serving(0, every_slot);
    CHECK(r.failed(0, "late") == reload_step{});  // not the slot it waits for
    CHECK(r.failed(1, "the new worker for slot 1 exited with code 1 before it was ready") ==
          reload_step{kind::aborted, -1});
    CHECK_FALSE(r.active());
    CHECK(r.remaining() == 0);
    CHECK(r.serving(2, every_slot) == reload_step{});
    CHECK(hooks.events == std::vector{cluster::reload_event::begun, cluster::reload_event::aborted});
    // A later reload starts over.
    CHECK(r.begin({0, 1, 2}, every_slot) == reload_step{kind::replace, 0});
  }

  TEST_CASE("rolling reload: a stop cancels it; without a reload, cancel does nothing") {
    hook_log hooks;
    rolling_reload r = hooks.reload();
    CHECK(r.cancel() == reload_step{});
    r.begin({0}, every_slot);
    CHECK(r.cancel() == reload_step{kind::aborted, -1});
    CHECK(r.cancel() == reload_step{});
    CHECK(hooks.events == std::vector{cluster::reload_event::begun, cluster::reload_event::aborted});
  }

  TEST_CASE("rolling reload: a hook that throws does not stop the reload") {
    rolling_reload r([](cluster::reload_event) { throw std::runtime_error("hook failed"); });
    CHECK(r.begin({0}, every_slot) == reload_step{kind::replace, 0});
    CHECK(r.serving(0, every_slot) == reload_step{kind::finished, -1});
  }
}
