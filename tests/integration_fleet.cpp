// Integration tests of a fleet behind real balancers (issue 13): three hosts
// (tests/servers/lifecycle.cpp, two workers each, on 127.0.0.2, .3 and .4,
// each with its admin endpoint on its own address) behind Debian's HAProxy
// or nginx, started from the configurations in examples/deploy/, under GETs
// and POSTs on keep-alive connections. Every host is restarted or upgraded
// in turn, one is killed, one hangs; each scenario counts the requests that
// failed and prints a row of the summary table the README's "Running a
// fleet" section shows (printed whole when the tests end).
#include <doctest/doctest.h>

#include "support/balancer.hpp"
#include "support/fleet.hpp"
#include "support/http_client.hpp"
#include "support/load.hpp"
#include "support/process.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

using namespace test_support;

namespace {

// As in examples/deploy/haproxy.cfg: the health checks' interval, how many
// failed checks take a host out, how long a check may wait for its answer,
// and how long a request may wait for a host.
constexpr auto check_inter = 250ms;
constexpr int check_fall = 2;
constexpr auto check_timeout = 250ms;
constexpr auto haproxy_server_timeout = 5s;
// Above check_fall x check_inter + check_inter (the first check may start up
// to one interval after the signal), with room for a slow (sanitized) host.
constexpr auto drain_delay = 1000ms;
// How long HAProxy may take to see a host's /readyz fail, come back or stop
// answering, with room for a loaded machine.
constexpr auto seen_down_within = check_fall * check_inter + check_inter + 1s;
constexpr auto seen_up_within = 5s;
constexpr auto seen_hung_within = check_fall * (check_inter + check_timeout) + check_inter + 1s;
constexpr int load_threads = 4;
// Requests the load must answer at a step before the test moves on: enough
// for every host to get some.
constexpr std::uint64_t warm_up_requests = 300;
constexpr std::uint64_t settle_requests = 50;

host_setup three_hosts() { return {.binary = program::lifecycle, .workers = 2, .drain_delay = drain_delay}; }

load_options gets_and_posts() {
  load_options o;
  o.threads = load_threads;
  o.post_every = 3;
  o.pause = 2ms;  // a few hundred requests a second per thread: the two cores also run the balancer and the hosts
  o.read_timeout = haproxy_server_timeout + 5s;  // HAProxy's 504 comes first
  o.max_duration = 90s;
  o.max_requests_per_thread = 200'000;
  return o;
}

// Waits for the load to answer `n` more requests; false if it does not
// within `timeout`.
bool answers_more(const load_client& load, std::uint64_t n, std::chrono::milliseconds timeout = 10s) {
  const auto from = load.ok();
  return wait_until([&] { return load.ok() >= from + n; }, timeout);
}

// Waits until `host` has answered `n` requests since it (re)started: the
// balancer sends it traffic again.
bool takes_load(const fleet_host& host, std::uint64_t n = 20) {
  return wait_until(
      [&] {
        try {
          return host.requests_served() >= n;
        } catch (const std::exception&) {
          return false;
        }
      },
      10s, 20ms);
}

// The summary table: one row per scenario and balancer, printed when the
// test program ends.
class summary_table {
 public:
  void add(const std::string& scenario, balancer_kind balancer, const load_result& r, const std::string& note) {
    std::string failed = std::to_string(r.failed);
    if (!r.failed_by_status.empty()) {
      failed += " (";
      for (const auto& [status, n] : r.failed_by_status)
        failed += (failed.back() == '(' ? "" : ", ") + (status ? std::to_string(status) : "no answer") + ": " +
                  std::to_string(n);
      failed += ")";
    }
    rows_.push_back("| " + scenario + " | " + name_of(balancer) + " | " + std::to_string(r.ok) + " | " +
                    std::to_string(r.posts_ok) + " | " + failed + " | " + note + " |");
    std::printf("fleet: %s\n", rows_.back().c_str());
    for (const std::string& note : r.notes) std::printf("  %s\n", note.c_str());  // the first failures
    std::fflush(stdout);
  }
  ~summary_table() {
    if (rows_.empty()) return;
    std::printf("\nfleet summary (3 hosts x 2 workers, %d clients, GET and POST on keep-alive):\n", load_threads);
    std::printf(
        "| scenario | balancer | requests answered | of which POST | failed | notes |\n|---|---|---:|---:|---|---|\n");
    for (const std::string& row : rows_) std::printf("%s\n", row.c_str());
    std::fflush(stdout);
  }

 private:
  std::vector<std::string> rows_;
};

summary_table& summary() {
  static summary_table table;
  return table;
}

std::string ms(std::chrono::steady_clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// The version a host's own port answers (not through a balancer).
std::string version_of(const fleet_host& host) {
  http_client c(host.address(), host.port());
  c.send(get_request("/version"));
  return c.read_response().body;
}

// Every request of `r` answered with 200, POSTs included.
void check_none_failed(const load_result& r) {
  INFO(r.summary());
  CHECK(r.failed == 0);
  CHECK(r.refused == 0);
  CHECK(r.connect_errors == 0);
  CHECK(r.posts_ok > 0);
}

// Restarts every host in turn: SIGTERM, exit, start again on the same
// address and ports; with HAProxy, the host must be out of rotation before
// its drain delay ends and back UP before the next one stops. Returns the
// longest time HAProxy took to see a host stop.
std::chrono::steady_clock::duration rolling_restart(fleet& hosts, const balancer_process& lb, load_client& load) {
  std::chrono::steady_clock::duration slowest_down{};
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    fleet_host& host = hosts[i];
    CAPTURE(host.name());
    const auto signalled = std::chrono::steady_clock::now();
    host.signal(SIGTERM);
    if (lb.kind() == balancer_kind::haproxy) {
      // Out of rotation while it still serves: its /readyz answers 503.
      CHECK(lb.wait_server_status(host.name(), "DOWN", drain_delay));
      slowest_down = std::max(slowest_down, std::chrono::steady_clock::now() - signalled);
    }
    auto status = host.wait_exit(fleet_host::exit_timeout);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
    CHECK(std::chrono::steady_clock::now() - signalled >= drain_delay);
    host.restart();
    if (lb.kind() == balancer_kind::haproxy) REQUIRE(lb.wait_server_status(host.name(), "UP", seen_up_within));
    REQUIRE(takes_load(host));
    REQUIRE(answers_more(load, settle_requests));
  }
  return slowest_down;
}

// Three hosts behind a balancer, under a load that has warmed up without a
// failure.
struct fleet_under_load {
  explicit fleet_under_load(balancer_kind kind)
      : hosts(3, three_hosts()), lb(kind, hosts.backends()), load(lb.port(), gets_and_posts()) {
    REQUIRE(answers_more(load, warm_up_requests));
    REQUIRE(load.failed() == 0);
  }
  fleet hosts;
  balancer_process lb;
  load_client load;
};

}  // namespace

TEST_SUITE("fleet") {
  TEST_CASE(
      "rolling restart behind HAProxy: each host drains (SIGTERM, --drain-delay) and comes back, no request fails") {
    fleet_under_load f(balancer_kind::haproxy);
    const auto slowest_down = rolling_restart(f.hosts, f.lb, f.load);
    REQUIRE(answers_more(f.load, warm_up_requests));
    const load_result& r = f.load.stop();
    summary().add("rolling restart (SIGTERM, drain 1 s)", f.lb.kind(), r,
                  "DOWN at most " + ms(slowest_down) + " after SIGTERM");
    check_none_failed(r);
  }

  TEST_CASE(
      "rolling binary upgrade behind HAProxy: SIGUSR2 host by host puts the new build in service, no request fails") {
    fleet_under_load f(balancer_kind::haproxy);
    f.hosts.install(binary_from_env("CLUSTER_LIFECYCLE_V2"));
    for (std::size_t i = 0; i < f.hosts.size(); ++i) {
      fleet_host& host = f.hosts[i];
      CAPTURE(host.name());
      const pid_t old_master = host.master();
      auto status = host.upgrade();
      REQUIRE(status);
      CHECK(exit_code(status) == 0);
      CHECK(host.master() != old_master);
      CHECK(version_of(host) == "version 2\n");
      REQUIRE(f.lb.wait_server_status(host.name(), "UP", seen_up_within));
      REQUIRE(answers_more(f.load, settle_requests));
    }
    REQUIRE(answers_more(f.load, warm_up_requests));
    const load_result& r = f.load.stop();
    summary().add("rolling binary upgrade (SIGUSR2)", f.lb.kind(), r, "every host answers version 2 after");
    check_none_failed(r);
    for (std::size_t i = 0; i < f.hosts.size(); ++i) CHECK(version_of(f.hosts[i]) == "version 2\n");
  }

  TEST_CASE("rolling restart behind nginx (passive checks): each host drains and comes back, no request fails") {
    fleet_under_load f(balancer_kind::nginx);
    rolling_restart(f.hosts, f.lb, f.load);
    REQUIRE(answers_more(f.load, warm_up_requests));
    const load_result& r = f.load.stop();
    summary().add("rolling restart (SIGTERM, drain 1 s)", f.lb.kind(), r, "max_fails=1, keepalive 16");
    check_none_failed(r);
  }

  TEST_CASE("kill -9 of a host's master behind HAProxy: only what it had in flight fails, then it is routed around") {
    fleet_under_load f(balancer_kind::haproxy);
    fleet_host& victim = f.hosts[1];
    const auto killed_at = std::chrono::steady_clock::now();
    REQUIRE(victim.kill());  // its workers die with it (PR_SET_PDEATHSIG)
    REQUIRE(f.lb.wait_server_status(victim.name(), "DOWN", seen_down_within));
    const auto down_after = std::chrono::steady_clock::now() - killed_at;
    // What failed did so at once (the connections were reset); a few more
    // answers let the last failures reach their clients.
    REQUIRE(answers_more(f.load, settle_requests));
    const auto failed_at_down = f.load.failed();
    // Each client has one request in flight at most: at most one per client
    // was on the host that died.
    CHECK(failed_at_down <= static_cast<std::uint64_t>(load_threads));
    REQUIRE(answers_more(f.load, warm_up_requests));
    CHECK(f.load.failed() == failed_at_down);  // routed around: nothing fails any more

    victim.restart();
    REQUIRE(f.lb.wait_server_status(victim.name(), "UP", seen_up_within));
    CHECK(takes_load(victim, 50));
    REQUIRE(answers_more(f.load, settle_requests));
    const load_result& r = f.load.stop();
    INFO(r.summary());
    summary().add("kill -9 of one master, restart", f.lb.kind(), r, "DOWN " + ms(down_after) + " after the kill");
    CHECK(r.failed == failed_at_down);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
  }

  TEST_CASE("a hung host (SIGSTOP) behind HAProxy: its checks fail, what it had gets a 504, nothing after") {
    fleet_under_load f(balancer_kind::haproxy);
    fleet_host& victim = f.hosts[2];
    const auto frozen_at = std::chrono::steady_clock::now();
    victim.freeze();
    REQUIRE(f.lb.wait_server_status(victim.name(), "DOWN", seen_hung_within));
    const auto down_after = std::chrono::steady_clock::now() - frozen_at;
    // The requests it holds wait for HAProxy's `timeout server`, then get a
    // 504; none is sent to it any more.
    REQUIRE(wait_until([&] { return f.lb.server_sessions(victim.name()) == 0; }, haproxy_server_timeout + 2s, 20ms));
    REQUIRE(answers_more(f.load, settle_requests));
    const auto failed_at_timeout = f.load.failed();
    // A client waits for one request at a time: at most one per client hung.
    CHECK(failed_at_timeout >= 1);
    CHECK(failed_at_timeout <= static_cast<std::uint64_t>(load_threads));
    REQUIRE(answers_more(f.load, warm_up_requests));
    CHECK(f.load.failed() == failed_at_timeout);

    victim.thaw();
    REQUIRE(f.lb.wait_server_status(victim.name(), "UP", seen_up_within));
    const auto served = victim.requests_served();
    CHECK(wait_until([&] { return victim.requests_served() >= served + 50; }, 10s, 20ms));
    const load_result& r = f.load.stop();
    INFO(r.summary());
    summary().add("SIGSTOP of one host, SIGCONT", f.lb.kind(), r, "DOWN " + ms(down_after) + " after SIGSTOP");
    CHECK(r.failed == failed_at_timeout);
    CHECK(r.failed_by_status.size() == 1);
    CHECK(r.failed_by_status.count(504) == 1);
  }
}
