// Integration tests of the lifecycle: reloads, scaling, crashes, hangs, the
// crash policy (respawn with backoff, boot loops), stops and recycling, each
// while a load client keeps sending requests on keep-alive connections. The
// cluster is tests/servers/lifecycle.cpp (two workers on 127.0.0.1, an
// ephemeral port); the tests signal it by PID and read its lifecycle log and
// its admin endpoint.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/load.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace test_support;

namespace {

std::set<pid_t> as_set(const std::vector<pid_t>& pids) { return {pids.begin(), pids.end()}; }

bool disjoint(const std::set<pid_t>& a, const std::set<pid_t>& b) {
  return std::ranges::none_of(a, [&](pid_t p) { return b.contains(p); });
}

std::size_t count_of(std::string_view text, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

/// "pid <pid> slot <slot>\n", the body of the test server's GET /.
struct answer {
  pid_t pid = 0;
  int slot = -1;
};

std::optional<answer> parse_answer(std::string_view body) {
  answer a;
  if (std::sscanf(std::string(body).c_str(), "pid %d slot %d", &a.pid, &a.slot) != 2) return std::nullopt;
  return a;
}

/// GET / on `client`; which worker answered.
answer ask(http_client& client) {
  client.send(get_request("/"));
  http_response res = client.read_response(2s);
  REQUIRE(res.status == 200);
  auto a = parse_answer(res.body);
  REQUIRE(a);
  return *a;
}

/// The server side of `client`'s connection to `server_port`: bytes the
/// server has not sent yet (tx) and bytes it has not read yet (rx). Nothing
/// if the connection is not there.
std::optional<socket_queues> server_side(std::uint16_t server_port, const http_client& client) {
  return tcp_queues(server_port, client.local_port());
}

/// True once the server has read everything `client` sent: the server side
/// of the connection has an empty receive queue. This is how a test knows a
/// request has reached a worker (and is in its handler) before it signals the
/// master, without guessing with a sleep.
bool server_read_all(std::uint16_t server_port, const http_client& client) {
  auto q = server_side(server_port, client);
  return q && q->rx == 0;
}

/// A file in /tmp, removed when the test ends: as a marker, its existence
/// makes the test server's new workers fail to start
/// (CLUSTER_TEST_FAIL_START_IF_EXISTS); it also hands text to a program.
class temp_file {
 public:
  temp_file()
      : path_("/tmp/cluster-lifecycle-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()) +
              ".tmp") {
    ::unlink(path_.c_str());
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() { ::unlink(path_.c_str()); }

  const std::string& path() const { return path_; }
  void create() const { REQUIRE(std::ofstream(path_).good()); }
  void remove() const { REQUIRE(::unlink(path_.c_str()) == 0); }
  void write(std::string_view text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string path_;
};

/// GET `target` on a new connection to 127.0.0.1:`port` (the admin endpoint).
http_response fetch(std::uint16_t port, std::string_view target) {
  http_client client(port);
  client.send(get_request(target));
  return client.read_response(2s);
}

/// The JSON object of slot `slot` in a /status body, as text ("" if absent).
/// The object holds no nested objects, so it ends at the first '}'.
std::string slot_object(const std::string& status, int slot) {
  auto at = status.find("{\"slot\":" + std::to_string(slot) + ",");
  if (at == std::string::npos) return {};
  auto end = status.find('}', at);
  return end == std::string::npos ? std::string() : status.substr(at, end + 1 - at);
}

/// The number or literal after "key": in a flat JSON object, as text.
std::string json_field(const std::string& object, const std::string& key) {
  auto at = object.find("\"" + key + "\":");
  if (at == std::string::npos) return {};
  at += key.size() + 3;
  auto end = object.find_first_of(",}", at);
  return object.substr(at, end - at);
}

double as_number(const std::string& text) {
  REQUIRE_MESSAGE(!text.empty(), "no such field");
  return std::stod(text);
}

/// The value of sample `name{slot="<slot>"}` in Prometheus text; NaN if absent.
double slot_sample(const std::string& metrics, const std::string& name, int slot) {
  const std::string prefix = name + "{slot=\"" + std::to_string(slot) + "\"} ";
  for (auto at = metrics.find(prefix); at != std::string::npos; at = metrics.find(prefix, at + 1))
    if (at == 0 || metrics[at - 1] == '\n') return std::stod(metrics.substr(at + prefix.size()));
  return std::numeric_limits<double>::quiet_NaN();
}

/// `promtool check metrics` on `metrics`: its exit code and what it said.
std::pair<int, std::string> promtool_check(const std::string& metrics) {
  constexpr const char* promtool = "/usr/bin/promtool";
  REQUIRE_MESSAGE(::access(promtool, X_OK) == 0, "needs ", promtool, " (Debian package prometheus)");
  temp_file data;
  data.write(metrics);
  finished_program p = run_program({"/bin/sh", "-c", std::string(promtool) + " check metrics < " + data.path()}, 30s);
  return {exit_code(p.status), p.out + p.err};
}

/// A live worker of `cluster` that reported ready, or 0 if none has.
pid_t a_ready_worker(const cluster_process& cluster, std::size_t pick) {
  auto pids = cluster.worker_pids();
  std::ranges::sort(pids);
  std::string log = cluster.stderr_text();
  std::erase_if(pids, [&](pid_t p) { return log.find("(pid " + std::to_string(p) + ") ready") == std::string::npos; });
  return pids.empty() ? 0 : pids[pick % pids.size()];
}

/// The slot's worker that answers GET / over fresh connections (bounded tries).
answer worker_of_slot(const cluster_process& cluster, int slot) {
  for (int i = 0; i < 200; ++i) {
    http_client c(cluster.port());
    answer a = ask(c);
    if (a.slot == slot) return a;
  }
  FAIL("no answer from slot ", slot, " in 200 connections");
  return {};
}

// Load used by every test: four connections, each with one request in flight
// at a time.
constexpr int load_threads = 4;

load_options load_with(std::chrono::milliseconds pause = 0ms) {
  load_options o;
  o.threads = load_threads;
  o.pause = pause;
  o.read_timeout = 5s;
  o.max_duration = 30s;
  return o;
}

/// After one worker was killed under `load`: the load is answered again, and
/// only the requests in flight on that worker failed (at most one per load
/// connection); no connect failed. Stops the load.
void check_load_after_one_kill(load_client& load) {
  const auto ok_now = load.ok();
  CHECK(wait_until([&] { return load.ok() >= ok_now + 100; }, 5s));
  const load_result& r = load.stop();
  INFO(r.summary());
  CHECK(r.failed <= static_cast<std::uint64_t>(load_threads));
  CHECK(r.refused == 0);
  CHECK(r.connect_errors == 0);
}

}  // namespace

TEST_SUITE("lifecycle") {
  TEST_CASE("a rolling reload (SIGHUP) under load replaces every worker and fails no request") {
    cluster_process cluster(program::lifecycle);
    const auto before = as_set(cluster.worker_pids());
    REQUIRE(before.size() == 2);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 200; }, 5s));

    cluster.signal(SIGHUP);

    REQUIRE(cluster.wait_for_log("reload finished", 10s));
    // The old workers drain and exit: two workers remain, none of them old.
    CHECK(wait_until(
        [&] {
          auto now = as_set(cluster.worker_pids());
          return now.size() == 2 && disjoint(now, before);
        },
        5s));
    const auto after = as_set(cluster.worker_pids());
    const auto ok_after_reload = load.ok();
    CHECK(wait_until([&] { return load.ok() >= ok_after_reload + 200; }, 5s));
    const load_result& r = load.stop();
    INFO(r.summary());

    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    CHECK(std::ranges::any_of(after, [&](pid_t p) { return r.by_pid.contains(p); }));
    for (int i = 0; i < 10; ++i) {  // fresh connections reach only the new generation
      http_client probe(cluster.port());
      CHECK(after.contains(ask(probe).pid));
    }
    std::string log = cluster.stderr_text();
    CHECK(log.find("reload begun") != std::string::npos);
    CHECK(log.find("hook: reload begun") != std::string::npos);
    CHECK(log.find("hook: reload finished") != std::string::npos);
    CHECK(log.find("reload aborted") == std::string::npos);
  }

  TEST_CASE("scaling up (SIGTTIN) and down (SIGTTOU) under load fails no request and the worker count follows") {
    cluster_process cluster(program::lifecycle);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    struct step {
      int signo;
      std::size_t workers;
      std::size_t scaled_lines;  // "scaled to <workers> workers" lines expected so far
    };
    const step steps[] = {{SIGTTIN, 3, 1}, {SIGTTIN, 4, 1}, {SIGTTOU, 3, 2}, {SIGTTOU, 2, 1}};
    for (const step& s : steps) {
      CAPTURE(s.workers);
      const std::string line = "scaled to " + std::to_string(s.workers) + " workers";
      cluster.signal(s.signo);
      CHECK(wait_until([&] { return count_of(cluster.stderr_text(), line) == s.scaled_lines; }, 5s));
      CHECK(wait_until([&] { return cluster.workers_ready(s.workers); }, 5s));
      const auto ok_now = load.ok();
      CHECK(wait_until([&] { return load.ok() >= ok_now + 100; }, 5s));
    }

    // The same through the API, from a handler: cluster::scale(3).
    {
      http_client client(cluster.port());
      client.send(get_request("/scale?n=3"));
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "scale requested\n");
    }
    CHECK(wait_until([&] { return count_of(cluster.stderr_text(), "scaled to 3 workers") == 3; }, 5s));
    CHECK(wait_until([&] { return cluster.workers_ready(3); }, 5s));
    const auto ok_now = load.ok();
    CHECK(wait_until([&] { return load.ok() >= ok_now + 100; }, 5s));

    const load_result& r = load.stop();
    INFO(r.summary());
    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
  }

  TEST_CASE("kill -9 of a ready worker every 300 ms for 10 s: the service keeps serving, no connection is refused") {
    // Default crash policy: before, the tenth early death within crash_window
    // stopped the whole service with exit code 3.
    cluster_process cluster(program::lifecycle);
    load_options lo = load_with();
    // A slot whose workers keep dying backs off up to restart_max_delay (5 s,
    // +20% jitter): a connection queued on its socket meanwhile waits for its
    // next worker instead of failing.
    lo.read_timeout = 15s;
    load_client load(cluster.port(), lo);
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    const auto ok_before = load.ok();

    int kills = 0;
    const auto until = test_clock::now() + 10s;
    for (std::size_t i = 0; i < 40 && test_clock::now() < until; ++i) {
      // Only a ready worker: both slots may be backing off at once.
      if (pid_t victim = a_ready_worker(cluster, i); victim > 0 && ::kill(victim, SIGKILL) == 0) ++kills;
      std::this_thread::sleep_for(300ms);  // paces the kills
    }
    CAPTURE(kills);
    CHECK(kills > 10);  // more than crash_limit within crash_window
    CHECK(cluster.wait_exit(0ms) == std::nullopt);

    // Both slots are back within the longest backoff, and serve.
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 10s));
    const auto ok_after_kills = load.ok();
    CHECK(ok_after_kills > ok_before);
    CHECK(wait_until([&] { return load.ok() >= ok_after_kills + 100; }, 5s));
    const load_result& r = load.stop();
    INFO(r.summary());

    // The slots' listening sockets live in the master, so a connect never
    // meets a closed port, even while a slot has no worker.
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    // Each load thread has one connection with at most one request in flight
    // (no pipelining). Killing a worker fails exactly the requests on the
    // connections it had accepted: those in its accept queue are taken by its
    // replacement, since the queue belongs to the slot's socket in the
    // master. A failed thread reconnects, and its new connection can only be
    // hurt by a later kill. So one kill fails at most one request per thread,
    // and all kills at most kills * load_threads.
    CHECK(r.failed <= static_cast<std::uint64_t>(kills) * load_threads);
    const std::string log = cluster.stderr_text();
    CHECK(count_of(log, "was killed by SIGKILL") == static_cast<std::size_t>(kills));
    CHECK(log.find("giving up") == std::string::npos);
    CHECK(log.find("early death ") != std::string::npos);      // the log says why it waits ...
    CHECK(log.find("; respawning in ") != std::string::npos);  // ... and how long
    http_client probe(cluster.port());
    CHECK(ask(probe).pid > 0);
  }

  TEST_CASE("more than crash_limit requests to a crashing handler within crash_window: the service keeps serving") {
    cluster_process cluster(program::lifecycle);  // crash_limit 10, crash_window 30 s
    constexpr int crashes = 14;
    const auto started = test_clock::now();
    for (int i = 0; i < crashes; ++i) {
      // New connections go to a slot with a ready worker, or wait in a
      // slot's queue for its next one (backoff up to 6 s).
      http_client client(cluster.port());
      client.send(get_request("/crash"));
      CHECK_THROWS(client.read_response(10s));  // the worker died with the request
      const auto deaths = static_cast<std::size_t>(i + 1);
      REQUIRE(wait_until([&] { return count_of(cluster.stderr_text(), "was killed by SIGABRT") == deaths; }, 2s));
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - started);
    CAPTURE(took.count());
    CHECK(took < 30s);  // all within crash_window

    CHECK(cluster.wait_exit(0ms) == std::nullopt);
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 10s));
    std::set<int> slots;
    for (int i = 0; i < 200 && slots.size() < 2; ++i) {
      http_client probe(cluster.port());
      slots.insert(ask(probe).slot);
    }
    CHECK(slots == std::set<int>{0, 1});
    const std::string log = cluster.stderr_text();
    CHECK(count_of(log, "was killed by SIGABRT") == static_cast<std::size_t>(crashes));
    CHECK(log.find("giving up") == std::string::npos);
    CHECK(log.find("early death ") != std::string::npos);
    CHECK(log.find("; respawning in ") != std::string::npos);

    cluster.signal(SIGTERM);
    const auto status = cluster.wait_exit(5s);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
  }

  TEST_CASE("a handler that blocks its worker's loop: the worker is replaced within the hang timeout") {
    cluster_process cluster(program::lifecycle, 2, {"--hang-timeout", "500", "--heartbeat-interval", "50"});
    // One keep-alive connection on each worker: one to hang it, one to watch
    // the other keep answering.
    std::vector<std::unique_ptr<http_client>> on_worker;
    std::vector<answer> who;
    for (int i = 0; i < 200 && on_worker.size() < 2; ++i) {
      auto c = std::make_unique<http_client>(cluster.port());
      answer a = ask(*c);
      if (std::ranges::none_of(who, [&](const answer& w) { return w.pid == a.pid; })) {
        on_worker.push_back(std::move(c));
        who.push_back(a);
      }
    }
    REQUIRE(on_worker.size() == 2);
    const answer hung = who[0], other = who[1];
    http_client& hang_client = *on_worker[0];
    http_client& probe = *on_worker[1];
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    const auto sent = test_clock::now();
    hang_client.send(get_request("/hang"));
    const std::string unresponsive =
        "worker " + std::to_string(hung.slot) + " (pid " + std::to_string(hung.pid) + ") unresponsive";
    const std::string replacement_ready = "worker " + std::to_string(hung.slot) + " (pid ";
    auto replaced = [&] {
      std::string log = cluster.stderr_text();
      auto at = log.find(unresponsive);
      if (at == std::string::npos) return false;
      // A "worker <slot> (pid <new>) ready" line after the diagnosis.
      for (auto p = log.find(replacement_ready, at); p != std::string::npos; p = log.find(replacement_ready, p + 1)) {
        auto eol = log.find('\n', p);
        std::string_view rest = std::string_view(log).substr(p, eol - p);
        if (rest.ends_with(") ready") && rest.find(std::to_string(hung.pid)) == std::string_view::npos) return true;
      }
      return false;
    };
    int answered = 0;
    bool done = false;
    // Bounded: at most 300 rounds of one request and a 5 ms pause.
    for (int i = 0; i < 300 && !done && test_clock::now() - sent < 5s; ++i) {
      answer a = ask(probe);  // the other worker answers all along
      CHECK(a.pid == other.pid);
      ++answered;
      done = replaced();
      std::this_thread::sleep_for(5ms);
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - sent);
    CAPTURE(took.count());
    REQUIRE(done);
    // The heartbeat last ticked at most one interval (50 ms) before the hang;
    // the master checks every 25 ms. Then SIGABRT, a respawn and readiness.
    CHECK(took >= 450ms);
    CHECK(took <= 500ms + 1000ms);
    CHECK(answered >= 10);
    std::string log = cluster.stderr_text();
    CHECK(log.find(unresponsive + ": no heartbeat for ") != std::string::npos);
    CHECK(log.find("sending SIGABRT") != std::string::npos);
    CHECK(log.find("(pid " + std::to_string(hung.pid) + ") was killed by SIGABRT") != std::string::npos);
    CHECK_THROWS(hang_client.read_response(2s));  // its connection died with it
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 3s));
    CHECK_FALSE(as_set(cluster.worker_pids()).contains(hung.pid));

    const load_result& r = load.stop();
    INFO(r.summary());
    // Only the requests stuck on the hung worker fail: at most one per load
    // connection.
    CHECK(r.failed <= static_cast<std::uint64_t>(load_threads));
    CHECK(r.refused == 0);
  }

  TEST_CASE("a boot loop (no worker ever ready): the master gives up within the crash window with exit code 3") {
    child_process master({path_of(program::lifecycle), "--host", "127.0.0.1", "--port", "0", "--workers", "2",
                          "--crash-at-start", "--crash-limit", "6", "--crash-window", "5000", "--restart-delay", "20"},
                         output::capture, output::capture);
    const auto started = test_clock::now();
    const std::string out = master.read_stdout_all(8s);  // until the master and its workers are gone
    const auto status = master.wait_exit(8s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - started);
    const std::string log = master.stderr_text();
    INFO("master stderr:\n", log);
    CAPTURE(took.count());

    REQUIRE(status);
    CHECK(exit_code(status) == 3);
    CHECK(took < 5000ms);
    CHECK(out.empty());  // never ready: no ready line
    CHECK(log.find("boot loop: 6 workers failed to boot within 5000 ms and no slot has a ready worker") !=
          std::string::npos);
    CHECK(log.find("giving up (crash_limit 6)") != std::string::npos);
    CHECK(log.find("before it was ready") != std::string::npos);
    CHECK(log.find("refusing to start (--crash-at-start)") != std::string::npos);
    CHECK(wait_until([&] { return group_members(master.pid()).empty(); }, 2s));
  }

  TEST_CASE("one slot failing to boot while the other serves: no stop, the slot backs off in /status and /metrics") {
    temp_file marker;
    cluster_process cluster(program::lifecycle, 2,
                            {"--admin", "127.0.0.1:0", "--crash-limit", "3", "--crash-window", "60000",
                             "--restart-delay", "300", "--restart-max-delay", "2000"},
                            {"CLUSTER_TEST_FAIL_START_IF_EXISTS=" + marker.path(), "CLUSTER_TEST_FAIL_START_SLOT=1"});
    const std::uint16_t admin = cluster.admin_port();
    const answer serving = worker_of_slot(cluster, 0);
    const answer doomed = worker_of_slot(cluster, 1);
    load_options lo = load_with();
    // A load connection made between the kill and the master's reaping may
    // sit in slot 1's queue until slot 1 boots again: it waits, not fails.
    lo.read_timeout = 15s;
    load_client load(cluster.port(), lo);
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    marker.create();  // from now on, slot 1's new workers fail in their start hook
    REQUIRE(::kill(doomed.pid, SIGKILL) == 0);

    // More boot failures than crash_limit, all within crash_window: the
    // service stays up, slot 1 keeps backing off.
    constexpr std::size_t boot_failures = 5;
    REQUIRE(wait_until([&] { return count_of(cluster.stderr_text(), "refusing to start") >= boot_failures; }, 10s));
    CHECK(cluster.wait_exit(0ms) == std::nullopt);
    CHECK(cluster.stderr_text().find("other slots serve, so the service stays up") != std::string::npos);
    CHECK(cluster.stderr_text().find("giving up") == std::string::npos);

    // /status (JSON): slot 1 backs off, with its next attempt and its deaths.
    std::string slot1;
    REQUIRE(wait_until(
        [&] {
          http_response r = fetch(admin, "/status");
          slot1 = slot_object(r.body, 1);
          return r.status == 200 && json_field(slot1, "state") == "\"backoff\"";
        },
        5s, 20ms));
    CAPTURE(slot1);
    CHECK(json_field(slot1, "backoff") == "true");
    CHECK(json_field(slot1, "pid") == "-1");
    CHECK(as_number(json_field(slot1, "next_attempt_seconds")) > 0);
    CHECK(as_number(json_field(slot1, "next_attempt_seconds")) <= 2.4);  // restart_max_delay + 20%
    CHECK(as_number(json_field(slot1, "consecutive_failures")) >= static_cast<double>(boot_failures + 1));
    CHECK(as_number(json_field(slot1, "boot_failures")) >= static_cast<double>(boot_failures));
    {
      http_response r = fetch(admin, "/status");
      const std::string slot0 = slot_object(r.body, 0);
      CAPTURE(slot0);
      CHECK(json_field(slot0, "state") == "\"ready\"");
      CHECK(json_field(slot0, "pid") == std::to_string(serving.pid));
      CHECK(json_field(slot0, "backoff") == "false");
      CHECK(json_field(slot0, "consecutive_failures") == "0");
    }
    // /status?format=text: the same row, for people.
    std::string table;
    CHECK(wait_until(
        [&] {
          table = fetch(admin, "/status?format=text").body;
          return table.find("\n1     -1       backoff ") != std::string::npos;
        },
        5s, 20ms));
    CAPTURE(table);
    // /metrics: 1 for the backing-off slot, 0 for the serving one; valid.
    std::string metrics;
    REQUIRE(wait_until(
        [&] {
          metrics = fetch(admin, "/metrics").body;
          return slot_sample(metrics, "cluster_slot_backoff", 1) == 1;
        },
        5s, 20ms));
    CAPTURE(metrics);
    CHECK(slot_sample(metrics, "cluster_slot_backoff", 0) == 0);
    CHECK(slot_sample(metrics, "cluster_slot_consecutive_failures", 0) == 0);
    CHECK(slot_sample(metrics, "cluster_slot_consecutive_failures", 1) >= static_cast<double>(boot_failures + 1));
    CHECK(slot_sample(metrics, "cluster_slot_boot_failures", 1) >= static_cast<double>(boot_failures));
    CHECK(slot_sample(metrics, "cluster_slot_next_attempt_seconds", 1) > 0);
    CHECK(slot_sample(metrics, "cluster_slot_next_attempt_seconds", 0) == 0);
    const std::pair<int, std::string> promtool = promtool_check(metrics);
    INFO("promtool said:\n", promtool.second);
    CHECK(promtool.first == 0);

    // New connections go to the serving slot, not into slot 1's queue.
    for (int i = 0; i < 20; ++i) {
      http_client probe(cluster.port());
      CHECK(ask(probe).pid == serving.pid);
    }

    // Once slot 1's workers can boot again, it serves again.
    marker.remove();
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 5s));
    CHECK(wait_until([&] { return slot_sample(fetch(admin, "/metrics").body, "cluster_slot_backoff", 1) == 0; }, 2s));
    check_load_after_one_kill(load);

    cluster.signal(SIGTERM);
    const auto status = cluster.wait_exit(5s);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
  }

  TEST_CASE("once every slot fails to boot after the service served, the boot loop stops it with exit code 3") {
    temp_file marker;
    cluster_process cluster(program::lifecycle, 2,
        {"--crash-limit", "4", "--crash-window", "60000", "--restart-delay", "20", "--restart-max-delay", "100"},
        {"CLUSTER_TEST_FAIL_START_IF_EXISTS=" + marker.path()});
    const answer first = worker_of_slot(cluster, 0);
    const answer second = worker_of_slot(cluster, 1);

    marker.create();  // from now on, every new worker fails in its start hook
    REQUIRE(::kill(first.pid, SIGKILL) == 0);
    // Slot 0 fails to boot more than crash_limit times while slot 1 serves.
    REQUIRE(wait_until([&] { return count_of(cluster.stderr_text(), "refusing to start") >= 6; }, 5s));
    CHECK(cluster.wait_exit(0ms) == std::nullopt);
    http_client probe(cluster.port());
    CHECK(ask(probe).pid == second.pid);

    // Now the last serving slot loses its worker, and its boots fail too.
    REQUIRE(::kill(second.pid, SIGKILL) == 0);
    const auto status = cluster.wait_exit(5s);
    REQUIRE(status);
    CHECK(exit_code(status) == 3);
    const std::string log = cluster.stderr_text();
    CHECK(log.find("and no slot has a ready worker") != std::string::npos);
    CHECK(log.find("giving up (crash_limit 4)") != std::string::npos);
    CHECK(wait_until([&] { return group_members(cluster.pid()).empty(); }, 2s));
  }

  TEST_CASE("SIGTERM with a slow request in flight: the request completes, then everything exits 0") {
    cluster_process cluster(program::lifecycle);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    http_client slow(cluster.port());
    const answer worker = ask(slow);
    slow.send(get_request("/slow?ms=1500"));
    REQUIRE(wait_until([&] { return server_read_all(cluster.port(), slow); }, 2s));
    const auto sent = test_clock::now();

    cluster.signal(SIGTERM);

    http_response res = slow.read_response(5s);
    CHECK(res.status == 200);
    CHECK(parse_answer(res.body).value_or(answer{}).pid == worker.pid);
    CHECK(res.header("Connection") == "close");
    const auto status = cluster.wait_exit(5s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - sent);
    CAPTURE(took.count());
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
    CHECK(took >= 1400ms);  // the stop waited for the request
    CHECK(wait_until([&] { return group_members(cluster.pid()).empty(); }, 2s));
    const load_result& r = load.stop();
    INFO(r.summary());
    std::string log = cluster.stderr_text();
    CHECK(log.find("SIGTERM: graceful stop") != std::string::npos);
    CHECK(log.find("still busy") == std::string::npos);
  }

  TEST_CASE("SIGTERM with a request slower than the shutdown timeout: the worker is killed, the master exits 1") {
    cluster_process cluster(program::lifecycle, 2, {"--shutdown-timeout", "500"});
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    http_client slow(cluster.port());
    const answer worker = ask(slow);
    slow.send(get_request("/slow?ms=10000"));
    REQUIRE(wait_until([&] { return server_read_all(cluster.port(), slow); }, 2s));
    const auto sent = test_clock::now();

    cluster.signal(SIGTERM);

    const auto status = cluster.wait_exit(5s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - sent);
    CAPTURE(took.count());
    REQUIRE(status);
    CHECK(exit_code(status) == 1);
    CHECK(took >= 450ms);
    CHECK(took <= 500ms + 1000ms);  // the deadline, plus one supervision tick and some slack
    CHECK_THROWS(slow.read_response(2s));  // killed mid-request: no response
    CHECK(wait_until([&] { return group_members(cluster.pid()).empty(); }, 2s));
    const load_result& r = load.stop();
    INFO(r.summary());
    std::string log = cluster.stderr_text();
    CHECK(log.find("(pid " + std::to_string(worker.pid) + ") still busy at its drain deadline") != std::string::npos);
    CHECK(log.find("(pid " + std::to_string(worker.pid) + ") was killed by SIGKILL") != std::string::npos);
  }

  TEST_CASE("SIGTERM while answers wait for a slow reader: each is delivered whole before the connection closes") {
    cluster_process cluster(program::lifecycle);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    // A client with a tiny receive window that does not read yet.
    http_client client(cluster.port(), 2s, 2048);
    // 64-byte requests: a worker's 4 KiB read holds exactly 64 of them, so its
    // parser has nothing pending when it writes a batch's answers. Their
    // answers (about 3 MiB) overflow the socket buffers (2 to 3 MiB on
    // loopback): the worker ends up waiting in such a write.
    std::string request = "GET /?pad= HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    request.insert(10, 64 - request.size(), 'x');
    REQUIRE(request.size() == 64);
    constexpr int count = 64 * 320;
    std::string pipeline;
    pipeline.reserve(count * request.size());
    for (int i = 0; i < count; ++i) pipeline += request;
    client.send(pipeline, 10s);
    // The worker is stuck once the bytes it could not send stop growing.
    unsigned long unsent = 0;
    REQUIRE(wait_until(
        [&] {
          auto q = server_side(cluster.port(), client);
          bool stuck = q && q->tx > 0 && q->tx == unsent;
          unsent = q ? q->tx : 0;
          return stuck;
        },
        5s, 50ms));

    cluster.signal(SIGTERM);
    // The drain has reached the workers once one of them has exited (the
    // other is the one held by this client, or any).
    REQUIRE(cluster.wait_for_log("exited with code 0", 3s));

    // Read at last: every answer comes whole, in order, and the stream ends
    // after all of them or after one that says Connection: close.
    int answered = 0;
    bool closed_cleanly = false;
    std::string error;
    for (int i = 0; i < count; ++i) {
      try {
        http_response res = client.read_response(5s);
        CHECK(res.status == 200);
        ++answered;
        if (res.header("Connection") == "close") {
          closed_cleanly = true;
          break;
        }
      } catch (const std::exception& e) {
        error = e.what();
        break;
      }
    }
    CAPTURE(answered);
    CHECK(error == "");
    CHECK((answered == count || closed_cleanly));
    const auto status = cluster.wait_exit(5s);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
    const load_result& r = load.stop();
    INFO(r.summary());
  }

  TEST_CASE("SIGQUIT stops at once: exit 0, every process gone, in-flight requests cut") {
    cluster_process cluster(program::lifecycle);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    http_client slow(cluster.port());
    ask(slow);
    slow.send(get_request("/slow?ms=10000"));
    REQUIRE(wait_until([&] { return server_read_all(cluster.port(), slow); }, 2s));
    const auto sent = test_clock::now();

    cluster.signal(SIGQUIT);

    const auto status = cluster.wait_exit(3s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - sent);
    CAPTURE(took.count());
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
    CHECK(took < 1000ms);
    CHECK(wait_until([&] { return group_members(cluster.pid()).empty(); }, 1s));
    CHECK_THROWS(slow.read_response(2s));
    const load_result& r = load.stop();
    INFO(r.summary());
    CHECK(cluster.stderr_text().find("SIGQUIT: fast stop") != std::string::npos);
  }

  TEST_CASE("max_requests recycles workers under load: new PIDs, no failed request") {
    cluster_process cluster(program::lifecycle, 2, {"--max-requests", "50", "--max-requests-jitter", "10"});
    const auto before = as_set(cluster.worker_pids());
    REQUIRE(before.size() == 2);
    load_client load(cluster.port(), load_with(1ms));

    // Each worker asks to be replaced after 50..60 requests; its successor is
    // ready before it drains.
    CHECK(wait_until([&] { return load.ok() >= 200 && disjoint(as_set(cluster.worker_pids()), before); }, 10s));
    const load_result& r = load.stop();
    INFO(r.summary());

    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    CHECK(r.by_pid.size() > 2);  // answers came from successors too
    CHECK(count_of(cluster.stderr_text(), "(max_requests); starting its replacement") >= 2);
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 5s));
  }

  TEST_CASE("a reload whose new workers cannot start is aborted and the old workers keep serving") {
    temp_file marker;
    cluster_process cluster(program::lifecycle, 2, {}, {"CLUSTER_TEST_FAIL_START_IF_EXISTS=" + marker.path()});
    const auto before = as_set(cluster.worker_pids());
    REQUIRE(before.size() == 2);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    marker.create();  // from now on, new workers fail in their start hook
    cluster.signal(SIGHUP);

    REQUIRE(cluster.wait_for_log("reload aborted", 5s));
    CHECK(cluster.wait_for_log("hook: reload aborted", 2s));
    CHECK(wait_until([&] { return as_set(cluster.worker_pids()) == before; }, 3s));
    const auto ok_after_abort = load.ok();
    CHECK(wait_until([&] { return load.ok() >= ok_after_abort + 200; }, 5s));
    const load_result& r = load.stop();
    INFO(r.summary());

    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    for (const auto& [pid, n] : r.by_pid) CHECK(before.contains(pid));  // only the old generation answered
    for (int i = 0; i < 10; ++i) {
      http_client probe(cluster.port());
      CHECK(before.contains(ask(probe).pid));
    }
    std::string log = cluster.stderr_text();
    CHECK(log.find("refusing to start (" + marker.path() + " exists)") != std::string::npos);
    CHECK(log.find("hook: reload finished") == std::string::npos);
  }

  TEST_CASE("the worker exit hook reports a worker killed by SIGKILL with its slot, pid and signal") {
    cluster_process cluster(program::lifecycle);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));
    http_client client(cluster.port());
    const answer victim = ask(client);

    REQUIRE(::kill(victim.pid, SIGKILL) == 0);

    CHECK(cluster.wait_for_log("hook: worker_exit slot " + std::to_string(victim.slot) + " pid " +
                                   std::to_string(victim.pid) + " code -1 signal 9 expected 0\n",
                               3s));
    CHECK(wait_until([&] { return cluster.workers_ready(2); }, 3s));
    check_load_after_one_kill(load);
  }

  TEST_CASE("a master killed with SIGKILL takes its workers with it") {
    cluster_process cluster(program::lifecycle);
    const auto workers = cluster.worker_pids();
    REQUIRE(workers.size() == 2);
    load_client load(cluster.port(), load_with());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    cluster.signal(SIGKILL);

    REQUIRE(cluster.wait_exit(2s));
    CHECK(wait_until([&] { return std::ranges::none_of(workers, process_alive); }, 2s));
    CHECK(wait_until([&] { return group_members(cluster.pid()).empty(); }, 1s));
    const load_result& r = load.stop();
    INFO(r.summary());
  }
}
