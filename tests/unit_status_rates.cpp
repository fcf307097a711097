// Unit tests: /status's rates. rates_between() over two made-up samples
// (the first sample, a restart, a counter reset, a slot added), the latency
// quantiles from histogram bucket deltas, and the master's sampler driven by
// hand-made ticks over a slot table and shared cells: one sample per
// second, however often it is asked; and its cheap CPU-time reader.
#include <doctest/doctest.h>

#include <cluster/detail/rate_sampler.hpp>
#include <cluster/detail/status_rates.hpp>

#include <chrono>
#include <cmath>
#include <limits>

#include <sys/prctl.h>
#include <unistd.h>

using namespace cluster::detail;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;
const clock_type::time_point t0 = clock_type::now();

slot_sample slot_at(int slot, pid_t pid, std::uint64_t requests, double cpu_seconds) {
  slot_sample s;
  s.slot = slot;
  s.pid = pid;
  s.requests = requests;
  s.cpu_seconds = cpu_seconds;
  s.durations[0] = requests;  // every request under 0.5 ms
  return s;
}

cluster_sample sample_at(clock_type::time_point at, double master_cpu, std::vector<slot_sample> slots) {
  return {.at = at, .master_cpu_seconds = master_cpu, .slots = std::move(slots)};
}

std::array<double, duration_buckets> buckets(std::initializer_list<std::pair<std::size_t, double>> counts) {
  std::array<double, duration_buckets> out{};
  for (auto [b, n] : counts) out[b] = n;
  return out;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("rates: the first sample gives zero rates, and lists every slot") {
    cluster_sample first = sample_at(t0, 5.0, {slot_at(0, 100, 1000, 2.0), slot_at(1, 101, 500, 1.0)});
    measured_rates r = rates_between(cluster_sample{}, first);
    CHECK(r.cluster.interval_seconds == 0);
    CHECK(r.cluster.requests_per_second == 0);
    CHECK(r.cluster.master_cpu_percent == 0);
    CHECK_FALSE(r.cluster.p50_seconds);
    REQUIRE(r.slots.size() == 2);
    CHECK(r.slots[0].requests_per_second == 0);
    CHECK(r.slots[1].cpu_percent == 0);
  }

  TEST_CASE("rates: requests per second and CPU % over the interval, per slot and for the cluster") {
    cluster_sample a = sample_at(t0, 1.0, {slot_at(0, 100, 1000, 2.0), slot_at(1, 101, 500, 1.0)});
    cluster_sample b = sample_at(t0 + 2s, 1.1, {slot_at(0, 100, 3000, 3.0), slot_at(1, 101, 900, 1.5)});
    measured_rates r = rates_between(a, b);
    CHECK(r.cluster.interval_seconds == doctest::Approx(2.0));
    CHECK(r.of_slot(0).requests_per_second == doctest::Approx(1000));
    CHECK(r.of_slot(1).requests_per_second == doctest::Approx(200));
    CHECK(r.cluster.requests_per_second == doctest::Approx(1200));
    CHECK(r.of_slot(0).cpu_percent == doctest::Approx(50));  // 1 s of CPU in 2 s
    CHECK(r.of_slot(1).cpu_percent == doctest::Approx(25));
    CHECK(r.cluster.master_cpu_percent == doctest::Approx(5));
    CHECK(r.cluster.durations_per_second[0] == doctest::Approx(1200));
    CHECK(r.cluster.durations_per_second[1] == 0);
    CHECK(r.of_slot(7).requests_per_second == 0);  // not measured: zeros
  }

  TEST_CASE("rates: a worker restarted between the samples gives no negative or huge figure") {
    cluster_sample a = sample_at(t0, 1.0, {slot_at(0, 100, 1000, 500.0)});
    SUBCASE("its requests were folded into the slot's counters: they still count, CPU waits for the next sample") {
      // The old process did 100 more, the new one 50 (and 0.01 s of CPU).
      cluster_sample b = sample_at(t0 + 1s, 1.0, {slot_at(0, 200, 1150, 0.01)});
      measured_rates r = rates_between(a, b);
      CHECK(r.of_slot(0).requests_per_second == doctest::Approx(150));
      CHECK(r.of_slot(0).cpu_percent == 0);  // not 0.01 - 500 over 1 s
    }
    SUBCASE("a counter that went back (its cell reset) tells nothing: 0, not a wrap-around") {
      cluster_sample b = sample_at(t0 + 1s, 1.0, {slot_at(0, 200, 40, 0.01)});
      measured_rates r = rates_between(a, b);
      CHECK(r.of_slot(0).requests_per_second == 0);
      CHECK(r.cluster.requests_per_second == 0);
      CHECK(r.cluster.durations_per_second[0] == 0);
      CHECK(r.of_slot(0).cpu_percent == 0);
    }
    SUBCASE("the same pid whose CPU time went back (a reused pid) gives 0") {
      cluster_sample b = sample_at(t0 + 1s, 1.0, {slot_at(0, 100, 1100, 0.5)});
      CHECK(rates_between(a, b).of_slot(0).cpu_percent == 0);
    }
    SUBCASE("no worker in the later sample (backing off): no CPU") {
      slot_sample gone = slot_at(0, -1, 1000, 0);
      gone.cpu_seconds.reset();
      CHECK(rates_between(a, sample_at(t0 + 1s, 1.0, {gone})).of_slot(0).cpu_percent == 0);
    }
  }

  TEST_CASE("rates: a slot added between the samples starts at 0; a removed one is gone") {
    cluster_sample a = sample_at(t0, 1.0, {slot_at(0, 100, 10, 1.0), slot_at(1, 101, 10, 1.0)});
    cluster_sample b = sample_at(t0 + 1s, 1.0, {slot_at(0, 100, 20, 1.0), slot_at(2, 102, 5000, 1.0)});
    measured_rates r = rates_between(a, b);
    REQUIRE(r.slots.size() == 2);
    CHECK(r.of_slot(0).requests_per_second == doctest::Approx(10));
    CHECK(r.of_slot(2).requests_per_second == 0);
    CHECK(r.cluster.requests_per_second == doctest::Approx(10));
  }

  TEST_CASE("rates: samples out of order or at the same moment give zeros, never a division by zero") {
    cluster_sample a = sample_at(t0 + 1s, 1.0, {slot_at(0, 100, 10, 1.0)});
    cluster_sample b = sample_at(t0 + 1s, 2.0, {slot_at(0, 100, 20, 2.0)});
    for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, sample_at(t0, 1.0, {slot_at(0, 100, 10, 1.0)})}}) {
      measured_rates r = rates_between(x, y);
      CHECK(r.cluster.interval_seconds == 0);
      CHECK(r.of_slot(0).requests_per_second == 0);
      CHECK(r.cluster.master_cpu_percent == 0);
      CHECK(std::isfinite(r.of_slot(0).cpu_percent));
    }
  }

  TEST_CASE("latency quantiles: interpolated inside the bucket, the last bound past it, none without requests") {
    CHECK_FALSE(duration_quantile(0.5, buckets({})));
    // 100 requests under 0.5 ms: the median halfway up the first bucket.
    CHECK(*duration_quantile(0.5, buckets({{0, 100}})) == doctest::Approx(0.00025));
    // 50 in (1, 2.5] ms and 50 in (5, 10] ms: p50 at the top of the first, p99 near the top of the second.
    auto mixed = buckets({{2, 50}, {4, 50}});
    CHECK(*duration_quantile(0.5, mixed) == doctest::Approx(0.0025));
    CHECK(*duration_quantile(0.99, mixed) == doctest::Approx(0.0099));
    // Past the last bound (10 s) nothing can be interpolated: 10 s.
    CHECK(*duration_quantile(0.99, buckets({{0, 1}, {duration_buckets - 1, 99}})) == doctest::Approx(10.0));
    // From two samples: only the requests of the interval count.
    cluster_sample a = sample_at(t0, 1.0, {slot_at(0, 100, 0, 1.0)});
    a.slots[0].durations[5] = 1000;  // slow requests before the interval
    cluster_sample b = a;
    b.at = t0 + 1s;
    b.slots[0].durations[0] = 10;
    measured_rates r = rates_between(a, b);
    REQUIRE(r.cluster.p99_seconds);
    CHECK(*r.cluster.p99_seconds <= 0.0005);
  }

  TEST_CASE("rate sampler: one sample per second however often it ticks; rates across a restart stay sane") {
    slot_table table;
    shared_region cells(4);
    table.add_slot(100);
    const pid_t self = ::getpid();  // a live process, so that /proc answers for it
    table.add_worker(0, self, cells.take(), false, t0);
    rate_sampler sampler;
    auto bump = [&](std::size_t cell, int n) {
      for (int i = 0; i < n; ++i) cells.cell(cell).record(200, 100);
    };
    sampler.tick(t0, table, cells);
    CHECK(sampler.latest().cluster.interval_seconds == 0);  // the first sample
    bump(0, 30);
    for (auto t : {100ms, 400ms, 999ms}) sampler.tick(t0 + t, table, cells);  // not due
    CHECK(sampler.latest().cluster.interval_seconds == 0);
    sampler.tick(t0 + 1s, table, cells);
    CHECK(sampler.latest().cluster.interval_seconds == doctest::Approx(1.0));
    CHECK(sampler.latest().of_slot(0).requests_per_second == doctest::Approx(30));
    CHECK(sampler.latest().cluster.p50_seconds);
    CHECK(sampler.latest().of_slot(0).cpu_percent >= 0);

    // The worker dies after 10 more requests; the master folds its cell into
    // the slot (as the supervisor does) and a new worker answers 5.
    bump(0, 10);
    exit_outcome out = table.exited(self, false);
    table.slot(0)->folded.add(cells.cell(out.worker.cell));
    cells.give(out.worker.cell);
    const pid_t parent = ::getppid();
    table.add_worker(0, parent, cells.take(), false, t0 + 1500ms);
    bump(out.worker.cell, 5);                 // the same cell, reset by take()
    sampler.tick(t0 + 1500ms, table, cells);  // not due
    sampler.tick(t0 + 2010ms, table, cells);
    const measured_rates& r = sampler.latest();
    CHECK(r.cluster.interval_seconds == doctest::Approx(1.01));
    CHECK(r.of_slot(0).requests_per_second == doctest::Approx(15 / 1.01));
    CHECK(r.of_slot(0).cpu_percent == 0);  // another process: measured from the next sample on

    // Ticks that ran late do not push the samples apart: the next is due at 3 s.
    sampler.tick(t0 + 2990ms, table, cells);
    CHECK(sampler.latest().cluster.interval_seconds == doctest::Approx(1.01));
    sampler.tick(t0 + 3s, table, cells);
    CHECK(sampler.latest().cluster.interval_seconds == doctest::Approx(0.99));
  }

  TEST_CASE("process_cpu_seconds reads what read_process_stats reads, whatever the command name holds") {
    // This process's name, put back when the test ends.
    struct name_guard {
      char saved[17] = {};
      name_guard() { ::prctl(PR_GET_NAME, saved); }
      ~name_guard() { ::prctl(PR_SET_NAME, saved); }
    } guard;
    for (const char* name : {"plain", "a) b (c) 1 2 3", ")", "x y z"}) {
      CAPTURE(name);
      REQUIRE(::prctl(PR_SET_NAME, name) == 0);
      auto quick = process_cpu_seconds(::getpid());
      process_stats full = read_process_stats(::getpid());
      REQUIRE(quick);
      REQUIRE(full.found);
      CHECK(*quick >= 0);
      CHECK(*quick == doctest::Approx(full.cpu_seconds).epsilon(0.05));  // a tick or two apart at most
    }
    CHECK_FALSE(process_cpu_seconds(-1));
    CHECK_FALSE(process_cpu_seconds(std::numeric_limits<pid_t>::max()));  // above pid_max: no such process
  }
}
