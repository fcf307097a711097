// A test server for lifecycle tests: it tells which worker answered, can be
// slow, hang, crash, and can ask for a reload or a scale from a handler.
//   GET /            "pid <pid> slot <slot>\n"
//   GET /slow?ms=N   answers after N ms (an async wait; the loop stays free)
//   GET /hang        blocks the worker's event loop forever
//   GET /crash       aborts the worker process
//   GET /reload      cluster::reload()       GET /scale?n=N  cluster::scale(N)
//   GET /ends        "peer <request.peer()> local <request.local()>\n"
//   GET /version     "version <CLUSTER_TEST_VERSION>\n" (1 unless built with
//                    another: the binary upgrade tests build version 2 too)
// Its own flags, before the standard ones: --crash-at-start (every worker's
// start hook throws). Environment: CLUSTER_TEST_FAIL_START_IF_EXISTS=PATH makes
// the start hook of every worker started while PATH exists throw (a reload
// whose new workers cannot start); with CLUSTER_TEST_FAIL_START_SLOT=N too,
// only slot N's workers (one slot in a boot loop while the others serve).
// Hooks print "hook: ..." lines on stderr.
#include <cluster/cluster.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#ifndef CLUSTER_TEST_VERSION
#define CLUSTER_TEST_VERSION 1
#endif

namespace {

int my_slot = -1;

int query_int(const cluster::request& req, std::string_view key, int fallback) {
  std::string_view text = req.query_param(key);
  int v = fallback;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

cluster::response who_answers(const cluster::request&) {
  return cluster::response::text("pid " + std::to_string(::getpid()) + " slot " + std::to_string(my_slot) + "\n");
}

// Every route answers any method, as the server did before it had a router.
cluster::router routes() {
  cluster::router r;
  r.any("/slow", [](cluster::request& req) -> asio::awaitable<cluster::response> {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(query_int(req, "ms", 100)));
    co_await t.async_wait(asio::use_awaitable);
    co_return who_answers(req);
  });
  r.any("/hang", [](const cluster::request&) -> cluster::response {
    for (;;) ::pause();  // blocks the event loop; the heartbeat stops
  });
  r.any("/crash", [](const cluster::request&) -> cluster::response { std::abort(); });
  r.any("/ends", [](const cluster::request& req) {
    return cluster::response::text("peer " + req.peer().to_string() + " local " + req.local().to_string() + "\n");
  });
  r.any("/version", [](const cluster::request&) {
    return cluster::response::text("version " + std::to_string(CLUSTER_TEST_VERSION) + "\n");
  });
  r.any("/reload", [](const cluster::request&) {
    return cluster::response::text(cluster::reload() ? "reload requested\n" : "no cluster\n");
  });
  r.any("/scale", [](const cluster::request& req) {
    return cluster::response::text(cluster::scale(query_int(req, "n", 1)) ? "scale requested\n" : "refused\n");
  });
  r.any("/*", who_answers);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool crash_at_start = false;
  std::vector<const char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--crash-at-start")
      crash_at_start = true;
    else
      args.push_back(argv[i]);
  }
  cluster::options defaults;
  defaults.on_master_start = [] { std::fprintf(stderr, "hook: master_start pid %d\n", static_cast<int>(::getpid())); };
  defaults.on_worker_start = [crash_at_start](int slot) {
    if (crash_at_start) throw std::runtime_error("refusing to start (--crash-at-start)");
    const char* marker = std::getenv("CLUSTER_TEST_FAIL_START_IF_EXISTS");
    const char* only_slot = std::getenv("CLUSTER_TEST_FAIL_START_SLOT");
    bool this_slot = !only_slot || !*only_slot || std::string_view(only_slot) == std::to_string(slot);
    if (marker && *marker && this_slot && ::access(marker, F_OK) == 0)
      throw std::runtime_error(std::string("refusing to start (") + marker + " exists)");
    my_slot = slot;
  };
  defaults.on_worker_exit = [](const cluster::worker_exit& e) {
    std::fprintf(stderr, "hook: worker_exit slot %d pid %d code %d signal %d expected %d\n", e.slot,
                 static_cast<int>(e.pid), e.exit_code, e.signal, e.expected ? 1 : 0);
  };
  defaults.on_reload = [](cluster::reload_event e) {
    const char* what = e == cluster::reload_event::begun ? "begun" : e == cluster::reload_event::finished ? "finished" : "aborted";
    std::fprintf(stderr, "hook: reload %s\n", what);
  };
  cluster::router r = routes();
  return cluster::run(r, static_cast<int>(args.size()), args.data(), std::move(defaults));
}
