// rest: a JSON users API on a router, the starter to copy for a service.
//   build/examples/rest --port 8080 --workers 4
//   curl -i -H 'Content-Type: application/json' -d '{"name": "Zoë"}' http://127.0.0.1:8080/users
//                                           -> 201, Location: /users/1, {"id":1,"name":"Zoë"}
//   curl -i http://127.0.0.1:8080/users/1   -> 200 {"id":1,"name":"Zoë"}   (404 for an unknown id)
//   curl -i 'http://127.0.0.1:8080/users?limit=10'   -> [{"id":1,"name":"Zoë"}]  (at most 10)
//   curl -i -X DELETE http://127.0.0.1:8080/users/1  -> 204, then 404
//   curl -i -X PUT http://127.0.0.1:8080/users/1     -> 405, Allow: GET, HEAD, DELETE, OPTIONS
// Every request is logged on standard output (the access log, common format)
// and answered with an X-Request-Id.
//
// Where the users live: in the master. Each worker is its own process, so a
// map in a worker would only hold the users created through that worker.
// Instead every operation is a request from the worker to the master
// (cluster::this_worker().request(), README "Messaging"), which keeps the
// one table and answers in order: whichever worker serves the next request
// sees every user, ids are unique, and a worker that crashes loses nothing.
// The price is one round trip over the worker's control channel per request
// (tens of microseconds); shared memory (cluster::shared<T>) would save it
// but needs fixed-size records and a lock across processes. The table lives
// as long as the master: use a database for data that must outlive it.
//
// JSON comes from nlohmann/json (Debian's nlohmann-json3-dev): parsed and
// written by a library, so "Zoë", quotes and escapes come back exactly as
// sent.
#include <cluster/cluster.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr std::size_t max_name_bytes = 200;
constexpr std::uint64_t max_limit = 100;  // also the default: a page fits one message
constexpr auto master_timeout = 1s;

// What a worker asks the master (the message's type), and what it answers.
enum op : std::uint32_t { create = 1, find, erase, list };
enum answer : std::uint32_t { found = 1, missing };

cluster::response json_response(const json& body, int status) { return cluster::response::json(body.dump(), status); }
cluster::response error(int status, std::string_view what) { return json_response({{"error", what}}, status); }

// A decimal id or limit, or nothing.
std::optional<std::uint64_t> number(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return n;
}

// In the master: the table, and the answer to each operation.
struct users_table {
  std::map<std::uint64_t, std::string> users;
  std::uint64_t next_id = 1;

  static json user(std::uint64_t id, const std::string& name) { return {{"id", id}, {"name", name}}; }

  cluster::message operator()(int, const cluster::message& m) {
    std::uint64_t key = number(m.text()).value_or(0);
    switch (m.type) {
      case create: {
        std::uint64_t id = next_id++;
        users.emplace(id, m.data);
        return cluster::message::text(user(id, m.data).dump(), found);
      }
      case find: {
        auto it = users.find(key);
        return it == users.end() ? cluster::message::text("", missing)
                                 : cluster::message::text(user(it->first, it->second).dump(), found);
      }
      case erase: return cluster::message::text("", users.erase(key) != 0 ? found : missing);
      case list: {
        json page = json::array();
        for (auto it = users.begin(); it != users.end() && page.size() < key; ++it)
          page.push_back(user(it->first, it->second));
        return cluster::message::text(page.dump(), found);
      }
    }
    throw std::invalid_argument("unknown operation");
  }
};

asio::awaitable<cluster::message> ask_master(op what, std::string_view data) {
  co_return co_await cluster::this_worker().request(cluster::message::text(data, what), master_timeout);
}

asio::awaitable<cluster::response> create_user(cluster::request& req) {
  std::string_view type = req.header("Content-Type");
  if (type.substr(0, type.find(';')) != "application/json")
    co_return error(415, "send the user as Content-Type: application/json");
  json body = json::parse(req.body(), nullptr, false);  // no exception: a discarded value on bad JSON
  if (body.is_discarded() || !body.is_object() || !body.contains("name") || !body["name"].is_string())
    co_return error(400, "expected a JSON object {\"name\": \"...\"}");
  std::string name = body["name"];
  if (name.empty() || name.size() > max_name_bytes) co_return error(400, "name must be 1 to 200 bytes");
  cluster::message made = co_await ask_master(create, name);
  json user = json::parse(made.data);
  co_return json_response(user, 201).set("Location", "/users/" + std::to_string(user["id"].get<std::uint64_t>()));
}

asio::awaitable<cluster::response> show_user(cluster::request& req) {
  if (!number(req.param("id"))) co_return error(404, "no such user");
  cluster::message m = co_await ask_master(find, req.param("id"));
  co_return m.type == found ? cluster::response::json(m.data) : error(404, "no such user");
}

asio::awaitable<cluster::response> delete_user(cluster::request& req) {
  if (!number(req.param("id"))) co_return error(404, "no such user");
  cluster::message m = co_await ask_master(erase, req.param("id"));
  co_return m.type == found ? cluster::response::empty(204) : error(404, "no such user");
}

asio::awaitable<cluster::response> list_users(cluster::request& req) {
  std::uint64_t limit = max_limit;
  if (req.has_query_param("limit")) {
    auto asked = number(req.query_param("limit"));
    if (!asked) co_return error(400, "limit must be a non-negative integer");
    limit = std::min(*asked, max_limit);
  }
  cluster::message m = co_await ask_master(list, std::to_string(limit));
  co_return cluster::response::json(m.data);
}

}  // namespace

int main(int argc, char** argv) {
  users_table table;  // used by the master only: workers never touch their copy
  cluster::options defaults;
  defaults.on_request = [&table](int slot, const cluster::message& m) { return table(slot, m); };

  cluster::router r;
  r.use(cluster::access_log());  // first: its line shows the response as sent
  r.use(cluster::request_id());  // X-Request-Id on every response, and in the log line
  r.post("/users", create_user);
  r.get("/users", list_users);
  r.get("/users/:id", show_user);
  r.del("/users/:id", delete_user);
  return cluster::run(r, argc, argv, std::move(defaults));
}
