// The admin endpoint's page in a real browser: a cluster of examples/hello
// with --admin on loopback, its page opened in headless Chromium
// (support/chromium.hpp). Every wait is on a condition of the page's DOM,
// polled by a script in the page up to a deadline.
#include <doctest/doctest.h>

#include "support/chromium.hpp"
#include "support/cluster_process.hpp"
#include "support/load.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <string>
#include <string_view>
#include <vector>

using namespace test_support;

namespace {

/// How long the page may take to show what a step waits for: its refresh
/// is once a second, the master's rates need two samples a second apart.
constexpr int shown_within_ms = 15'000;
constexpr auto evaluate_timeout = 20s;  // above shown_within_ms: the script answers first

/// A script that resolves to `result` (a JS expression, as a string) once
/// `condition` holds in the page, or after shown_within_ms.
std::string once(std::string_view condition, std::string_view result) {
  const std::string stop = "const stop = Date.now() + " + std::to_string(shown_within_ms) + ";";
  const std::string wait = "while (!(" + std::string(condition) + ") && Date.now() < stop)" +
                           "  await new Promise((resolve) => setTimeout(resolve, 50));";
  return "(async () => {" + stop + wait + "return String(" + std::string(result) + ");})()";
}

/// Names for the page's parts, defined in the page before each script.
constexpr std::string_view page_parts =
    "const rows = () => [...document.querySelectorAll('#slots tr')];"
    "const cell = (tr, name) => tr.querySelector('td.' + name).textContent;"
    "const text = (id) => document.getElementById(id).textContent;"
    // The highest point of the request-rate chart: 80 is its baseline (zero).
    "const rate_top = () => Math.min(...(document.querySelector('#rate polyline').getAttribute('points') || 'x')"
    "    .split(' ').map((p) => Number(p.split(',')[1])));";

std::string in_page(std::string_view condition, std::string_view result) {
  return "(() => {" + std::string(page_parts) + "return " + once(condition, result) + ";})()";
}

std::string sorted_pids(std::vector<pid_t> pids) {
  std::ranges::sort(pids);
  std::string out;
  for (pid_t p : pids) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

std::string problems_of(const headless_chromium& browser) {
  std::string out;
  for (const std::string& p : browser.problems()) out += p + "\n";
  return out;
}

}  // namespace

TEST_SUITE("browser") {
  TEST_CASE(
      "headless Chromium: the admin page shows every worker, its requests/s and the rate chart moving under load, "
      "then that /status cannot be reached once the cluster stops") {
    const auto began = test_clock::now();
    cluster_process server(program::hello, 2, {"--admin", "127.0.0.1:0"});
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = server.worker_pids()).size() == 2; }, 5s));
    headless_chromium browser;
    INFO("chromium's log:\n", browser.log());
    INFO("problems the page reported:\n", problems_of(browser));
    browser.open("http://127.0.0.1:" + std::to_string(server.admin_port()) + "/");

    // One row per worker, with the worker's real pid; the master's pid above.
    const std::string listed = browser.evaluate(
        in_page("text('link').startsWith('live') && rows().length === 2 &&"
                "  rows().every((tr) => /^[0-9]+$/.test(cell(tr, 'pid')))",
                "text('pid') + ';' + rows().map((tr) => cell(tr, 'pid')).sort((a, b) => a - b).join(',')"),
        evaluate_timeout);
    CHECK(listed == std::to_string(server.pid()) + ";" + sorted_pids(workers));
    CHECK(browser.problems().empty());  // no console error, no CSP violation

    {
      // New connections for every request, so that both slots get some.
      load_client load(server.port(), {.threads = 2, .pause = 5ms, .reconnect = true, .max_duration = 30s});
      const std::string moving = browser.evaluate(
          in_page("rows().every((tr) => Number(cell(tr, 'rps')) > 0) && rate_top() < 80 &&"
                  "  text('p50') !== '\\u2013'",
                  "(rows().every((tr) => Number(cell(tr, 'rps')) > 0) && rate_top() < 80 ? 'moving' : 'still') +"
                  "  ': req/s ' + rows().map((tr) => cell(tr, 'rps')).join(',') + ', chart top ' + rate_top() +"
                  "  ', p50 ' + text('p50')"),
          evaluate_timeout);
      CHECK(moving.starts_with("moving: "));
      const load_result& done = load.stop();
      INFO(done.summary());
      CHECK(done.ok > 0);
      CHECK(done.failed == 0);
    }
    CHECK(browser.problems().empty());

    // The master goes: the page says so instead of showing stale figures as live.
    server.signal(SIGTERM);
    REQUIRE(server.wait_exit(10s));
    const std::string gone =
        browser.evaluate(in_page("document.body.classList.contains('down')", "text('link')"), evaluate_timeout);
    CHECK(gone.starts_with("cannot reach /status"));
    CHECK(test_clock::now() - began < 45s);
  }
}
