// counter: a cluster-wide hit counter, broadcasts between workers, and a
// request to the master.
//   build/examples/counter --port 8080 --workers 2 [--admin 127.0.0.1:9090]
//   curl http://127.0.0.1:8080/                   -> 1, 2, 3 ... whichever worker answers
//   curl 'http://127.0.0.1:8080/broadcast?msg=hi' -> every worker receives "hi"
//   curl http://127.0.0.1:8080/last               -> the last broadcast this worker received
//   curl http://127.0.0.1:8080/master             -> the master's answer to a request
#include <cluster/cluster.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <unistd.h>

int main(int argc, char** argv) {
  // Created before run(): every worker, and every respawned one, shares it.
  cluster::shared<std::atomic<std::uint64_t>> hits(0);
  std::string last_broadcast;  // per worker: each process has its own copy
  auto started = std::chrono::steady_clock::now();

  cluster::options defaults;
  defaults.on_worker_start = [&](int) {
    cluster::this_worker().on_message([&](const cluster::message& m) { last_broadcast = m.data; });
  };
  defaults.on_request = [&](int slot, const cluster::message&) {
    auto up = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    return cluster::message::text("master pid " + std::to_string(::getpid()) + " uptime_ms " +
                                  std::to_string(up.count()) + " asked_by_slot " + std::to_string(slot) + "\n");
  };

  // Every answer says which worker process gave it.
  auto reply = [](std::string body) {
    auto r = cluster::response::text(std::move(body));
    r.set("X-Worker-Pid", std::to_string(::getpid()));
    return r;
  };

  cluster::router r;
  r.get("/broadcast", [&](cluster::request& req) -> asio::awaitable<cluster::response> {
    // query_param: percent-decoded, '+' as a space ("?msg=hello%20there+all").
    co_await cluster::this_worker().broadcast(cluster::message::text(req.query_param("msg")));
    co_return reply("broadcast\n");
  });
  r.get("/last", [&](const cluster::request&) { return reply(last_broadcast); });
  r.get("/master", [&](cluster::request&) -> asio::awaitable<cluster::response> {
    auto answer = co_await cluster::this_worker().request(cluster::message::text("status"),
                                                          std::chrono::milliseconds(1000));
    co_return reply(answer.data);
  });
  // Every other path and method counts a hit.
  r.any("/*", [&](const cluster::request&) {
    auto count = hits->fetch_add(1, std::memory_order_relaxed) + 1;
    return reply(std::to_string(count) + "\n");
  });
  return cluster::run(r, argc, argv, std::move(defaults));
}
