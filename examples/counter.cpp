// counter: a cluster-wide hit counter, broadcasts between workers, and a
// request to the master.
//   build/examples/counter --port 8080 --workers 2 [--admin 127.0.0.1:9090]
//   curl http://127.0.0.1:8080/                   -> 1, 2, 3 ... whichever worker answers
//   curl 'http://127.0.0.1:8080/broadcast?msg=hi' -> every worker receives "hi"
//   curl http://127.0.0.1:8080/last               -> the last broadcast this worker received
//   curl http://127.0.0.1:8080/master             -> the master's answer to a request
#include <cluster/cluster.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <unistd.h>

namespace {

// "a%20b+c" -> "a b c": query values arrive percent-encoded.
std::string url_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

std::string query_value(std::string_view query, std::string_view key) {
  for (std::size_t pos = 0; pos <= query.size();) {
    std::size_t amp = query.find('&', pos);
    std::string_view pair = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (pair.starts_with(key) && pair.size() > key.size() && pair[key.size()] == '=')
      return url_decode(pair.substr(key.size() + 1));
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return {};
}

}  // namespace

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

  auto handler = [&](cluster::request& req) -> asio::awaitable<cluster::response> {
    auto path = req.path();
    if (path == "/broadcast") {
      co_await cluster::this_worker().broadcast(cluster::message::text(query_value(req.query(), "msg")));
      co_return reply("broadcast\n");
    }
    if (path == "/last") co_return reply(last_broadcast);
    if (path == "/master") {
      auto answer = co_await cluster::this_worker().request(cluster::message::text("status"),
                                                            std::chrono::milliseconds(1000));
      co_return reply(answer.data);
    }
    auto count = hits->fetch_add(1, std::memory_order_relaxed) + 1;
    co_return reply(std::to_string(count) + "\n");
  };
  return cluster::run(handler, argc, argv, std::move(defaults));
}
