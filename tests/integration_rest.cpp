// Integration tests of examples/rest, the JSON users API, with two workers on
// 127.0.0.1: every line of its contract, over loopback, and the users one
// worker created seen through the other (each response's X-Request-Id
// names the worker's pid: "<random>-<pid, hex>-<counter>").
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <string>
#include <string_view>
#include <vector>

using namespace test_support;

namespace {

constexpr int workers = 2;
constexpr int most_connections = 64;  // to reach both workers: connections are spread by a hash

std::string json_post(std::string_view target, std::string_view body, std::string_view type = "application/json") {
  return request("POST", target,
                 "Content-Type: " + std::string(type) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n",
                 body);
}

/// One request on a new connection, its response.
http_response ask(const cluster_process& c, const std::string& raw, bool head = false) {
  http_client client(c.port());
  client.send(raw);
  return client.read_response(http_client::default_timeout, head);
}

/// The pid of the worker that answered, from its X-Request-Id; 0 if none.
pid_t worker_of(const http_response& r) {
  std::string id = r.header("X-Request-Id").value_or("");
  auto first = id.find('-'), second = id.find('-', first + 1);
  if (first == std::string::npos || second == std::string::npos) return 0;
  unsigned pid = 0;
  std::from_chars(id.data() + first + 1, id.data() + second, pid, 16);
  return static_cast<pid_t>(pid);
}

/// Creates a user named `name`; returns the response.
http_response create(const cluster_process& c, std::string_view name_json) {
  return ask(c, json_post("/users", "{\"name\": " + std::string(name_json) + "}"));
}

}  // namespace

TEST_SUITE("rest") {
  TEST_CASE("rest: POST /users answers 201, Location and the user; every worker then sees the user") {
    cluster_process c(program::rest, workers);
    auto made = create(c, "\"Ada\"");
    CHECK(made.status == 201);
    CHECK(made.header("Location") == "/users/1");
    CHECK(made.header("Content-Type") == "application/json");
    CHECK(made.body == R"({"id":1,"name":"Ada"})");
    std::set<pid_t> seen;
    for (int i = 0; i < most_connections && seen.size() < static_cast<std::size_t>(workers); ++i) {
      auto got = ask(c, get_request("/users/1"));
      REQUIRE(got.status == 200);
      CHECK(got.body == R"({"id":1,"name":"Ada"})");
      seen.insert(worker_of(got));
    }
    auto pids = c.worker_pids();
    CHECK(seen == std::set<pid_t>(pids.begin(), pids.end()));
  }

  TEST_CASE("rest: ids are unique across workers") {
    cluster_process c(program::rest, workers);
    std::set<std::string> locations;
    for (int i = 0; i < 20; ++i) {
      auto made = create(c, "\"user " + std::to_string(i) + "\"");
      REQUIRE(made.status == 201);
      locations.insert(made.header("Location").value_or(""));
    }
    CHECK(locations.size() == 20);
  }

  TEST_CASE("rest: names round-trip, Unicode and escapes included") {
    cluster_process c(program::rest, workers);
    auto made = create(c, R"("Zoë \"quoted\" \\ 日本 😀 \u00e9\t")");
    REQUIRE(made.status == 201);
    CHECK(made.body == "{\"id\":1,\"name\":\"Zoë \\\"quoted\\\" \\\\ 日本 😀 é\\t\"}");
    CHECK(ask(c, get_request("/users/1")).body == made.body);
  }

  TEST_CASE("rest: a body that is not {\"name\": \"...\"} is 400 with a JSON error") {
    cluster_process c(program::rest, workers);
    for (std::string body : std::vector<std::string>{"", "{", "[]", "{\"name\": 7}", "{\"nom\": \"x\"}", "{\"name\": \"\"}", "\"Ada\"",
                             "{\"name\": \"\xff\"}", "{\"name\": \"" + std::string(201, 'x') + "\"}"}) {
      CAPTURE(body);
      auto refused = ask(c, json_post("/users", body));
      CHECK(refused.status == 400);
      CHECK(refused.header("Content-Type") == "application/json");
      CHECK(refused.body.starts_with("{\"error\":\""));
    }
    CHECK(ask(c, get_request("/users")).body == "[]");
  }

  TEST_CASE("rest: a body that is not JSON by its Content-Type is 415") {
    cluster_process c(program::rest, workers);
    CHECK(ask(c, json_post("/users", "{\"name\": \"Ada\"}", "text/plain")).status == 415);
    CHECK(ask(c, post_request("/users", "{\"name\": \"Ada\"}")).status == 415);  // no Content-Type
    auto with_charset = ask(c, json_post("/users", "{\"name\": \"Ada\"}", "application/json; charset=utf-8"));
    CHECK(with_charset.status == 201);
  }

  TEST_CASE("rest: GET /users/ID is 404 JSON for an unknown or non-numeric id") {
    cluster_process c(program::rest, workers);
    for (std::string target : {"/users/1", "/users/abc", "/users/-1", "/users/1x", "/users/99999999999999999999999"}) {
      CAPTURE(target);
      auto missing = ask(c, get_request(target));
      CHECK(missing.status == 404);
      CHECK(missing.header("Content-Type") == "application/json");
      CHECK(missing.body == R"({"error":"no such user"})");
    }
  }

  TEST_CASE("rest: DELETE /users/ID is 204, then 404") {
    cluster_process c(program::rest, workers);
    REQUIRE(create(c, "\"Ada\"").status == 201);
    auto removed = ask(c, request("DELETE", "/users/1"));
    CHECK(removed.status == 204);
    CHECK(removed.body.empty());
    auto again = ask(c, request("DELETE", "/users/1"));
    CHECK(again.status == 404);
    CHECK(again.body == R"({"error":"no such user"})");
    CHECK(ask(c, get_request("/users/1")).status == 404);
    CHECK(ask(c, request("DELETE", "/users/abc")).status == 404);
  }

  TEST_CASE("rest: GET /users?limit=N answers a JSON array of at most N users") {
    cluster_process c(program::rest, workers);
    for (auto name : {"\"a\"", "\"b\"", "\"c\""}) REQUIRE(create(c, name).status == 201);
    CHECK(ask(c, get_request("/users?limit=2")).body == R"([{"id":1,"name":"a"},{"id":2,"name":"b"}])");
    CHECK(ask(c, get_request("/users?limit=0")).body == "[]");
    CHECK(ask(c, get_request("/users?limit=10")).body ==
          R"([{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"name":"c"}])");
    CHECK(ask(c, get_request("/users")).body == R"([{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"name":"c"}])");
    auto bad = ask(c, get_request("/users?limit=many"));
    CHECK(bad.status == 400);
    CHECK(bad.header("Content-Type") == "application/json");
  }

  TEST_CASE("rest: any other method on the users paths is 405 with Allow") {
    cluster_process c(program::rest, workers);
    auto on_list = ask(c, request("PUT", "/users", "Content-Length: 0\r\n"));
    CHECK(on_list.status == 405);
    CHECK(on_list.header("Allow") == "GET, HEAD, POST, OPTIONS");
    for (std::string method : {"PUT", "POST", "PATCH"}) {
      CAPTURE(method);
      auto on_user = ask(c, request(method, "/users/1", "Content-Length: 0\r\n"));
      CHECK(on_user.status == 405);
      CHECK(on_user.header("Allow") == "GET, HEAD, DELETE, OPTIONS");
    }
    auto head = ask(c, request("HEAD", "/users"), true);
    CHECK(head.status == 200);
    CHECK(head.body.empty());
  }

  TEST_CASE("rest: each request is one access-log line on standard output, with the client's address") {
    cluster_process c(program::rest, workers);
    auto missing = ask(c, get_request("/users/42?from=test"));
    REQUIRE(missing.status == 404);
    auto line = c.next_stdout_line(5s);  // written within the log's flush interval
    REQUIRE(line.has_value());
    CHECK(line->starts_with("127.0.0.1 - - ["));
    CHECK(line->find("] \"GET /users/42?from=test HTTP/1.1\" 404 24 ") != std::string::npos);
    CHECK(line->ends_with(" \"" + missing.header("X-Request-Id").value_or("?") + "\""));
  }
}
