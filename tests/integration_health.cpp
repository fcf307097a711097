// Integration tests of what a balancer sees of one host: /livez and
// /readyz on the admin endpoint, and a SIGTERM with a drain delay (/readyz
// turns 503 at once, the workers serve on and close each connection after
// its response, then the graceful stop). Multi-host scenarios behind a real
// HAProxy and nginx are in integration_fleet.cpp.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"

#include <chrono>
#include <csignal>
#include <string>

#include <sys/wait.h>

using namespace test_support;

namespace {

// A probe of the admin endpoint on its own connection, as a balancer's check makes it.
http_response probe(std::uint16_t admin_port, std::string_view path) {
  http_client c(admin_port);
  c.send(get_request(path));
  return c.read_response();
}

// The sum of cluster_requests_total over the slots, from /metrics.
long requests_answered(std::uint16_t admin_port) {
  std::string metrics = probe(admin_port, "/metrics").body;
  long total = 0;
  for (std::size_t at = metrics.find("\ncluster_requests_total{"); at != std::string::npos;
       at = metrics.find("\ncluster_requests_total{", at + 1)) {
    std::size_t space = metrics.find(' ', metrics.find('}', at));
    total += std::stol(metrics.substr(space + 1));
  }
  return total;
}

}  // namespace

TEST_SUITE("deploy") {
  TEST_CASE("/livez and /readyz answer 200 once every slot is ready, and a probe costs the workers no request") {
    cluster_process cluster(program::hello, 2, {"--admin", "127.0.0.1:0"});
    const long before = requests_answered(cluster.admin_port());
    for (int i = 0; i < 20; ++i) {
      auto ready = probe(cluster.admin_port(), "/readyz");
      CHECK(ready.status == 200);
      CHECK(ready.body == "ok\n");
      CHECK(ready.header("Cache-Control") == "no-store");
      CHECK(probe(cluster.admin_port(), "/livez").status == 200);
    }
    CHECK(requests_answered(cluster.admin_port()) == before);
  }

  TEST_CASE("SIGTERM with --drain-delay: /readyz turns 503 at once, workers serve on closing each connection, then stop") {
    constexpr auto delay = 1500ms;
    cluster_process cluster(program::hello, 2,
                            {"--admin", "127.0.0.1:0", "--drain-delay", std::to_string(delay.count())});
    http_client pooled(cluster.port());  // a balancer's pooled connection, open before the signal
    pooled.send(get_request());
    auto first = pooled.read_response();
    REQUIRE(first.status == 200);
    CHECK(first.header("Connection") != "close");

    const auto signalled = std::chrono::steady_clock::now();
    cluster.signal(SIGTERM);
    http_response ready;
    REQUIRE(wait_until([&] { return (ready = probe(cluster.admin_port(), "/readyz")).status == 503; }, 1s));
    CHECK(ready.body.starts_with("leaving: the graceful stop begins in "));
    CHECK(probe(cluster.admin_port(), "/livez").status == 200);

    // Still serving, normally, but each response ends its connection.
    pooled.send(get_request());
    auto during = pooled.read_response();
    CHECK(during.status == 200);
    CHECK(during.body == "Hello World\n");
    CHECK(during.header("Connection") == "close");
    CHECK(pooled.server_closed(2s));
    for (int i = 0; i < 5; ++i) {
      http_client fresh(cluster.port());
      fresh.send(get_request());
      auto r = fresh.read_response();
      CHECK(r.status == 200);
      CHECK(r.header("Connection") == "close");
    }
    CHECK(std::chrono::steady_clock::now() - signalled < delay);  // what came before ran inside the delay

    auto status = cluster.wait_exit(delay + 10s);
    REQUIRE(status);
    CHECK(std::chrono::steady_clock::now() - signalled >= delay);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    const std::string log = cluster.stderr_text();
    CHECK(log.find("SIGTERM: leaving: /readyz answers 503; workers serve on for 1500 ms") != std::string::npos);
    CHECK(log.find("SIGTERM after the drain delay: graceful stop of 2 workers") != std::string::npos);
  }

  TEST_CASE("a second SIGTERM during the drain delay starts the graceful stop at once") {
    cluster_process cluster(program::hello, 2, {"--admin", "127.0.0.1:0", "--drain-delay", "600000"});
    cluster.signal(SIGTERM);
    REQUIRE(cluster.wait_for_log("leaving: /readyz answers 503", 5s));
    cluster.signal(SIGTERM);
    auto status = cluster.wait_exit(10s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(cluster.stderr_text().find("SIGTERM during the drain delay: graceful stop of 2 workers") !=
          std::string::npos);
  }

  TEST_CASE("during the drain delay a reload and a scale are refused, and a crashed worker is still replaced") {
    cluster_process cluster(program::lifecycle, 1, {"--admin", "127.0.0.1:0", "--drain-delay", "600000"});
    cluster.signal(SIGTERM);
    REQUIRE(cluster.wait_for_log("leaving: /readyz answers 503", 5s));
    cluster.signal(SIGHUP);
    CHECK(cluster.wait_for_log("reload refused: the cluster is leaving", 5s));
    cluster.signal(SIGTTIN);
    CHECK(cluster.wait_for_log("scale refused: the cluster is leaving", 5s));
    auto pids = cluster.worker_pids();
    REQUIRE(pids.size() == 1);
    ::kill(pids[0], SIGKILL);
    REQUIRE(wait_until([&] { return cluster.workers_ready(1, {pids[0]}); }, 10s));
    // The replacement was told on arrival: it closes its connections too.
    http_client c(cluster.port());
    c.send(get_request());
    auto r = c.read_response();
    CHECK(r.body.starts_with("pid " + std::to_string(cluster.worker_pids().at(0)) + " "));
    CHECK(r.header("Connection") == "close");
    CHECK(probe(cluster.admin_port(), "/readyz").status == 503);
    cluster.signal(SIGQUIT);  // a fast stop ends the delay too
    auto status = cluster.wait_exit(10s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
  }
}
