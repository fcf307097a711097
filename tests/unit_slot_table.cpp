// Unit tests: the master's slot table without forking. Slots and workers
// change state only through their transition functions; these tests drive
// the events the master feeds it (fork, ready, exit, drain, hang, kill,
// retire) with made-up pids and check the states, the successor's take-over
// and what each event asks the master to do.
#include <doctest/doctest.h>

#include <cluster/detail/slot_table.hpp>

#include <chrono>

using namespace cluster::detail;

namespace {

using clock_type = std::chrono::steady_clock;
const clock_type::time_point t0 = clock_type::now();
const clock_type::time_point later = t0 + std::chrono::seconds(10);

// A table of `n` slots with made-up socket descriptors 100, 101, ...
slot_table table_of(int n) {
  slot_table t;
  for (int i = 0; i < n; ++i) t.add_slot(100 + i);
  return t;
}

// Forks `pid` into the slot and has it report ready.
void serve(slot_table& t, int slot, pid_t pid) {
  REQUIRE(t.can_fork(slot, false));
  t.add_worker(slot, pid, static_cast<std::size_t>(pid), false, t0);
  REQUIRE(t.ready(pid).serves);
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("worker states: each event applies only where it makes sense") {
    using enum worker_state;
    using E = worker_event;
    CHECK(next_state(starting, E::became_ready) == ready);
    CHECK(next_state(ready, E::became_ready) == std::nullopt);  // a second "ready" changes nothing
    CHECK(next_state(draining, E::became_ready) == std::nullopt);
    CHECK(next_state(starting, E::drain) == draining);
    CHECK(next_state(ready, E::drain) == draining);
    CHECK(next_state(draining, E::drain) == std::nullopt);
    CHECK(next_state(aborting, E::drain) == aborting);  // a hung worker keeps its SIGKILL deadline
    CHECK(next_state(starting, E::hang) == std::nullopt);  // no heartbeat is expected before ready
    CHECK(next_state(ready, E::hang) == aborting);
    CHECK(next_state(draining, E::hang) == aborting);
    CHECK(next_state(aborting, E::hang) == std::nullopt);
    for (worker_state s : {starting, ready, draining, aborting}) CHECK(next_state(s, E::kill) == killed);
    for (E e : {E::became_ready, E::drain, E::hang, E::kill}) CHECK(next_state(killed, e) == std::nullopt);
  }

  TEST_CASE("slot states: each event applies only where it makes sense") {
    using enum slot_state;
    using E = slot_event;
    CHECK(next_state(vacant, E::forked) == running);
    CHECK(next_state(running, E::forked) == std::nullopt);  // one current worker per slot
    CHECK(next_state(vacant, E::forked_successor) == std::nullopt);  // nothing to replace
    CHECK(next_state(running, E::forked_successor) == replacing);
    CHECK(next_state(replacing, E::forked_successor) == std::nullopt);  // one successor at a time
    CHECK(next_state(replacing, E::successor_ready) == running);
    CHECK(next_state(running, E::successor_ready) == std::nullopt);
    CHECK(next_state(replacing, E::successor_exited) == running);
    CHECK(next_state(retiring, E::successor_exited) == retiring);
    CHECK(next_state(running, E::current_exited) == vacant);
    CHECK(next_state(replacing, E::current_exited) == running);  // the successor takes over
    CHECK(next_state(retiring, E::current_exited) == retiring);
    CHECK(next_state(vacant, E::retire) == removed);
    CHECK(next_state(running, E::retire) == retiring);
    CHECK(next_state(replacing, E::retire) == retiring);
    CHECK(next_state(retiring, E::retire) == std::nullopt);
    CHECK(next_state(retiring, E::emptied) == removed);
    CHECK(next_state(running, E::emptied) == std::nullopt);
    for (E e : {E::forked, E::forked_successor, E::successor_ready, E::current_exited, E::retire})
      CHECK(next_state(removed, e) == std::nullopt);
  }

  TEST_CASE("slot table: a forked worker serves its slot once ready, and only then") {
    slot_table t = table_of(2);
    CHECK(t.slot(0)->state == slot_state::vacant);
    t.add_worker(0, 11, 0, false, t0);
    CHECK(t.slot(0)->state == slot_state::running);
    CHECK(t.slot(0)->current == 11);
    CHECK_FALSE(t.serving(*t.slot(0)));
    CHECK(t.steering_targets() == std::vector<int>{0, 1});  // none serves: every active slot
    ready_outcome r = t.ready(11);
    CHECK(r.first);
    CHECK(r.serves);
    CHECK(r.replaced == -1);
    CHECK(t.find(11)->state == worker_state::ready);
    CHECK(t.find(11)->booted);
    CHECK(t.serving(*t.slot(0)));
    CHECK(t.steering_targets() == std::vector<int>{0});
    CHECK_FALSE(t.all_serving());
    CHECK_FALSE(t.ready(11).first);  // a repeated "ready" changes nothing
    serve(t, 1, 12);
    CHECK(t.all_serving());
    CHECK(t.live_slots() == std::vector<int>{0, 1});
  }

  TEST_CASE("slot table: a ready successor takes over and the worker it replaced is to be drained") {
    slot_table t = table_of(1);
    serve(t, 0, 11);
    CHECK(t.has_worker_to_replace(0));
    REQUIRE(t.can_fork(0, true));
    t.add_worker(0, 12, 1, true, t0);
    CHECK(t.slot(0)->state == slot_state::replacing);
    CHECK(t.slot(0)->successor == 12);
    CHECK_FALSE(t.can_fork(0, true));  // one successor at a time
    CHECK_FALSE(t.has_worker_to_replace(0));
    ready_outcome r = t.ready(12);
    CHECK(r.serves);
    CHECK(r.replaced == 11);
    CHECK(t.slot(0)->state == slot_state::running);
    CHECK(t.slot(0)->current == 12);
    CHECK(t.slot(0)->successor == -1);
    CHECK(t.drain(*t.find(11), later));
    CHECK(t.find(11)->state == worker_state::draining);
    CHECK(t.find(11)->asked_to_leave);
    // The replaced worker's exit is nobody's loss: the slot has its worker.
    exit_outcome e = t.exited(11, false);
    CHECK(e.known);
    CHECK_FALSE(e.was_current);
    CHECK_FALSE(e.needs_worker);
    CHECK(e.worker.asked_to_leave);
  }

  TEST_CASE("slot table: when the current worker dies, a waiting successor takes over before it is ready") {
    slot_table t = table_of(1);
    serve(t, 0, 11);
    t.add_worker(0, 12, 1, true, t0);
    exit_outcome e = t.exited(11, false);
    CHECK(e.was_current);
    CHECK(e.took_over);
    CHECK_FALSE(e.needs_worker);
    CHECK(t.slot(0)->state == slot_state::running);
    CHECK(t.slot(0)->current == 12);
    CHECK_FALSE(t.serving(*t.slot(0)));  // not ready yet
    CHECK(t.ready(12).serves);
  }

  TEST_CASE("slot table: a successor that dies leaves the current worker serving") {
    slot_table t = table_of(1);
    serve(t, 0, 11);
    t.add_worker(0, 12, 1, true, t0);
    exit_outcome e = t.exited(12, false);
    CHECK(e.was_successor);
    CHECK_FALSE(e.worker.booted);
    CHECK(t.slot(0)->state == slot_state::running);
    CHECK(t.slot(0)->current == 11);
    CHECK(t.serving(*t.slot(0)));
  }

  TEST_CASE("slot table: a dead current worker leaves its slot vacant, needing a worker unless the cluster stops") {
    slot_table t = table_of(2);
    serve(t, 0, 11);
    serve(t, 1, 12);
    exit_outcome e = t.exited(11, false);
    CHECK(e.was_current);
    CHECK(e.needs_worker);
    CHECK(e.worker.booted);
    CHECK_FALSE(e.worker.asked_to_leave);
    CHECK(t.slot(0)->state == slot_state::vacant);
    CHECK(t.can_fork(0, false));
    CHECK_FALSE(t.can_fork(0, true));
    CHECK(t.steering_targets() == std::vector<int>{1});  // new connections avoid the empty slot
    CHECK(t.live_slots() == std::vector<int>{1});
    CHECK_FALSE(t.exited(11, false).known);  // reaped once
    CHECK_FALSE(t.exited(12, true).needs_worker);
  }

  TEST_CASE("slot table: a worker that never became ready dies a boot failure; boot loops are per slot") {
    slot_table t = table_of(2);
    t.add_worker(0, 11, 0, false, t0);
    exit_outcome e = t.exited(11, false);
    CHECK_FALSE(e.worker.booted);
    t.slot(0)->backoff.boot_failures = 1;
    CHECK(t.boot_looping(*t.slot(0)));
    CHECK_FALSE(t.all_boot_looping());  // slot 1 has not failed
    t.slot(1)->backoff.boot_failures = 1;
    CHECK(t.all_boot_looping());
    serve(t, 1, 12);  // a ready worker serves: no loop there whatever the count
    CHECK_FALSE(t.all_boot_looping());
  }

  TEST_CASE("slot table: a worker drained while starting counts as booted (its exit is no boot failure)") {
    slot_table t = table_of(1);
    t.add_worker(0, 11, 0, false, t0);
    CHECK(t.drain(*t.find(11), later));
    CHECK(t.find(11)->booted);
    CHECK(t.find(11)->drain_deadline == later);
    CHECK(phase_name(*t.find(11)) == "draining");
    CHECK_FALSE(t.drain(*t.find(11), later));  // already draining: nothing to send
  }

  TEST_CASE("slot table: a hung worker is aborted, then killed; a killed one takes no further event") {
    slot_table t = table_of(1);
    serve(t, 0, 11);
    worker_record& w = *t.find(11);
    CHECK(t.hang(w, later));
    CHECK(w.state == worker_state::aborting);
    CHECK(w.abort_deadline == later);
    CHECK(phase_name(w) == "ready");
    CHECK(t.serving(*t.slot(0)));  // it holds its accept loop until it dies
    CHECK_FALSE(t.hang(w, later));
    CHECK(t.kill(w, false));
    CHECK(w.state == worker_state::killed);
    CHECK_FALSE(w.asked_to_leave);
    CHECK_FALSE(t.serving(*t.slot(0)));
    CHECK_FALSE(t.drain(w, later));
    CHECK(w.asked_to_leave);  // asked all the same: its exit is then no failure
    CHECK_FALSE(t.ready(11).first);
    CHECK_FALSE(t.kill(w, true));
  }

  TEST_CASE("slot table: only the ready current worker of a slot without successor may be recycled") {
    slot_table t = table_of(1);
    t.add_worker(0, 11, 0, false, t0);
    CHECK_FALSE(t.replaceable(*t.find(11)));  // starting
    REQUIRE(t.ready(11).serves);
    CHECK(t.replaceable(*t.find(11)));
    t.add_worker(0, 12, 1, true, t0);
    CHECK_FALSE(t.replaceable(*t.find(11)));  // a successor is on its way
    CHECK_FALSE(t.replaceable(*t.find(12)));  // not the current worker
  }

  TEST_CASE("slot table: retiring a slot kills its successor, drains its worker, and removes it once empty") {
    slot_table t = table_of(2);
    serve(t, 0, 11);
    serve(t, 1, 12);
    t.add_worker(1, 13, 2, true, t0);
    retire_outcome r = t.retire(1, later);
    CHECK(r.kill == 13);
    CHECK(r.retire == 12);
    CHECK(t.slot(1)->state == slot_state::retiring);
    CHECK(t.active_slots() == 1);
    CHECK(t.steering_targets() == std::vector<int>{0});
    CHECK(t.find(13)->state == worker_state::killed);
    CHECK(t.find(13)->asked_to_leave);
    CHECK(t.find(12)->state == worker_state::draining);
    CHECK_FALSE(t.can_fork(1, false));
    CHECK_FALSE(t.ready(13).first);  // a killed successor never takes over
    CHECK(t.retire(1, later).retire == -1);  // retiring twice changes nothing
    exit_outcome e = t.exited(12, false);
    CHECK(e.was_current);
    CHECK_FALSE(e.needs_worker);
    CHECK_FALSE(e.slot_removed);  // its successor is still there
    CHECK(t.pop_removed().empty());
    e = t.exited(13, false);
    CHECK(e.slot_removed);
    CHECK(t.slot(1)->state == slot_state::removed);
    CHECK(t.pop_removed() == std::vector<int>{101});
    CHECK(t.slots().size() == 1);
  }

  TEST_CASE("slot table: retiring an empty slot removes it at once") {
    slot_table t = table_of(2);
    retire_outcome r = t.retire(1, later);
    CHECK(r.kill == -1);
    CHECK(r.retire == -1);
    CHECK(t.slot(1)->state == slot_state::removed);
    CHECK(t.pop_removed() == std::vector<int>{101});
  }

  TEST_CASE("slot table: a worker whose slot was removed exits without touching any slot") {
    slot_table t = table_of(2);
    serve(t, 1, 12);
    t.add_worker(1, 13, 2, true, t0);
    REQUIRE(t.ready(13).replaced == 12);
    REQUIRE(t.drain(*t.find(12), later));
    t.retire(1, later);
    REQUIRE(t.exited(13, false).slot_removed);
    t.pop_removed();
    exit_outcome e = t.exited(12, false);  // drained before the slot went
    CHECK(e.known);
    CHECK_FALSE(e.was_current);
    CHECK_FALSE(e.was_successor);
    CHECK(t.slot(1) == nullptr);
  }
}
