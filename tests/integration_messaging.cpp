// Integration tests of messaging, shared state, metrics and the admin
// endpoint. The clusters are tests/servers/messaging.cpp (every messaging
// operation behind an HTTP endpoint) and examples/counter.cpp, two workers on
// 127.0.0.1 with ephemeral ports. The Prometheus text is checked by the
// parser of python3-prometheus-client (the system Python) and, when it is
// installed, by `promtool check metrics`.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace test_support;

namespace {

constexpr const char* system_python = "/usr/bin/python3";  // has python3-prometheus-client
constexpr const char* promtool = "/usr/bin/promtool";

std::size_t count_of(std::string_view text, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A response and the worker that gave it (from X-Worker-Pid, X-Worker-Slot).
struct reply {
  int status = 0;
  std::string body;
  pid_t pid = -1;
  int slot = -1;
  std::string content_type;
};

int header_int(const http_response& res, std::string_view name) {
  auto v = res.header(name);
  int n = -1;
  if (v) std::from_chars(v->data(), v->data() + v->size(), n);
  return n;
}

reply get(http_client& client, std::string_view target, std::chrono::milliseconds timeout = 5s) {
  client.send(get_request(target));
  http_response res = client.read_response(timeout);
  return {res.status, res.body, header_int(res, "X-Worker-Pid"), header_int(res, "X-Worker-Slot"),
          res.header("Content-Type").value_or("")};
}

/// GET on a new connection to 127.0.0.1:`port`.
reply get(std::uint16_t port, std::string_view target, std::chrono::milliseconds timeout = 5s) {
  http_client client(port);
  return get(client, target, timeout);
}

/// One keep-alive connection per worker slot: a connection stays with the
/// worker that accepted it, so a test can talk to a chosen worker.
struct slot_connections {
  std::vector<std::unique_ptr<http_client>> by_slot;
  std::vector<pid_t> pid;

  http_client& operator[](int slot) { return *by_slot.at(static_cast<std::size_t>(slot)); }
};

/// Opens connections to the messaging server until each of its `workers`
/// slots holds one (bounded in attempts and time).
slot_connections connect_each_slot(std::uint16_t port, int workers = 2) {
  slot_connections c;
  c.by_slot.resize(static_cast<std::size_t>(workers));
  c.pid.assign(static_cast<std::size_t>(workers), -1);
  int found = 0;
  const auto deadline = test_clock::now() + 10s;
  for (int attempt = 0; attempt < 500 && found < workers && test_clock::now() < deadline; ++attempt) {
    auto client = std::make_unique<http_client>(port);
    reply r = get(*client, "/");
    REQUIRE(r.status == 200);
    REQUIRE(r.slot >= 0);
    REQUIRE(r.slot < workers);
    auto& slot = c.by_slot[static_cast<std::size_t>(r.slot)];
    if (!slot) {
      slot = std::move(client);
      c.pid[static_cast<std::size_t>(r.slot)] = r.pid;
      ++found;
    }
  }
  REQUIRE_MESSAGE(found == workers, "could not reach every worker slot");
  return c;
}

/// Polls GET `target` on `client` until its body contains `text`; the last reply.
reply poll_until_contains(http_client& client, std::string_view target, std::string_view text,
                          std::chrono::milliseconds timeout = 3s) {
  reply r;
  wait_until(
      [&] {
        r = get(client, target);
        return r.body.find(text) != std::string::npos;
      },
      timeout, 10ms);
  return r;
}

/// A file path removed when the test is done, whatever happened.
class temp_path {
 public:
  explicit temp_path(const std::string& stem, const std::string& suffix = "") {
    static std::atomic<int> serial{0};
    path_ = "/tmp/cluster-test-" + std::to_string(::getpid()) + "-" + std::to_string(serial++) + "-" + stem + suffix;
    ::unlink(path_.c_str());
  }
  ~temp_path() { ::unlink(path_.c_str()); }
  temp_path(const temp_path&) = delete;
  temp_path& operator=(const temp_path&) = delete;

  const std::string& path() const noexcept { return path_; }

  void write(std::string_view text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }

 private:
  std::string path_;
};

// Parses the metrics text strictly with prometheus_client and prints facts
// about it as "key value" lines; exits non-zero at the first problem.
constexpr std::string_view prometheus_script = R"PY(
import json, math, sys
mode, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
if mode == "status":
    st = json.loads(text)
    m = st["master"]
    print("master_pid", m["pid"]); print("master_workers", m["workers"])
    print("master_state", m["state"]); print("slots", len(st["slots"]))
    for s in st["slots"]:
        for k in ("pid", "restarts", "requests", "open_connections", "rss_bytes", "cpu_seconds",
                  "uptime_seconds", "loop_lag_seconds"):
            if not isinstance(s[k], (int, float)): raise SystemExit("slot field %s is not a number" % k)
        print("slot_%d_pid" % s["slot"], s["pid"]); print("slot_%d_restarts" % s["slot"], s["restarts"])
        print("slot_%d_requests" % s["slot"], s["requests"])
        print("slot_%d_ready" % s["slot"], 1 if s["state"] == "ready" else 0)
    sys.exit(0)

from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(text))
declared = [l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")]
if len(declared) != len(set(declared)): raise SystemExit("a family is declared twice")
if len(families) != len(declared):
    raise SystemExit("%d families parsed, %d TYPE lines" % (len(families), len(declared)))
for f in families:
    if f.type == "unknown": raise SystemExit("family %s has no type" % f.name)
    if not f.documentation: raise SystemExit("family %s has no help" % f.name)
    if not f.samples: raise SystemExit("family %s has no samples" % f.name)
    for s in f.samples:
        if math.isnan(s.value) or s.value < 0: raise SystemExit("sample %s = %r" % (s.name, s.value))
by = {f.name: f for f in families}
def total(name, sample=None):
    return sum(s.value for s in by[name].samples if s.name == (sample or name))
def per_slot(name, sample):
    return {s.labels["slot"]: s.value for s in by[name].samples if s.name == sample}
print("families", len(families))
print("requests_total", int(total("cluster_requests", "cluster_requests_total")))
for slot, v in sorted(per_slot("cluster_requests", "cluster_requests_total").items()):
    print("requests_slot_%s" % slot, int(v))
print("restarts_total", int(total("cluster_worker_restarts", "cluster_worker_restarts_total")))
for slot, v in sorted(per_slot("cluster_worker_restarts", "cluster_worker_restarts_total").items()):
    print("restarts_slot_%s" % slot, int(v))
print("workers", int(total("cluster_workers")))
h = by["cluster_request_duration_seconds"]
if h.type != "histogram": raise SystemExit("cluster_request_duration_seconds is a %s" % h.type)
for slot in per_slot("cluster_request_duration_seconds", "cluster_request_duration_seconds_count"):
    buckets = [(float(s.labels["le"]), s.value) for s in h.samples
               if s.name.endswith("_bucket") and s.labels["slot"] == slot]
    values = [v for _, v in sorted(buckets)]
    if values != sorted(values): raise SystemExit("buckets of slot %s not cumulative" % slot)
    count = [s.value for s in h.samples if s.name.endswith("_count") and s.labels["slot"] == slot][0]
    if not buckets or sorted(buckets)[-1][0] != math.inf or values[-1] != count:
        raise SystemExit("slot %s: +Inf bucket differs from _count" % slot)
print("histogram_count", int(total("cluster_request_duration_seconds", "cluster_request_duration_seconds_count")))
for name, sample in (("cluster_connections", "cluster_connections_total"),
                     ("cluster_received_bytes", "cluster_received_bytes_total"),
                     ("cluster_sent_bytes", "cluster_sent_bytes_total"),
                     ("cluster_open_connections", "cluster_open_connections")):
    print(sample, int(total(name, sample)))
for code in ("2xx", "4xx", "5xx"):
    print("responses_" + code, int(sum(s.value for s in by["cluster_responses"].samples if s.labels.get("code") == code)))
for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
             "process_start_time_seconds", "process_open_fds"):
    roles = sorted(s.labels.get("role", "") for s in by[name].samples)
    print(name + "_samples", len(by[name].samples), ",".join(roles))
print("ok", 1)
)PY";

/// What the checker script said, as key -> value; fails the test if it failed.
std::map<std::string, std::string> run_checker(const std::string& mode, std::string_view input) {
  REQUIRE_MESSAGE(::access(system_python, X_OK) == 0, "needs ", system_python, " with python3-prometheus-client");
  temp_path script("check", ".py");
  temp_path data("input", ".txt");
  script.write(prometheus_script);
  data.write(input);
  finished_program p = run_program({system_python, script.path(), mode, data.path()}, 30s);
  INFO("checker output:\n", p.out, "\nchecker errors:\n", p.err, "\ninput:\n", input);
  REQUIRE(exit_code(p.status) == 0);
  std::map<std::string, std::string> facts;
  for (const std::string& line : lines_of(p.out)) {
    auto space = line.find(' ');
    if (space != std::string::npos) facts[line.substr(0, space)] = line.substr(space + 1);
  }
  return facts;
}

long fact(const std::map<std::string, std::string>& facts, const std::string& key) {
  auto it = facts.find(key);
  REQUIRE_MESSAGE(it != facts.end(), "no ", key, " in the checker's output");
  return std::stol(it->second);
}

/// A counter cluster with an admin endpoint on 127.0.0.1.
struct counter_with_admin {
  cluster_process cluster{program::counter, 2, {"--admin", "127.0.0.1:0"}};

  reply admin(std::string_view target) { return get(cluster.admin_port(), target); }
  std::map<std::string, std::string> status() {
    reply r = admin("/status");
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "application/json");
    return run_checker("status", r.body);
  }
  std::map<std::string, std::string> metrics() {
    reply r = admin("/metrics");
    REQUIRE(r.status == 200);
    return run_checker("metrics", r.body);
  }
};

/// The count a counter response carries ("<decimal>\n").
long count_of_body(const std::string& body) {
  REQUIRE_MESSAGE((body.size() >= 2 && body.back() == '\n'), "not a count: \"", body, "\"");
  long n = -1;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size() - 1, n);
  REQUIRE_MESSAGE((ec == std::errc{} && end == body.data() + body.size() - 1), "not a count: \"", body, "\"");
  return n;
}

}  // namespace

TEST_SUITE("messaging") {
  // --- Requests to the master ---------------------------------------------------

  TEST_CASE("a worker's request is answered by the master's coroutine callback, from every slot") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    for (int s = 0; s < 2; ++s) {
      reply r = get(slots[s], "/request?timeout_ms=2000");
      CHECK(r.status == 200);
      CHECK(r.body == "pong from master " + std::to_string(cluster.pid()) + " to slot " + std::to_string(s) + "\n");
      CHECK(r.pid == slots.pid[static_cast<std::size_t>(s)]);
    }
  }

  TEST_CASE("tasks spawned from the start hooks on this_worker().executor() and this_master().executor() run") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    for (int s = 0; s < 2; ++s) {
      reply r = get(slots[s], "/background?timeout_ms=2000");
      CHECK(r.status == 200);
      CHECK(r.body == "worker: ran in slot " + std::to_string(s) + "\nmaster: ran\n");
    }
  }

  TEST_CASE("a trivially copyable struct travels both ways with message::of and as") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    reply r = get(slots[1], "/struct?x=3&y=-4");
    CHECK(r.status == 200);
    CHECK(r.body == "30 -40 1\n");

    // The master reads 12 bytes as a 3-byte type: as<T>() throws bad_payload in
    // the callback, and the worker's request fails with remote_error and its text.
    r = get(slots[0], "/struct-bad");
    CHECK(r.status == 502);
    CHECK(r.body.starts_with("remote_error: "));
    CHECK(r.body.find("message of 12 bytes read as a type of 3") != std::string::npos);
  }

  TEST_CASE("a request whose callback throws fails with remote_error carrying the reason") {
    cluster_process cluster(program::messaging);
    reply r = get(cluster.port(), "/request-error");
    CHECK(r.status == 502);
    CHECK(r.body.starts_with("remote_error: "));
    CHECK(r.body.find("on_request refuses on purpose") != std::string::npos);
  }

  TEST_CASE("a request answered after its timeout fails with timeout, and the late answer harms nothing") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    const auto start = test_clock::now();
    reply r = get(slots[0], "/request-slow?timeout_ms=150&delay_ms=700");
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - start);
    INFO("answered in ", took.count(), " ms: ", r.body);
    CHECK(r.status == 504);
    CHECK(r.body.starts_with("timeout: "));
    CHECK(r.body.find("150 ms") != std::string::npos);
    CHECK(took >= 140ms);
    CHECK(took < 650ms);  // did not wait for the answer

    // The master answers later; the worker drops the stale reply and serves on.
    reply log = poll_until_contains(slots[1], "/master-log", "slow answer sent to slot 0");
    REQUIRE(log.body.find("slow answer sent to slot 0") != std::string::npos);
    r = get(slots[0], "/request?timeout_ms=2000");
    CHECK(r.status == 200);
    CHECK(r.body.starts_with("pong from master "));
    CHECK(r.pid == slots.pid[0]);

    // With a long enough timeout the same slow callback's answer arrives.
    r = get(slots[0], "/request-slow?timeout_ms=3000&delay_ms=50");
    CHECK(r.status == 200);
    CHECK(r.body == "slow pong\n");
    CHECK(cluster.worker_pids().size() == 2);
  }

  // --- Sends and broadcasts -----------------------------------------------------

  TEST_CASE("one-way sends reach the master's on_message and its sends reach the worker, in order") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    for (const char* msg : {"alpha", "beta", "gamma"})
      CHECK(get(slots[1], std::string("/send?msg=") + msg).status == 200);

    // Type 2 is the master's echo: "echo <text>", sent back to slot 1 only.
    reply r = poll_until_contains(slots[1], "/received", "echo gamma");
    CHECK(r.body == "2 echo alpha\n2 echo beta\n2 echo gamma\n");
    CHECK(get(slots[0], "/received").body.empty());

    std::string log = get(slots[0], "/master-log").body;
    auto a = log.find("slot 1 type 2 alpha"), b = log.find("slot 1 type 2 beta"), c = log.find("slot 1 type 2 gamma");
    INFO("master log:\n", log);
    CHECK(a != std::string::npos);
    CHECK(b != std::string::npos);
    CHECK(c != std::string::npos);
    CHECK(a < b);
    CHECK(b < c);
    CHECK(log.find("failed") == std::string::npos);
  }

  TEST_CASE("a worker's message reaches the other worker through the master") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    CHECK(get(slots[0], "/send?msg=hello&to=1").status == 200);
    CHECK(get(slots[1], "/send?msg=hi&to=0").status == 200);
    CHECK(poll_until_contains(slots[1], "/received", "from 0").body == "14 from 0: hello\n");
    CHECK(poll_until_contains(slots[0], "/received", "from 1").body == "14 from 1: hi\n");
  }

  TEST_CASE("a worker's broadcast reaches every worker, the sender's own copy before it completes") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    reply r = get(slots[0], "/broadcast?msg=news");
    CHECK(r.status == 200);
    CHECK(r.body == "broadcast\n");
    // Completed: the master relayed it, and the sender's copy came first.
    CHECK(get(slots[0], "/received").body == "3 news\n");
    CHECK(poll_until_contains(slots[1], "/received", "news").body == "3 news\n");

    // The master's own broadcast reaches both as well.
    r = get(slots[1], "/master-broadcast?msg=from-above");
    CHECK(r.body == "queued for 2\n");
    CHECK(poll_until_contains(slots[0], "/received", "from-above").body == "3 news\n12 master: from-above\n");
    CHECK(poll_until_contains(slots[1], "/received", "from-above").body == "3 news\n12 master: from-above\n");
  }

  TEST_CASE("a worker can await its messages with receive() instead of a callback") {
    cluster_process cluster(program::messaging, 2, {"--await-messages"});
    auto slots = connect_each_slot(cluster.port());  // the first request starts each receive loop
    CHECK(get(slots[0], "/broadcast?msg=one").status == 200);
    CHECK(get(slots[1], "/send?msg=two").status == 200);
    CHECK(poll_until_contains(slots[0], "/received", "one").body == "3 one\n");
    CHECK(poll_until_contains(slots[1], "/received", "echo two").body == "3 one\n2 echo two\n");
  }

  // --- Limits and failures ---------------------------------------------------------

  TEST_CASE("a message larger than max_message is refused at the sender, one of exactly max_message passes") {
    cluster_process cluster(program::messaging, 2, {"--max-message", "4096"});
    auto slots = connect_each_slot(cluster.port());

    reply r = get(slots[0], "/oversized?bytes=4097");
    INFO("worker said:\n", r.body);
    CHECK(r.status == 200);
    auto lines = lines_of(r.body);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "try_send: too_large message larger than max_message");
    for (std::size_t i = 1; i < 4; ++i) {
      CHECK(lines[i].find(": too_large ") != std::string::npos);
      CHECK(lines[i].find("4097") != std::string::npos);  // says what was refused
      CHECK(lines[i].find("4096") != std::string::npos);  // and the limit
    }

    r = get(slots[0], "/oversized?bytes=4096");
    CHECK(r.body == "try_send: ok\nsend: ok\nrequest: ok\nbroadcast: ok\n");
    // The two one-way sends arrived whole; the refused ones never left.
    std::string log = get(slots[1], "/master-log").body;
    CHECK(count_of(log, "slot 0 type 15 4096 bytes") == 2);
    CHECK(log.find("4097") == std::string::npos);

    // The master's sends obey the same limit.
    r = get(slots[1], "/send-to-slot?slot=0&bytes=4097");
    CHECK(r.body == "send: too_large message larger than max_message\nbroadcast queued for 0\n");
    r = get(slots[1], "/send-to-slot?slot=0&bytes=4096");
    CHECK(r.body == "send: ok\nbroadcast queued for 2\n");
    CHECK(cluster.worker_pids().size() == 2);
    CHECK(get(slots[0], "/").status == 200);
  }

  TEST_CASE("a flooding worker meets backpressure, loses nothing, and does not starve the master") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());

    // A burst in one event-loop turn: try_send refuses past the bounded queue.
    reply r = get(slots[0], "/flood?n=5000&bytes=1000");
    long ok = -1, full = -1, other = -1;
    REQUIRE(std::sscanf(r.body.c_str(), "ok %ld full %ld other %ld", &ok, &full, &other) == 3);
    INFO("try_send burst: ", r.body);
    CHECK(ok > 0);
    CHECK(full > 0);
    CHECK(other == 0);
    CHECK(ok + full == 5000);
    CHECK(ok <= 1024);  // 1 MiB queued at most: 1024 messages of 1000 + 24 bytes

    // send() waits for room instead: everything goes, while the master keeps
    // answering the other worker promptly for as long as the flood lasts.
    constexpr long flood = 300000;  // 300 MB: long enough for pings to land in it
    http_client flooder(cluster.port());
    flooder.send(get_request("/flood?n=" + std::to_string(flood) + "&bytes=1000&mode=await"));
    std::atomic<bool> flood_done{false};
    std::optional<http_response> done;
    std::string flood_error;
    std::jthread reader([&] {
      try {
        done = flooder.read_response(120s);
      } catch (const std::exception& e) {
        flood_error = e.what();
      }
      flood_done = true;
    });
    int pings = 0;
    auto slowest = 0ms;
    for (; !flood_done && pings < 10000; ++pings) {
      const auto start = test_clock::now();
      reply pong = get(slots[1], "/request?timeout_ms=5000");
      slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - start));
      REQUIRE(pong.status == 200);
    }
    reader.join();
    INFO(pings, " requests answered during the flood, the slowest in ", slowest.count(), " ms");
    REQUIRE(flood_error.empty());
    REQUIRE(done);
    CHECK(done->body == "ok " + std::to_string(flood) + " full 0 other 0\n");
    // The stall once seen here (a request answered only when the flood
    // ended, ~0.7 s late) did not come back in 500 runs, pinned to one CPU
    // and not, on the tree that made these checks strict.
    CHECK(pings >= 1);  // the flood lasted long enough to tell
    CHECK(slowest < 1000ms);

    // Not one accepted message lost.
    const std::string expected = std::to_string(ok + flood) + "\n";
    CHECK(poll_until_contains(slots[1], "/flood-count", expected, 10s).body == expected);
    CHECK(cluster.worker_pids().size() == 2);
    CHECK(cluster.stderr_text().find("malformed") == std::string::npos);
  }

  TEST_CASE("the master's send to a slot whose worker just died fails with no_worker") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    pid_t victim = slots.pid[1];

    // The master SIGKILLs slot 1's worker; its on_worker_exit sends to slot 1.
    reply r = get(slots[0], "/send-to-dead?timeout_ms=5000");
    CHECK(r.status == 200);
    CHECK(r.body == "slot 1 pid " + std::to_string(victim) + ": no_worker no live worker in that slot\n");

    // A slot that does not exist is no_worker too.
    CHECK(get(slots[0], "/send-to-slot?slot=7").body == "send: no_worker no live worker in that slot\n");

    // Slot 1 gets a new worker, which can be sent to again.
    REQUIRE(wait_until([&] { return cluster.workers_ready(2, {victim}); }, 10s));
    CHECK(get(slots[0], "/send-to-slot?slot=1").body == "send: ok\n");
    auto fresh = connect_each_slot(cluster.port());
    CHECK(fresh.pid[1] != victim);
    CHECK(poll_until_contains(fresh[1], "/received", "direct").body == "13 direct\n");
  }

  TEST_CASE("a worker killed from outside is reported to on_worker_exit, where a send to it fails") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    pid_t victim = slots.pid[0];
    REQUIRE(::kill(victim, SIGKILL) == 0);
    reply r = poll_until_contains(slots[1], "/dead-sends", "pid " + std::to_string(victim));
    CHECK(r.body == "slot 0 pid " + std::to_string(victim) + ": no_worker no live worker in that slot\n");
    REQUIRE(wait_until([&] { return cluster.workers_ready(2, {victim}); }, 10s));
  }

  TEST_CASE("in on_worker_exit, this_master().slots() no longer lists the dead worker's slot") {
    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    pid_t victim = slots.pid[0];
    REQUIRE(::kill(victim, SIGKILL) == 0);
    const std::string line = "test: dead send slot 0 pid " + std::to_string(victim) + ": no_worker";
    REQUIRE(cluster.wait_for_log(line, 5s));
    std::string log = cluster.stderr_text();
    auto at = log.find(line);
    std::string reported = log.substr(at, log.find('\n', at) - at);
    // send() says no_worker for slot 0; slots() must agree and list slot 1 only.
    auto listed = reported.find("; slots():");
    REQUIRE(listed != std::string::npos);
    CHECK(reported.substr(listed) == "; slots(): 1");
  }

  TEST_CASE("a garbage frame from a worker gets that worker replaced, and the master serves on") {
    std::string kind;
    SUBCASE("bytes that are no frame") { kind = "text"; }
    SUBCASE("a truncated header") { kind = "short"; }
    SUBCASE("a wrong magic number") { kind = "magic"; }
    SUBCASE("an unknown kind") { kind = "kind"; }
    SUBCASE("a length past the end of the packet") { kind = "length"; }
    SUBCASE("a kind only the master sends") { kind = "reply"; }
    SUBCASE("a packet larger than the protocol allows") { kind = "huge"; }
    CAPTURE(kind);

    cluster_process cluster(program::messaging);
    auto slots = connect_each_slot(cluster.port());
    pid_t bad = slots.pid[0];
    reply r = get(slots[0], "/garbage?kind=" + kind);
    REQUIRE(r.status == 200);
    INFO("the bad worker said: ", r.body);

    const std::string verdict = "worker 0 (pid " + std::to_string(bad) + ") sent a malformed control message";
    CHECK(cluster.wait_for_log(verdict, 5s));
    CHECK(wait_until([&] { return !process_alive(bad); }, 5s));
    REQUIRE(wait_until([&] { return cluster.workers_ready(2, {bad}); }, 10s));
    CHECK(count_of(cluster.stderr_text(), "malformed control message") == 1);

    // The master lives on: the other worker was untouched, both slots serve,
    // and the new worker's channel works.
    CHECK(process_alive(cluster.pid()));
    CHECK(get(slots[1], "/").pid == slots.pid[1]);
    auto fresh = connect_each_slot(cluster.port());
    CHECK(fresh.pid[0] != bad);
    CHECK(fresh.pid[1] == slots.pid[1]);
    for (int s = 0; s < 2; ++s)
      CHECK(get(fresh[s], "/request").body ==
            "pong from master " + std::to_string(cluster.pid()) + " to slot " + std::to_string(s) + "\n");
  }

  // --- examples/counter ------------------------------------------------------------

  TEST_CASE("counter: after N sequential and M concurrent requests the next one answers N+M+1") {
    cluster_process cluster(program::counter);
    constexpr long n = 30;
    std::set<pid_t> answered_by;
    for (long i = 1; i <= n; ++i) {
      reply r = get(cluster.port(), "/");  // a new connection each: both workers serve
      REQUIRE(r.status == 200);
      CHECK(count_of_body(r.body) == i);
      answered_by.insert(r.pid);
    }
    CHECK(answered_by.size() == 2);

    constexpr int threads = 8, per_thread = 10;
    constexpr long m = threads * per_thread;
    std::mutex mutex;
    std::vector<long> counts;
    std::vector<std::string> errors;
    {
      std::vector<std::jthread> clients;
      for (int t = 0; t < threads; ++t)
        clients.emplace_back([&, t] {
          try {
            // Half the threads keep one connection, half open one per request.
            std::unique_ptr<http_client> kept;
            for (int i = 0; i < per_thread; ++i) {
              std::unique_ptr<http_client> fresh;
              http_client& c = t % 2 ? (kept ? *kept : *(kept = std::make_unique<http_client>(cluster.port())))
                                     : *(fresh = std::make_unique<http_client>(cluster.port()));
              c.send(get_request("/"));
              http_response res = c.read_response(5s);
              long v = -1;
              if (res.status == 200 && res.body.size() >= 2)
                std::from_chars(res.body.data(), res.body.data() + res.body.size() - 1, v);
              std::lock_guard lock(mutex);
              counts.push_back(v);
            }
          } catch (const std::exception& e) {
            std::lock_guard lock(mutex);
            errors.push_back(e.what());
          }
        });
    }
    REQUIRE(errors.empty());
    std::sort(counts.begin(), counts.end());
    std::vector<long> expected;
    for (long k = n + 1; k <= n + m; ++k) expected.push_back(k);
    CHECK(counts == expected);  // every count given once: no lost update

    reply next = get(cluster.port(), "/");
    CHECK(next.body == std::to_string(n + m + 1) + "\n");
  }

  TEST_CASE("counter: after kill -9 of a worker the count continues where it was") {
    cluster_process cluster(program::counter);
    long last = 0;
    std::set<pid_t> pids;
    for (int i = 0; i < 200 && (pids.size() < 2 || last < 10); ++i) {
      reply r = get(cluster.port(), "/");
      CHECK(count_of_body(r.body) == ++last);
      pids.insert(r.pid);
    }
    REQUIRE(pids.size() == 2);
    pid_t victim = *pids.begin();
    REQUIRE(::kill(victim, SIGKILL) == 0);
    REQUIRE(wait_until([&] { return cluster.workers_ready(2, {victim}); }, 10s));

    // Both workers, the new one included, continue the same count.
    std::set<pid_t> after;
    for (int i = 0; i < 200 && after.size() < 2; ++i) {
      reply r = get(cluster.port(), "/");
      CHECK(count_of_body(r.body) == ++last);
      CHECK(r.pid != victim);
      after.insert(r.pid);
    }
    CHECK(after.size() == 2);
  }

  TEST_CASE("counter: a broadcast reaches both workers' /last, and /master answers the master's text") {
    cluster_process cluster(program::counter);
    // Before any broadcast /last is empty on both workers.
    std::set<pid_t> empty_on;
    for (int i = 0; i < 200 && empty_on.size() < 2; ++i) {
      reply r = get(cluster.port(), "/last");
      CHECK(r.status == 200);
      CHECK(r.body.empty());
      empty_on.insert(r.pid);
    }
    CHECK(empty_on.size() == 2);

    reply r = get(cluster.port(), "/broadcast?msg=hello%20cluster+wide");
    CHECK(r.status == 200);
    CHECK(r.body == "broadcast\n");
    std::set<pid_t> seen_on;
    bool all_right = wait_until(
        [&] {
          reply l = get(cluster.port(), "/last");
          if (l.body == "hello cluster wide") seen_on.insert(l.pid);
          return seen_on.size() == 2;
        },
        5s, 1ms);
    CHECK(all_right);

    r = get(cluster.port(), "/master");
    CHECK(r.status == 200);
    CHECK(r.body.starts_with("master pid " + std::to_string(cluster.pid()) + " uptime_ms "));
    CHECK(r.body.find("asked_by_slot ") != std::string::npos);
  }

  // --- The admin endpoint -------------------------------------------------------------

  TEST_CASE("admin /metrics is valid Prometheus text that counts the requests answered") {
    counter_with_admin c;
    CHECK(c.cluster.admin_url().starts_with("http://127.0.0.1:"));
    CHECK(c.cluster.admin_port() != c.cluster.port());

    constexpr long sent = 25;
    for (long i = 0; i < sent; ++i) REQUIRE(get(c.cluster.port(), "/").status == 200);
    for (int i = 0; i < 3; ++i) REQUIRE(c.admin("/status").status == 200);  // not counted: the master answers

    reply r = c.admin("/metrics");
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    auto facts = run_checker("metrics", r.body);
    CHECK(fact(facts, "requests_total") == sent);
    CHECK(fact(facts, "requests_slot_0") + fact(facts, "requests_slot_1") == sent);
    CHECK(fact(facts, "workers") == 2);
    CHECK(fact(facts, "restarts_total") == 0);
    CHECK(facts["process_cpu_seconds_samples"] == "3 master,worker,worker");
    CHECK(facts["process_resident_memory_bytes_samples"] == "3 master,worker,worker");

    // Prometheus's own linter too (Debian package prometheus: .ci/install-deps --tests).
    REQUIRE_MESSAGE(::access(promtool, X_OK) == 0, "needs ", promtool, ": bash .ci/install-deps --tests");
    temp_path data("metrics", ".txt");
    data.write(r.body);
    finished_program p = run_program({"/bin/sh", "-c", std::string(promtool) + " check metrics < " + data.path()}, 30s);
    INFO("promtool said:\n", p.out, p.err);
    CHECK(exit_code(p.status) == 0);
  }

  TEST_CASE("admin /metrics: histogram, status classes, connections and bytes count what was served") {
    counter_with_admin c;
    constexpr long sent = 12;
    const std::size_t request_bytes = get_request("/").size();
    for (long i = 0; i < sent; ++i) REQUIRE(get(c.cluster.port(), "/").status == 200);  // a connection each
    http_client kept(c.cluster.port());  // open while the metrics are read
    REQUIRE(get(kept, "/").status == 200);

    std::map<std::string, std::string> facts;
    // Closing is seen by the worker a little after the client closed.
    wait_until([&] { return fact(facts = c.metrics(), "cluster_open_connections") == 1; }, 3s, 20ms);
    CHECK(fact(facts, "requests_total") == sent + 1);
    CHECK(fact(facts, "histogram_count") == sent + 1);
    CHECK(fact(facts, "responses_2xx") == sent + 1);
    CHECK(fact(facts, "cluster_connections_total") == sent + 1);
    CHECK(fact(facts, "cluster_open_connections") == 1);
    CHECK(fact(facts, "cluster_received_bytes_total") == static_cast<long>(request_bytes) * (sent + 1));
    CHECK(fact(facts, "cluster_sent_bytes_total") > 100 * (sent + 1));  // at least a status line and headers each
  }

  TEST_CASE("admin /metrics counts the answers the server writes itself: 400, 408, 413, 414, 431, 501, 505") {
    cluster_process cluster{program::counter, 1,
                            {"--admin", "127.0.0.1:0", "--header-timeout", "300", "--max-body", "10",
                             "--max-target", "64", "--max-header-bytes", "512"}};
    auto metrics = [&] {
      reply r = get(cluster.admin_port(), "/metrics");
      REQUIRE(r.status == 200);
      return run_checker("metrics", r.body);
    };
    const std::pair<std::string, int> refused[] = {
        {"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: x\r\n", 408},  // the header block never ends
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", 413},
        {"GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(600, 'b') + "\r\n\r\n", 431},
        {"BREW /pot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
    };
    for (const auto& [bytes, status] : refused) {
      CAPTURE(bytes);
      http_client client(cluster.port());
      client.send(bytes);
      CHECK(client.read_response(3s).status == status);
    }
    std::map<std::string, std::string> facts;
    // A worker records an answer just after writing it.
    wait_until([&] { return fact(facts = metrics(), "requests_total") == 7; }, 3s, 20ms);
    CHECK(fact(facts, "requests_total") == 7);
    CHECK(fact(facts, "histogram_count") == 7);
    CHECK(fact(facts, "responses_2xx") == 0);
    CHECK(fact(facts, "responses_4xx") == 5);
    CHECK(fact(facts, "responses_5xx") == 2);
  }

  TEST_CASE("admin: the master stops cleanly while an admin client keeps its connection open") {
    counter_with_admin c;
    http_client kept(c.cluster.admin_port());
    REQUIRE(get(kept, "/status").status == 200);  // then idle, kept alive
    c.cluster.signal(SIGTERM);
    auto status = c.cluster.wait_exit(15s);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);
  }

  TEST_CASE("admin: after a worker is killed, restarts rise and /status shows the new pid") {
    counter_with_admin c;
    constexpr long sent = 10;
    for (long i = 0; i < sent; ++i) REQUIRE(get(c.cluster.port(), "/").status == 200);

    auto before = c.status();
    CHECK(fact(before, "master_pid") == c.cluster.pid());
    CHECK(before["master_state"] == "running");
    CHECK(fact(before, "slots") == 2);
    CHECK(fact(before, "master_workers") == 2);
    pid_t victim = static_cast<pid_t>(fact(before, "slot_0_pid"));
    auto workers = c.cluster.worker_pids();
    CHECK(std::ranges::find(workers, victim) != workers.end());
    CHECK(fact(before, "slot_0_restarts") == 0);
    CHECK(fact(c.metrics(), "restarts_slot_0") == 0);

    REQUIRE(::kill(victim, SIGKILL) == 0);
    std::map<std::string, std::string> after;
    bool replaced = wait_until(
        [&] {
          after = c.status();
          return fact(after, "slot_0_pid") != victim && fact(after, "slot_0_pid") > 0 &&
                 fact(after, "slot_0_ready") == 1;
        },
        10s, 20ms);
    REQUIRE(replaced);
    CHECK(fact(after, "slot_0_restarts") == 1);
    CHECK(fact(after, "slot_1_restarts") == 0);
    CHECK(fact(after, "slot_1_pid") == fact(before, "slot_1_pid"));
    workers = c.cluster.worker_pids();
    CHECK(std::ranges::find(workers, static_cast<pid_t>(fact(after, "slot_0_pid"))) != workers.end());

    auto metrics = c.metrics();
    CHECK(fact(metrics, "restarts_slot_0") == 1);
    CHECK(fact(metrics, "restarts_total") == 1);
    CHECK(fact(metrics, "workers") == 2);
    // The dead worker's requests still count: every generation of the slot.
    CHECK(fact(metrics, "requests_total") == sent);
    CHECK(fact(after, "slot_0_requests") + fact(after, "slot_1_requests") == sent);
  }

  TEST_CASE("admin /status?format=text is a table: a header line and one line per slot") {
    counter_with_admin c;
    reply r = c.admin("/status?format=text");
    REQUIRE(r.status == 200);
    CHECK(r.content_type.starts_with("text/plain"));
    INFO("table:\n", r.body);
    std::vector<std::string> rows;
    for (const std::string& line : lines_of(r.body))
      if (!line.empty()) rows.push_back(line);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].starts_with("master pid " + std::to_string(c.cluster.pid()) + " "));
    std::istringstream header(rows[1]);
    std::vector<std::string> columns;
    for (std::string w; header >> w;) columns.push_back(w);
    REQUIRE(columns.size() >= 4);
    CHECK(columns[0] == "slot");
    CHECK(columns[1] == "pid");
    CHECK(columns[2] == "state");
    std::set<pid_t> listed;
    for (int s = 0; s < 2; ++s) {
      std::istringstream row(rows[2 + static_cast<std::size_t>(s)]);
      int slot = -1;
      pid_t pid = -1;
      std::string state;
      row >> slot >> pid >> state;
      CHECK(slot == s);
      CHECK(state == "ready");
      listed.insert(pid);
      // Aligned: every row as long as the header.
      CHECK(rows[2 + static_cast<std::size_t>(s)].size() == rows[1].size());
    }
    auto workers = c.cluster.worker_pids();
    CHECK(listed == std::set<pid_t>(workers.begin(), workers.end()));
  }

  TEST_CASE("the service port does not serve /metrics: the counter's handler answers there") {
    counter_with_admin c;
    reply r = get(c.cluster.port(), "/metrics");
    CHECK(r.status == 200);
    CHECK(count_of_body(r.body) == 1);
    CHECK(r.content_type.find("version=0.0.4") == std::string::npos);
    CHECK(get(c.cluster.port(), "/status").body == "2\n");
  }

  TEST_CASE("garbage sent to the admin port gets 400 and the admin endpoint keeps answering") {
    counter_with_admin c;
    const std::uint16_t admin = c.cluster.admin_port();
    std::string binary("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);  // a TLS ClientHello's start
    binary += " not http\r\n\r\n";
    for (const std::string& garbage :
         {std::string("GARBAGE\r\n\r\n"), std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n"),
          std::string("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), binary}) {
      CAPTURE(garbage);
      http_client client(admin);
      client.send(garbage);
      http_response res = client.read_response(3s);
      CHECK(res.status == 400);
      CHECK(client.server_closed(3s));
    }
    {
      // The workers' limits apply: a header block over 16 KiB, a target over 8 KiB.
      http_client client(admin);
      client.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
      CHECK(client.read_response(3s).status == 431);
      http_client other(admin);
      other.send(get_request("/" + std::string(9000, 'a')));
      CHECK(other.read_response(3s).status == 414);
    }
    {
      // A request without Host is refused too (RFC 9112 §3.2).
      http_client client(admin);
      client.send("GET /metrics HTTP/1.1\r\n\r\n");
      CHECK(client.read_response(3s).status == 400);
    }
    {
      // Only GET and HEAD.
      http_client client(admin);
      client.send(post_request("/metrics", "x"));
      http_response res = client.read_response(3s);
      CHECK(res.status == 405);
      CHECK(res.header("Allow") == "GET, HEAD");
    }
    {
      // A client that goes away mid-request harms nothing.
      http_client client(admin);
      client.send("GET /met");
    }
    reply r = c.admin("/metrics");
    CHECK(r.status == 200);
    CHECK(r.body.find("cluster_workers 2\n") != std::string::npos);
    CHECK(c.admin("/nope").status == 404);
    {
      http_client client(admin);
      client.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
      http_response head = client.read_response(3s, /*head=*/true);
      CHECK(head.status == 200);
      CHECK(head.body.empty());
      CHECK(head.header("Content-Length").value_or("0") != "0");  // the size of the body it would send
    }
    CHECK(process_alive(c.cluster.pid()));
    CHECK(get(c.cluster.port(), "/").status == 200);
  }

  TEST_CASE("--admin unix:PATH serves /status on a socket only its owner may use") {
    temp_path socket_path("admin", ".sock");
    {
      cluster_process cluster(program::counter, 2, {"--admin", "unix:" + socket_path.path()});
      CHECK(cluster.admin_url() == "unix:" + socket_path.path());
      struct stat st {};
      REQUIRE(::lstat(socket_path.path().c_str(), &st) == 0);
      CHECK(S_ISSOCK(st.st_mode));
      CHECK((st.st_mode & 07777) == 0600);

      http_client client(unix_socket{socket_path.path()});
      reply r = get(client, "/status");
      CHECK(r.status == 200);
      CHECK(r.content_type == "application/json");
      auto facts = run_checker("status", r.body);
      CHECK(fact(facts, "master_pid") == cluster.pid());
      CHECK(fact(facts, "slots") == 2);
      r = get(client, "/metrics");  // the same connection, kept alive
      CHECK(r.status == 200);
      CHECK(r.body.find("cluster_workers 2\n") != std::string::npos);

      // A graceful stop removes the socket.
      cluster.signal(SIGTERM);
      auto status = cluster.wait_exit(15s);
      REQUIRE(status);
      CHECK(exit_code(status) == 0);
    }
    struct stat st {};
    CHECK(::lstat(socket_path.path().c_str(), &st) != 0);
  }

  TEST_CASE("a bad --admin value is refused before starting, naming --admin") {
    for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http", ":8080", "unix:"}) {
      CAPTURE(bad);
      auto p =
          run_program({path_of(program::counter), "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--admin", bad}, 10s);
      CHECK(exit_code(p.status) == 2);
      CHECK(p.err.find("--admin") != std::string::npos);
      CHECK(p.out.find("listening") == std::string::npos);
    }
  }
}
