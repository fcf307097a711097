// Memory under hostile load, measured on a real worker (/proc/PID/status):
// a buffered upload costs about its own size, and the memory of a burst of
// connections is given back (and reused, not grown) once they close.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

using namespace test_support;

namespace {

pid_t only_worker(const cluster_process& c) {
  auto pids = c.worker_pids();
  REQUIRE(pids.size() == 1);
  return pids.front();
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool glibc_malloc = false;  // ASan's allocator replaces malloc
#else
constexpr bool glibc_malloc = true;
#endif

// Raises this process's descriptor limit to its hard limit (the clients of
// thousands of connections need it) while in scope.
class descriptors_raised {
 public:
  descriptors_raised() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    REQUIRE_MESSAGE(saved_.rlim_max >= 8000, "the test needs RLIMIT_NOFILE >= 8000 (hard), has " << saved_.rlim_max);
    rlimit raised{saved_.rlim_max, saved_.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &raised) == 0);
  }
  ~descriptors_raised() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  descriptors_raised(const descriptors_raised&) = delete;
  descriptors_raised& operator=(const descriptors_raised&) = delete;

 private:
  rlimit saved_{};
};

// The worker's environment: under ASan, freed memory waits in a quarantine
// before reuse, which would read as growth, so the worker runs without one.
std::vector<std::string> worker_environment() {
  std::vector<std::string> env;
  if constexpr (!glibc_malloc) env.push_back("ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=0");
  return env;
}

// Opens `n` keep-alive connections, each answered once, then closes them all.
void burst(std::uint16_t port, int n) {
  std::vector<std::unique_ptr<http_client>> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<http_client>(port));
    clients.back()->send(get_request());
  }
  for (auto& c : clients) CHECK(c->read_response().status == 200);
}

}  // namespace

TEST_SUITE("memory") {
  TEST_CASE("a 32 MiB upload buffered whole and echoed back costs the worker about its size once") {
    constexpr std::size_t size = 32u << 20;
    cluster_process c(program::echo, 1, {"--max-body", std::to_string(64u << 20)});
    pid_t w = only_worker(c);
    long before = status_kib(w, "VmHWM");
    http_client client(c.port());
    std::string body(size, 'u');
    client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n", 10s);
    client.send(body, 30s);
    auto r = client.read_response(30s);
    CHECK(r.status == 200);
    CHECK(r.body.size() == size);
    CHECK(r.body == body);
    long grown = status_kib(w, "VmHWM") - before;
    MESSAGE("peak RSS grew by " << grown << " kB for a " << size / 1024 << " kB body");
    // Was ~3x (a growing buffer, a copy into the response, a copy into the
    // output buffer). Slack for the allocator and ASan's redzones.
    CHECK(grown < static_cast<long>(size / 1024) * 5 / 4);
  }

  TEST_CASE("the memory of 3,000 closed connections is given back to the kernel and reused by the next burst") {
    descriptors_raised raised;
    std::vector<std::string> env = worker_environment();
    cluster_process c(program::hello, 1, {"--max-connections", "5000", "--idle-timeout", "60000"},
                      env);
    pid_t w = only_worker(c);
    auto settled = [&] {  // every connection closed on the server side
      return wait_until([&] { return status_kib(w, "VmRSS") > 0 && count_fds(w) < 20; }, 10s);
    };
    burst(c.port(), 3000);
    long peak = status_kib(w, "VmRSS");
    REQUIRE(settled());
    long after_first = status_kib(w, "VmRSS");
    burst(c.port(), 3000);
    REQUIRE(settled());
    long after_second = status_kib(w, "VmRSS");
    MESSAGE("worker RSS: " << peak << " kB with 3,000 open, " << after_first << " kB after they closed, "
                           << after_second << " kB after a second burst closed");
    // The second burst reuses what the first left: no growth per connection.
    CHECK(after_second < after_first + 2048);
    // malloc_trim hands free pages back: the connections lived packed in
    // chunks and Asio's per-socket records were made ahead in batches, so
    // what the closed connections freed lies in large runs (most of it goes
    // back; the records stay for the next burst). ASan's allocator has no
    // malloc_trim to answer to.
    if constexpr (glibc_malloc) CHECK(after_first < peak * 40 / 100);
  }

  TEST_CASE("3,000 idle keep-alive connections park: a kilobyte or two each, and every one is answered again") {
    descriptors_raised raised;
    std::vector<std::string> env = worker_environment();
    // A 50 ms heartbeat: connections idle for a tick park within a tenth of
    // a second instead of a second.
    cluster_process c(program::hello, 1,
                      {"--max-connections", "5000", "--idle-timeout", "60000", "--heartbeat-interval", "50"}, env);
    pid_t w = only_worker(c);
    long before = status_kib(w, "VmRSS");
    constexpr int n = 3000;
    std::vector<std::unique_ptr<http_client>> clients;
    for (int i = 0; i < n; ++i) {
      clients.push_back(std::make_unique<http_client>(c.port()));
      clients.back()->send(get_request());
    }
    for (auto& client : clients) REQUIRE(client->read_response().status == 200);
    long busy = status_kib(w, "VmRSS");
    auto per_connection = [&] { return (status_kib(w, "VmRSS") - before) * 1024 / n; };
    // The signal awaited is the memory itself: parked connections give
    // their buffers back within a few ticks. About 7 KiB each unparked, 1.1
    // KiB parked on a quiet machine; on a loaded one, where the first
    // connections park while the last are still being made, the heap keeps
    // a little more. (The 1 KiB goal is the benchmark's, at 10,000.)
    bool parked = wait_until([&] { return per_connection() <= 2048; }, 5s, 20ms);
    MESSAGE("worker RSS: " << before << " kB before, " << busy << " kB with 3,000 connections just answered, "
                           << per_connection() << " bytes per idle connection once parked");
    if constexpr (glibc_malloc) CHECK(parked);
    // Parked connections wake for their next request, each still keep-alive.
    for (auto& client : clients) client->send(get_request());
    for (auto& client : clients) {
      auto res = client->read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "Hello World\n");
    }
  }

  TEST_CASE("a parked connection still closes at its idle timeout, and at once when the worker drains") {
    cluster_process c(program::hello, 1, {"--idle-timeout", "800", "--heartbeat-interval", "50"});
    http_client timed(c.port());
    timed.send(get_request());
    REQUIRE(timed.read_response().status == 200);
    auto idle_began = std::chrono::steady_clock::now();
    // Parked after a tick or two; closed by its timer at 800 ms.
    REQUIRE(timed.server_closed(3s));
    auto idle_for = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - idle_began);
    MESSAGE("closed after " << idle_for.count() << " ms idle (idle timeout 800 ms, heartbeat 50 ms)");
    CHECK(idle_for >= 750ms);
    CHECK(idle_for <= 1200ms);

    http_client drained(c.port());
    drained.send(get_request());
    REQUIRE(drained.read_response().status == 200);
    // Let it park (several ticks), then stop: the drain closes it after the
    // short grace, not at its idle timeout.
    std::this_thread::sleep_for(300ms);  // idleness is the condition under test: nothing to await
    auto stop_began = std::chrono::steady_clock::now();
    c.signal(SIGTERM);
    REQUIRE(drained.server_closed(3s));
    auto closed_after = std::chrono::steady_clock::now() - stop_began;
    CHECK(closed_after < 700ms);
  }

  TEST_CASE("a parked connection woken by hostile input: a trickled header block gets 408, a half-close just closes") {
    cluster_process c(program::hello, 1,
                      {"--idle-timeout", "60000", "--header-timeout", "400", "--heartbeat-interval", "50"});
    http_client slow(c.port());
    http_client quitter(c.port());
    for (http_client* client : {&slow, &quitter}) {
      client->send(get_request());
      REQUIRE(client->read_response().status == 200);
    }
    std::this_thread::sleep_for(300ms);  // idle for several ticks: both park (idleness is the condition)
    // Woken by one byte of a request that never completes: the header
    // deadline runs from that byte, as for a connection that never parked.
    slow.send("G");
    auto res = slow.read_response(3s);
    CHECK(res.status == 408);
    CHECK(slow.server_closed(3s));
    // Woken by end of file: the worker closes its side, and serves on.
    quitter.shutdown_write();
    CHECK(quitter.server_closed(3s));
    http_client after(c.port());
    after.send(get_request());
    CHECK(after.read_response().status == 200);
  }
}
