// Hostile clients over real loopback sockets: what an attacker can send to
// the examples (hello, echo) and to the master's admin endpoint, with small
// limits and timeouts from the command line so that every limit is reached in
// milliseconds. After each scenario the cluster must be unharmed: the master
// and the same workers alive (no respawn, the restart counter unchanged), no
// process burning CPU once the clients are gone, a normal request answered;
// and at the end a SIGTERM stops it with exit code 0.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

using namespace test_support;

namespace {

using ms = std::chrono::milliseconds;
ms since(test_clock::time_point t) { return std::chrono::duration_cast<ms>(test_clock::now() - t); }

// The limits every scenario runs under, small so that reaching them is fast.
constexpr std::size_t max_body = 1000;
// Above the parser's initial 2 KiB buffer, so that a header block over the
// limit makes the buffer grow to it (issue 9's busy loop after a 431 needs
// that); the refusals run under a limit below it too (other buffer states).
constexpr std::size_t max_header_bytes = 4096;
constexpr std::size_t small_max_header_bytes = 1024;
constexpr std::size_t max_target = 256;
constexpr ms header_timeout{500};
constexpr ms body_timeout{500};
constexpr ms write_timeout{500};

std::vector<std::string> small_limits() {
  const std::pair<const char*, std::string> flags[] = {
      {"--admin", "127.0.0.1:0"},
      {"--max-body", std::to_string(max_body)},
      {"--max-header-bytes", std::to_string(max_header_bytes)},
      {"--max-headers", "16"},
      {"--max-target", std::to_string(max_target)},
      {"--header-timeout", std::to_string(header_timeout.count())},
      {"--body-timeout", std::to_string(body_timeout.count())},
      {"--idle-timeout", "2000"},
      {"--write-timeout", std::to_string(write_timeout.count())},
      {"--shutdown-timeout", "5000"},
  };
  std::vector<std::string> argv;
  for (const auto& [name, value] : flags) argv.insert(argv.end(), {name, value});
  return argv;
}

/// small_limits() with flag `name` set to `value` instead.
std::vector<std::string> small_limits_with(const std::string& name, const std::string& value) {
  auto flags = small_limits();
  auto at = std::ranges::find(flags, name);
  if (at != flags.end())
    *(at + 1) = value;
  else
    flags.insert(flags.end(), {name, value});
  return flags;
}

/// Sends `bytes` as far as the server takes them: a server that answered and
/// closed may reset the connection under the sender, which is its right.
void send_regardless(http_client& client, std::string_view bytes) {
  try {
    client.send(bytes, 10s);
  } catch (const std::system_error&) {
    // EPIPE / ECONNRESET: the server closed; what it answered is still readable.
  }
}

void shutdown_regardless(http_client& client) {
  try {
    client.shutdown_write();
  } catch (const std::system_error&) {
    // ENOTCONN: the server reset the connection already.
  }
}

/// Sum of the samples of the Prometheus family `name` in `text`.
std::optional<double> metric_sum(std::string_view text, std::string_view name) {
  std::optional<double> sum;
  for (std::size_t at = 0; at < text.size();) {
    auto end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (!line.starts_with(name) || line.size() <= name.size()) continue;
    if (line[name.size()] != '{' && line[name.size()] != ' ') continue;
    auto space = line.rfind(' ');
    double value = 0;
    auto [ptr, ec] = std::from_chars(line.data() + space + 1, line.data() + line.size(), value);
    if (ec != std::errc{}) continue;
    sum = sum.value_or(0) + value;
  }
  return sum;
}

/// A GET on its own connection, answered within `timeout`.
http_response get(std::uint16_t port, std::string_view target = "/", ms timeout = 3s) {
  http_client client(port);
  client.send("GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  return client.read_response(timeout);
}

std::size_t lines_in(std::string_view text) { return static_cast<std::size_t>(std::ranges::count(text, '\n')); }

/// Share of one core that each of `pids` used over `window` (utime + stime
/// from /proc); nothing for a process that vanished meanwhile.
std::vector<std::optional<double>> cpu_shares(const std::vector<pid_t>& pids, ms window) {
  std::vector<std::optional<unsigned long long>> before;
  for (pid_t p : pids) {
    auto st = read_process_status(p);
    before.push_back(st ? std::optional(st->cpu_ticks) : std::nullopt);
  }
  const auto start = test_clock::now();
  std::this_thread::sleep_for(window);  // the measurement window, not a synchronisation
  const double seconds = std::chrono::duration<double>(test_clock::now() - start).count();
  const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::vector<std::optional<double>> shares;
  for (std::size_t i = 0; i < pids.size(); ++i) {
    auto st = read_process_status(pids[i]);
    if (!st || !before[i]) {
      shares.emplace_back();
      continue;
    }
    shares.push_back(static_cast<double>(st->cpu_ticks - *before[i]) / ticks_per_second / seconds);
  }
  return shares;
}

/// Busy: more than a tenth of a core while nothing is asked of it.
constexpr double busy_share = 0.10;

/// A cluster of one worker with an admin endpoint, and what it looked like
/// when it became ready, to tell afterwards whether anything died.
class target_cluster {
 public:
  explicit target_cluster(const std::string& binary, std::vector<std::string> flags = small_limits(),
                          std::vector<std::string> launcher = {})
      : cluster_(binary, 1, std::move(flags), {}, std::move(launcher)) {
    auto pids = cluster_.worker_pids();
    workers_ = {pids.begin(), pids.end()};
    REQUIRE(workers_.size() == 1);
    REQUIRE(restarts() == 0);
  }

  cluster_process& cluster() { return cluster_; }
  std::uint16_t port() const { return cluster_.port(); }
  std::uint16_t admin_port() const { return cluster_.admin_port(); }
  pid_t worker() const { return *workers_.begin(); }

  /// cluster_worker_restarts_total from the admin endpoint, summed over the slots.
  double restarts() const { return metric("cluster_worker_restarts_total"); }

  double metric(std::string_view name) const {
    http_response res = get(admin_port(), "/metrics");
    REQUIRE(res.status == 200);
    auto value = metric_sum(res.body, name);
    REQUIRE_MESSAGE(value, "no ", name, " in /metrics:\n", res.body);
    return *value;
  }

  /// The checks after every scenario: nothing died or was replaced, nothing
  /// spins now that the clients are gone, a normal request is answered.
  /// False (the failures reported) when the cluster is harmed.
  [[nodiscard]] bool expect_unharmed(std::string_view after) {
    INFO("after: ", after);
    // The idle window first: it also gives a process that corrupted its heap
    // time to abort before the liveness checks look.
    std::vector<pid_t> watched{cluster_.pid()};
    watched.insert(watched.end(), workers_.begin(), workers_.end());
    // A process may still be finishing what the clients left it (slowly
    // under the sanitizers); one that spins never settles. Up to six windows.
    auto settled = [&](const std::vector<std::optional<double>>& s) {
      return std::ranges::all_of(s, [](const std::optional<double>& x) { return x && *x < busy_share; });
    };
    auto shares = cpu_shares(watched, 500ms);
    for (int window = 1; window < 6 && !settled(shares) && process_alive(cluster_.pid()); ++window)
      shares = cpu_shares(watched, 500ms);
    if (!process_alive(cluster_.pid())) {
      FAIL_CHECK("the master died");
      return false;
    }
    auto now = cluster_.worker_pids();
    if (std::set<pid_t>(now.begin(), now.end()) != workers_) {
      FAIL_CHECK("a worker died or was replaced");
      return false;
    }
    bool unharmed = true;
    for (std::size_t i = 0; i < watched.size(); ++i) {
      bool idle = shares[i] && *shares[i] < busy_share;
      CHECK_MESSAGE(idle, std::string(i == 0 ? "the master" : "a worker"), " (pid ", watched[i], ") used ",
                    shares[i].value_or(-1) * 100, "% of a core while idle");
      unharmed = unharmed && idle;
    }
    try {
      http_response res = get(port());
      CHECK(res.status == 200);
      unharmed = unharmed && res.status == 200;
      CHECK(restarts() == 0);
    } catch (const std::exception& e) {
      FAIL_CHECK("a normal request failed: ", e.what());
      return false;
    }
    return unharmed;
  }

  /// SIGTERM: exit code 0 within a bounded time, and no process left.
  void expect_graceful_stop() {
    cluster_.signal(SIGTERM);
    auto status = cluster_.wait_exit(15s);
    REQUIRE_MESSAGE(status, "the master did not exit within 15 s of SIGTERM");
    CHECK(exit_code(status) == 0);
    CHECK(wait_until([&] { return group_members(cluster_.pid()).empty(); }, 3s));
  }

 private:
  cluster_process cluster_;
  std::set<pid_t> workers_;
};

/// `count` connections to `port`, each having sent `bytes`.
std::vector<std::unique_ptr<http_client>> open_clients(std::uint16_t port, int count, const std::string& bytes) {
  std::vector<std::unique_ptr<http_client>> clients;
  for (int i = 0; i < count; ++i) {
    clients.push_back(std::make_unique<http_client>(port));
    clients.back()->send(bytes);
  }
  return clients;
}

/// 90 connections to the admin endpoint of a master limited to 64
/// descriptors: more than its ~50 free ones, fewer than those and the admin
/// socket's backlog (64) together, so that every connect succeeds.
std::vector<std::unique_ptr<http_client>> flood_admin(std::uint16_t admin_port) {
  return open_clients(admin_port, 90, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

const std::vector<std::string> at_most_64_descriptors = with_descriptor_limit(64);

/// Limits for the descriptor exhaustion tests: connections that got their
/// answer stay open for the whole test, holding their descriptors.
std::vector<std::string> exhaustion_flags() { return small_limits_with("--idle-timeout", "30000"); }

/// A request the server refuses itself, and how: `status`, answered from
/// `head` alone (before any tail) when `answered_before_tail`.
struct refusal {
  std::string what;
  std::string head;
  int status;
  bool answered_before_tail = false;
};

std::vector<refusal> refusals() {
  return {
      {"400: invalid request line", "GET  / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400},
      {"400: HTTP/1.1 without Host", "POST / HTTP/1.1\r\nContent-Length: 900\r\n\r\n", 400},
      {"400: invalid chunk size", request("POST", "/", "Transfer-Encoding: chunked\r\n", "zz\r\n"), 400},
      {"408: header block not finished within header_timeout", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", 408,
       true},
      {"408: body stalled longer than body_timeout", request("POST", "/", "Content-Length: 900\r\n", "0123456789"), 408,
       true},
      {"413: Content-Length over max_body", request("POST", "/", "Content-Length: 100000\r\n"), 413},
      {"414: request-target over max_target", request("GET", "/" + std::string(max_target + 50, 'a')), 414},
      // The tail continues the field value: one field of ~64 KiB, as in issue 9.
      {"431: header block over max_header_bytes", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", 431},
      {"431: more fields than max_headers",
       request("GET", "/",
               "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\nK: 11\r\nL: 12\r\n"
               "M: 13\r\nN: 14\r\nO: 15\r\nP: 16\r\nQ: 17\r\n"),
       431},
      {"501: unknown transfer coding", request("POST", "/", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501},
      {"505: HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505},
  };
}

/// ~64 KiB of further bytes after a refused request.
const std::string& tail() {
  static const std::string t(64 * 1024, 'v');
  return t;
}

/// Runs `scenario`, turning an exception (a connection reset before the
/// answer, a timeout) into a failed check, so that the next case still runs.
template <class Scenario>
void attempt(Scenario scenario) {
  try {
    scenario();
  } catch (const std::exception& e) {
    FAIL_CHECK("the client failed: ", e.what());
  }
}

/// Sends `r` and a tail, half-closes if asked, and checks the refusal: its
/// status, "Connection: close", and the server closing the connection.
void provoke(std::uint16_t port, const refusal& r, bool half_close) {
  http_client client(port);
  client.send(r.head);
  std::optional<http_response> res;
  if (r.answered_before_tail) res = client.read_response(3s);
  send_regardless(client, tail());
  if (half_close) shutdown_regardless(client);
  if (!res) res = client.read_response(3s);
  CHECK(res->status == r.status);
  CHECK(res->header("Connection") == "close");
  CHECK_MESSAGE(client.drain_until_closed(5s), "the server kept the connection open after ", r.status);
}

/// Each refusal on a cluster of its own, so that one that kills says so
/// without hiding what the others do. The variants without a half-close run
/// with a header limit below the parser's initial buffer, those with one
/// above it: two buffer states for the same time.
void every_refusal_with_a_tail(bool admin, bool half_close) {
  const std::size_t header_limit = half_close ? max_header_bytes : small_max_header_bytes;
  for (const refusal& r : refusals()) {
    CAPTURE(r.what);
    CAPTURE(header_limit);
    target_cluster target(path_of(program::echo), small_limits_with("--max-header-bytes", std::to_string(header_limit)));
    attempt([&] { provoke(admin ? target.admin_port() : target.port(), r, half_close); });
    if (target.expect_unharmed(r.what)) target.expect_graceful_stop();
  }
}

/// A 2 MB upload to a server whose max_body is 1000, framed by
/// Content-Length or chunked, with or without "Expect: 100-continue".
void oversized_upload(std::uint16_t port, bool chunked, bool expect) {
  constexpr std::size_t upload = 2'000'000;
  std::string fields = expect ? "Expect: 100-continue\r\n" : "";
  fields += chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: " + std::to_string(upload) + "\r\n";
  http_client client(port);
  client.send(request("POST", "/", fields));
  std::optional<http_response> res;
  if (expect) {
    // Refused from its length: the final status instead of 100 Continue.
    // Chunked, the size is unknown: 100 Continue, then 413 as chunks arrive.
    res = client.read_response(3s);
    if (chunked) {
      CHECK(res->status == 100);
      res.reset();
    }
  }
  std::string body;
  if (chunked) {
    const std::string piece(64 * 1024, 'u');
    for (std::size_t sent = 0; sent < upload; sent += piece.size()) body += chunk(piece);
    body += "0\r\n\r\n";
  } else {
    body.assign(upload, 'u');
  }
  send_regardless(client, body);  // a client that sends its body whatever the server said
  if (!res) res = client.read_response(5s);
  CHECK(res->status == 413);
  CHECK(res->header("Connection") == "close");
  CHECK(client.drain_until_closed(5s));
}

/// Each case on a cluster of its own (a sync and a streaming handler, with
/// and without Expect), so that one that kills hides nothing of the others.
void oversized_uploads(bool chunked) {
  for (const std::string& binary : {path_of(program::hello), path_of(program::echo)}) {
    CAPTURE(binary);
    for (bool expect : {false, true}) {
      CAPTURE(expect);
      target_cluster target(binary);
      attempt([&] { oversized_upload(target.port(), chunked, expect); });
      if (target.expect_unharmed(expect ? "an oversized upload with Expect: 100-continue"
                                        : "an oversized upload without Expect"))
        target.expect_graceful_stop();
    }
  }
}

}  // namespace

TEST_SUITE("hostile") {
  // --- Oversized bodies ------------------------------------------------------

  TEST_CASE(
      "an upload over max_body by Content-Length, sent whole with or without Expect, gets 413 and harms nothing") {
    oversized_uploads(/*chunked=*/false);
  }

  TEST_CASE("a chunked upload growing past max_body, sent whole with or without Expect, gets 413 and harms nothing") {
    oversized_uploads(/*chunked=*/true);
  }

  // --- Every refusal, followed by a tail -----------------------------------------

  TEST_CASE("every 4xx/5xx a worker writes itself, followed by a 64 KiB tail, closes that connection only") {
    every_refusal_with_a_tail(/*admin=*/false, /*half_close=*/false);
  }

  TEST_CASE("every 4xx/5xx a worker writes itself, followed by a tail and a half-close, closes that connection only") {
    every_refusal_with_a_tail(/*admin=*/false, /*half_close=*/true);
  }

  TEST_CASE("every 4xx/5xx the admin endpoint writes itself, followed by a 64 KiB tail: the master lives on") {
    every_refusal_with_a_tail(/*admin=*/true, /*half_close=*/false);
  }

  TEST_CASE(
      "every 4xx/5xx the admin endpoint writes itself, followed by a tail and a half-close: the master lives on") {
    every_refusal_with_a_tail(/*admin=*/true, /*half_close=*/true);
  }

  // --- Pipelined garbage -------------------------------------------------------------

  TEST_CASE("garbage pipelined after a valid request: the request is answered, then 400, then the close") {
    for (const std::string& binary : {path_of(program::hello), path_of(program::echo)}) {
      CAPTURE(binary);
      target_cluster target(binary);
      for (bool admin : {false, true}) {
        CAPTURE(admin);
        http_client client(admin ? target.admin_port() : target.port());
        std::string garbage("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 24);
        client.send(request("GET", admin ? "/metrics" : "/") + garbage);
        send_regardless(client, std::string(20 * 1024, '\x7f'));
        CHECK(client.read_response(3s).status == 200);
        http_response refused = client.read_response(3s);
        CHECK(refused.status == 400);
        CHECK(refused.header("Connection") == "close");
        CHECK(client.drain_until_closed(5s));
        REQUIRE(target.expect_unharmed(admin ? "garbage after a request to the admin endpoint"
                                             : "garbage after a request"));
      }
      target.expect_graceful_stop();
    }
  }

  // --- Slow clients --------------------------------------------------------------------

  TEST_CASE("slowloris: a header block trickled byte by byte gets 408 at header_timeout, then the close") {
    target_cluster target(path_of(program::echo));
    for (bool admin : {false, true}) {
      CAPTURE(admin);
      http_client client(admin ? target.admin_port() : target.port());
      const std::string head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
      const auto start = test_clock::now();
      for (std::size_t sent = 0; sent < 500 && !client.has_data(20ms); ++sent)
        send_regardless(client, sent < head.size() ? head.substr(sent, 1) : "a");
      http_response res = client.read_response(3s);
      CHECK(res.status == 408);
      CHECK(res.header("Connection") == "close");
      CHECK(since(start) >= header_timeout - 50ms);
      CHECK(since(start) < header_timeout + 2s);
      CHECK(client.drain_until_closed(3s));
      REQUIRE(target.expect_unharmed(admin ? "slowloris on the admin endpoint" : "slowloris"));
    }
    target.expect_graceful_stop();
  }

  TEST_CASE("a header block still arriving when SIGTERM comes gets 408 at once: the stop is quick and exits 0") {
    // The header timeout is far beyond the stop deadline: only the drain can
    // end these connections in time.
    auto flags = small_limits_with("--header-timeout", "60000");
    flags = [&] {
      auto at = std::ranges::find(flags, "--shutdown-timeout");
      *(at + 1) = "4000";
      return flags;
    }();
    target_cluster target(path_of(program::echo), flags);
    auto clients = open_clients(target.port(), 3, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    // Each partial header block has reached the worker.
    REQUIRE(wait_until([&] { return target.metric("cluster_received_bytes_total") >= 3 * 40; }, 3s, 20ms));
    const auto start = test_clock::now();
    target.cluster().signal(SIGTERM);
    for (auto& c : clients) {
      http_response res = c->read_response(3s);
      CHECK(res.status == 408);
      CHECK(res.header("Connection") == "close");
    }
    auto status = target.cluster().wait_exit(10s);
    REQUIRE(status);
    CHECK(exit_code(status) == 0);  // nothing had to be killed at the deadline
    CHECK(since(start) < 3s);
  }

  TEST_CASE("a body that stalls gets 408 after body_timeout, then the close") {
    target_cluster target(path_of(program::echo));
    for (bool admin : {false, true}) {
      CAPTURE(admin);
      http_client client(admin ? target.admin_port() : target.port());
      const auto start = test_clock::now();
      client.send(request("POST", "/", "Content-Length: 500\r\n", std::string(100, 'b')));
      http_response res = client.read_response(3s);
      CHECK(res.status == 408);
      CHECK(res.header("Connection") == "close");
      CHECK(since(start) >= body_timeout - 50ms);
      CHECK(client.drain_until_closed(3s));
      REQUIRE(target.expect_unharmed(admin ? "a stalled body to the admin endpoint" : "a stalled body"));
    }
    target.expect_graceful_stop();
  }

  TEST_CASE("a client that never reads a large response is disconnected after write_timeout") {
    target_cluster target(path_of(program::echo), small_limits_with("--max-body", std::to_string(16 << 20)));
    const std::string body(4 << 20, 'r');
    {
      http_client stuck(target.port(), http_client::default_timeout, 16 * 1024);
      stuck.send(post_request("/", body), 10s);
      const auto start = test_clock::now();
      // The worker reads the whole upload, then its write stalls; the open
      // connection gauge says when it gave up.
      CHECK(wait_until([&] { return target.metric("cluster_open_connections") == 0; }, 10s, 50ms));
      CHECK(since(start) < write_timeout + 5s);
      std::size_t received = 0;
      CHECK(stuck.drain_until_closed(5s, &received));
      CHECK(received < body.size());
    }
    REQUIRE(target.expect_unharmed("a client that never reads"));
    target.expect_graceful_stop();
  }

  // --- Floods ---------------------------------------------------------------------------

  TEST_CASE("a connection flood at max_connections waits in the queue and is served once connections close") {
    target_cluster target(path_of(program::hello), small_limits_with("--max-connections", "4"));
    std::vector<std::unique_ptr<http_client>> held;
    for (int i = 0; i < 4; ++i) {
      held.push_back(std::make_unique<http_client>(target.port()));
      held.back()->send(get_request("/"));
      REQUIRE(held.back()->read_response(3s).status == 200);
    }
    auto flood = open_clients(target.port(), 100, request("GET", "/", "Connection: close\r\n"));
    CHECK_FALSE(flood.front()->has_data(200ms));  // at the limit: not accepted yet
    held.clear();
    int answered = 0;
    for (auto& c : flood) {
      answered += c->read_response(10s).status == 200;
      c = nullptr;  // as a client does after "Connection: close": the worker's lingering close ends at once
    }
    CHECK(answered == 100);
    flood.clear();
    REQUIRE(target.expect_unharmed("a connection flood at max_connections"));
    target.expect_graceful_stop();
  }

  TEST_CASE(
      "descriptor exhaustion in a worker: it pauses accepting without spinning or flooding the log, then serves") {
    target_cluster target(path_of(program::hello), exhaustion_flags(), at_most_64_descriptors);
    const std::size_t log_lines_before = lines_in(target.cluster().stderr_text());
    auto flood = open_clients(target.port(), 120, get_request("/"));
    // Two seconds at exhaustion: the worker must neither spin nor log on.
    const auto start = test_clock::now();
    auto shares = cpu_shares({target.worker()}, 2s);
    const double seconds = std::chrono::duration<double>(test_clock::now() - start).count();
    const std::string log = target.cluster().stderr_text();
    INFO("log:\n", log);
    CHECK(log.find("Too many open files") != std::string::npos);
    int answered = 0;
    for (auto& c : flood) answered += c->has_data(1ms) ? 1 : 0;
    CHECK(answered > 0);
    CHECK(answered < 120);  // the rest wait: the worker is out of descriptors
    REQUIRE(shares[0]);
    CHECK(*shares[0] < busy_share);
    const std::size_t new_lines = lines_in(log) - log_lines_before;
    CHECK_MESSAGE(double(new_lines) <= 2 + 3 * seconds, new_lines, " log lines in ", seconds, " s");
    flood.clear();
    REQUIRE(target.expect_unharmed("descriptor exhaustion in the worker"));
    target.expect_graceful_stop();
  }

  TEST_CASE("descriptor exhaustion in the master (admin flood): it pauses accepting, supervises on, then serves") {
    target_cluster target(path_of(program::hello), exhaustion_flags(), at_most_64_descriptors);
    const std::size_t log_lines_before = lines_in(target.cluster().stderr_text());
    auto flood = flood_admin(target.admin_port());
    const auto start = test_clock::now();
    auto shares = cpu_shares({target.cluster().pid()}, 2s);
    const double seconds = std::chrono::duration<double>(test_clock::now() - start).count();
    const std::string log = target.cluster().stderr_text();
    INFO("log:\n", log);
    CHECK(log.find("Too many open files") != std::string::npos);
    REQUIRE(shares[0]);
    CHECK(*shares[0] < busy_share);
    const std::size_t new_lines = lines_in(log) - log_lines_before;
    CHECK_MESSAGE(double(new_lines) <= 2 + 3 * seconds, new_lines, " log lines in ", seconds, " s");
    CHECK(get(target.port()).status == 200);  // the workers never noticed
    flood.clear();
    REQUIRE(target.expect_unharmed("descriptor exhaustion in the master"));
    target.expect_graceful_stop();
  }

  TEST_CASE("a worker that dies while an admin flood holds the master's descriptors is respawned once they are free") {
    target_cluster target(path_of(program::hello), exhaustion_flags(), at_most_64_descriptors);
    auto& cluster = target.cluster();
    auto flood = flood_admin(target.admin_port());
    REQUIRE(cluster.wait_for_log("Too many open files", 5s));
    const pid_t victim = target.worker();
    REQUIRE(::kill(victim, SIGKILL) == 0);
    REQUIRE(cluster.wait_for_log("(pid " + std::to_string(victim) + ") was killed by SIGKILL", 5s));
    // The respawn may have to wait for descriptors; the service must not end.
    flood.clear();
    auto respawned = [&] {
      auto pids = cluster.worker_pids();
      return pids.size() == 1 && pids.front() != victim;
    };
    wait_until([&] { return respawned() || !process_alive(cluster.pid()); }, 10s);
    REQUIRE_MESSAGE(process_alive(cluster.pid()), "the master exited");
    CHECK(respawned());
    CHECK(get(target.port()).status == 200);
    CHECK(target.restarts() == 1);
    target.expect_graceful_stop();
  }
}
