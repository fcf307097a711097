// Unit tests: middleware around a router's routes (order, early answers,
// answers the router makes itself, streaming heads), and the middleware
// cluster ships: the access log's lines in both formats, CORS, request ids.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"
#include "support/temp_dir.hpp"

#include <cluster/access_log.hpp>
#include <cluster/cors.hpp>
#include <cluster/detail/json_text.hpp>
#include <cluster/request_id.hpp>
#include <cluster/router.hpp>

#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace test_support;

namespace {

std::string request(const std::string& method, const std::string& target, const std::string& fields = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n";
}

// The responses to `input`; the one at index `head` (if any) answers a HEAD.
std::vector<http_response> serve(cluster::router& r, const std::string& input, std::size_t head = SIZE_MAX) {
  cluster::options opts;
  auto wire = serve_in_memory(r, opts, {input});
  auto out = parse_responses(wire.output, [head](std::size_t i, const http_response&) { return i == head; });
  REQUIRE(out.error.empty());
  return out.finals();
}

// Records its name in `trace` before and after; answers 401 early when
// `refuse` is set.
class tracer final : public cluster::middleware {
 public:
  tracer(std::string name, std::vector<std::string>& trace, bool refuse = false)
      : name_(std::move(name)), trace_(trace), refuse_(refuse) {}
  std::optional<cluster::response> before(cluster::request&) override {
    trace_.push_back(name_ + ".before");
    if (refuse_) return cluster::response::text("refused by " + name_ + "\n", 401);
    return std::nullopt;
  }
  void after(const cluster::request&, cluster::response& res) override {
    trace_.push_back(name_ + ".after");
    res.headers.add("X-Trace", name_);
  }

 private:
  std::string name_;
  std::vector<std::string>& trace_;
  bool refuse_;
};

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("middleware: router-wide before route's, afters in reverse order") {
    std::vector<std::string> trace;
    cluster::router r;
    r.use(std::make_shared<tracer>("outer", trace));
    r.use(std::make_shared<tracer>("inner", trace));
    r.get("/x", [&trace](const cluster::request&) {
       trace.push_back("route");
       return cluster::response::text("x");
     }).use(std::make_shared<tracer>("own", trace));
    auto res = serve(r, request("GET", "/x"));
    REQUIRE(res.size() == 1);
    CHECK(trace == std::vector<std::string>{"outer.before", "inner.before", "own.before", "route", "own.after",
                                            "inner.after", "outer.after"});
  }

  TEST_CASE("middleware: an early answer skips the route and the later middleware") {
    std::vector<std::string> trace;
    cluster::router r;
    r.use(std::make_shared<tracer>("outer", trace));
    r.use(std::make_shared<tracer>("gate", trace, true));
    r.use(std::make_shared<tracer>("later", trace));
    bool called = false;
    r.get("/x", [&called](const cluster::request&) {
      called = true;
      return cluster::response::text("x");
    });
    auto res = serve(r, request("GET", "/x"));
    REQUIRE(res.size() == 1);
    CHECK(res[0].status == 401);
    CHECK(res[0].body == "refused by gate\n");
    CHECK_FALSE(called);
    CHECK(trace == std::vector<std::string>{"outer.before", "gate.before", "gate.after", "outer.after"});
  }

  TEST_CASE("middleware: router-wide middleware runs around 404 and 405, a route's only around its route") {
    std::vector<std::string> trace;
    cluster::router r;
    r.use(std::make_shared<tracer>("outer", trace));
    r.get("/x", [](const cluster::request&) { return cluster::response::text("x"); })
        .use(std::make_shared<tracer>("own", trace));
    auto res = serve(r, request("GET", "/missing") + request("POST", "/x"));
    REQUIRE(res.size() == 2);
    CHECK(res[0].status == 404);
    CHECK(res[1].status == 405);
    CHECK(res[1].header("X-Trace") == "outer");
    CHECK(trace == std::vector<std::string>{"outer.before", "outer.after", "outer.before", "outer.after"});
  }

  TEST_CASE("middleware: after() sees the 500 of a route that threw, coroutine or plain") {
    std::vector<std::string> trace;
    cluster::router r;
    r.use(std::make_shared<tracer>("outer", trace));
    r.get("/plain", [](const cluster::request&) -> cluster::response { throw std::runtime_error("plain"); });
    r.get("/async", [](cluster::request&) -> asio::awaitable<cluster::response> {
      throw std::runtime_error("async");
      co_return cluster::response::text("never");
    });
    auto res = serve(r, request("GET", "/plain") + request("GET", "/async"));
    REQUIRE(res.size() == 2);
    for (const auto& one : res) {
      CHECK(one.status == 500);
      CHECK(one.header("X-Trace") == "outer");
    }
  }

  TEST_CASE("middleware: a streaming route's head passes through after()") {
    std::vector<std::string> trace;
    cluster::router r;
    r.use(std::make_shared<tracer>("outer", trace));
    r.get("/events", [](cluster::request&, cluster::response_stream& out) -> asio::awaitable<void> {
      co_await out.write("a");
      co_await out.write("b");
    });
    r.get("/plain", [](const cluster::request&) { return cluster::response::text("p"); });
    auto res = serve(r, request("GET", "/events") + request("GET", "/plain"));
    REQUIRE(res.size() == 2);
    CHECK(res[0].body == "ab");
    CHECK(res[0].header("X-Trace") == "outer");
    CHECK(res[1].body == "p");
    CHECK(res[1].header("X-Trace") == "outer");
  }

  TEST_CASE("hooks: before and after as functions") {
    cluster::router r;
    r.use(cluster::hooks(
        [](cluster::request& req) -> std::optional<cluster::response> {
          if (req.header("Authorization") != "Bearer ok") return cluster::response::text("no\n", 401);
          return std::nullopt;
        },
        [](const cluster::request&, cluster::response& res) { res.set("X-Checked", "yes"); }));
    r.get("/x", [](const cluster::request&) { return cluster::response::text("x"); });
    auto res = serve(r, request("GET", "/x") + request("GET", "/x", "Authorization: Bearer ok\r\n"));
    REQUIRE(res.size() == 2);
    CHECK(res[0].status == 401);
    CHECK(res[1].status == 200);
    CHECK(res[1].header("X-Checked") == "yes");
  }

  TEST_CASE("access log: one common-log line per request, the router's own answers included") {
    temp_dir dir("access-log");
    {
      cluster::router r;
      r.use(cluster::access_log({.path = dir / "access.log"}));
      r.get("/users/:id", [](const cluster::request&) { return cluster::response::text("twelve bytes"); });
      serve(r, request("GET", "/users/7?x=1") + request("HEAD", "/users/7") + request("GET", "/nope"), 1);
    }  // the log goes with its router: what it buffered is written
    auto lines = lines_of(read_file(dir / "access.log"));
    REQUIRE(lines.size() == 3);
    // `%h %l %u %t "%r" %>s %b %D "id"`: no peer address over the in-memory socket.
    CHECK(lines[0].starts_with("- - - ["));
    CHECK(lines[0].find("] \"GET /users/7?x=1 HTTP/1.1\" 200 12 ") != std::string::npos);
    CHECK(lines[0].ends_with(" \"-\""));
    CHECK(lines[1].find("\"HEAD /users/7 HTTP/1.1\" 200 0 ") != std::string::npos);
    CHECK(lines[2].find("\"GET /nope HTTP/1.1\" 404 10 ") != std::string::npos);
  }

  TEST_CASE("access log: a hostile target cannot forge a common-log line") {
    temp_dir dir("access-log");
    {
      cluster::router r;
      r.use(cluster::access_log({.path = dir / "access.log"}));
      // What llhttp lets through in a target (0x21..0x7e) includes quotes
      // and backslashes; CR and LF come only escaped.
      serve(r, request("GET", "/a\"b\\c\"%0d%0a"));
    }
    auto text = read_file(dir / "access.log");
    auto lines = lines_of(text);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("\"GET /a\\x22b\\x5cc\\x22%0d%0a HTTP/1.1\" 404 ") != std::string::npos);
  }

  TEST_CASE("access log: JSON lines, the target escaped, the request id included") {
    temp_dir dir("access-log");
    {
      cluster::router r;
      r.use(cluster::access_log({.format = cluster::log_format::json, .path = dir / "access.log"}));
      r.use(cluster::request_id());
      r.get("/*", [](const cluster::request&) { return cluster::response::text("ok"); });
      serve(r, request("GET", "/caf%C3%A9\"\\", "X-Request-Id: abc-1\r\n"));
    }
    auto lines = lines_of(read_file(dir / "access.log"));
    REQUIRE(lines.size() == 1);
    const std::string& line = lines[0];
    CHECK(line.starts_with("{\"time\":\""));
    CHECK(line.find("\",\"client\":\"\",\"port\":0,\"method\":\"GET\",\"target\":\"/caf%C3%A9\\\"\\\\\","
                    "\"version\":\"1.1\",\"status\":200,\"bytes\":2,\"duration_us\":") != std::string::npos);
    CHECK(line.ends_with(",\"id\":\"abc-1\"}"));
  }

  TEST_CASE("access log escaping: every byte gives valid output") {
    std::string all;
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
    std::string common;
    cluster::detail::escape_common(all, common);
    for (char c : common) {
      CHECK(c >= 0x20);
      CHECK(c <= 0x7e);
      CHECK(c != '"');
    }
    std::string json;
    cluster::detail::append_json_escaped(json, all);
    // Outside escapes: no control character and no lone quote; no byte
    // >= 0x80 is left, since none of them is valid UTF-8 alone.
    for (std::size_t i = 0; i < json.size(); ++i) {
      auto b = static_cast<unsigned char>(json[i]);
      CHECK(b >= 0x20);
      CHECK(b < 0x7f);
      if (json[i] == '\\') ++i;
      else CHECK(json[i] != '"');
    }
  }

  TEST_CASE("access log: lines wait for buffer_bytes, then go out whole") {
    temp_dir dir("access-log");
    cluster::router r;
    auto log = std::make_shared<cluster::access_log>(
        cluster::access_log_options{.path = dir / "access.log", .buffer_bytes = 300});
    r.use(log);
    r.get("/x", [](const cluster::request&) { return cluster::response::text("x"); });
    serve(r, request("GET", "/x"));
    CHECK(read_file(dir / "access.log").empty());
    serve(r, request("GET", "/x") + request("GET", "/x") + request("GET", "/x") + request("GET", "/x"));
    auto written = lines_of(read_file(dir / "access.log"));
    CHECK(!written.empty());
    CHECK(written.size() < 5);
    log->flush();
    CHECK(lines_of(read_file(dir / "access.log")).size() == 5);
  }

  TEST_CASE("access log: a file that cannot be opened is an error naming it") {
    CHECK_THROWS_WITH_AS(cluster::access_log({.path = "/nonexistent-dir/access.log"}),
                         doctest::Contains("/nonexistent-dir/access.log"), std::system_error);
  }

  TEST_CASE("cors: a preflight from an allowed origin gets the router's 204 with the CORS fields") {
    cluster::router r;
    r.use(cluster::cors({.origins = {"https://app.example"}, .credentials = true}));
    r.post("/api", [](const cluster::request&) { return cluster::response::text("posted"); });
    auto res = serve(r, request("OPTIONS", "/api",
                                   "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                                   "Access-Control-Request-Headers: content-type\r\n") +
                               request("OPTIONS", "/api",
                                       "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n") +
                               request("POST", "/api", "Origin: https://app.example\r\nContent-Length: 0\r\n") +
                               request("POST", "/api", "Origin: https://evil.example\r\nContent-Length: 0\r\n"));
    REQUIRE(res.size() == 4);
    CHECK(res[0].status == 204);
    CHECK(res[0].header("Allow") == "POST, OPTIONS");
    CHECK(res[0].header("Access-Control-Allow-Origin") == "https://app.example");
    CHECK(res[0].header("Access-Control-Allow-Methods") == "GET, HEAD, POST, PUT, PATCH, DELETE");
    CHECK(res[0].header("Access-Control-Allow-Headers") == "Content-Type, Authorization, X-Request-Id");
    CHECK(res[0].header("Access-Control-Max-Age") == "600");
    CHECK(res[0].header("Access-Control-Allow-Credentials") == "true");
    CHECK(res[0].header("Vary") == "Origin");
    // Another origin: the router's OPTIONS answer, no CORS field.
    CHECK(res[1].status == 204);
    CHECK(res[1].header("Allow") == "POST, OPTIONS");
    CHECK_FALSE(res[1].has_header("Access-Control-Allow-Origin"));
    CHECK(res[2].body == "posted");
    CHECK(res[2].header("Access-Control-Allow-Origin") == "https://app.example");
    CHECK(res[2].header("Vary") == "Origin");
    CHECK_FALSE(res[3].has_header("Access-Control-Allow-Origin"));
    CHECK(res[3].header("Vary") == "Origin");
  }

  TEST_CASE("cors: any origin gets '*' and no Vary; credentials with '*' are refused") {
    cluster::router r;
    r.use(cluster::cors());
    r.get("/x", [](const cluster::request&) { return cluster::response::text("x"); });
    auto res = serve(r, request("GET", "/x", "Origin: https://a.example\r\n") + request("GET", "/x"));
    REQUIRE(res.size() == 2);
    CHECK(res[0].header("Access-Control-Allow-Origin") == "*");
    CHECK_FALSE(res[0].has_header("Vary"));
    CHECK_FALSE(res[1].has_header("Access-Control-Allow-Origin"));
    CHECK_THROWS_AS(cluster::cors({.credentials = true}), std::invalid_argument);
    CHECK_THROWS_AS(cluster::cors({.origins = {}}), std::invalid_argument);
  }

  TEST_CASE("request id: a sound incoming id is kept, anything else replaced by a unique one") {
    cluster::router r;
    r.use(cluster::request_id());
    r.get("/x", [](const cluster::request& req) { return cluster::response::text(std::string(req.id())); });
    std::string too_long(65, 'a');
    auto res = serve(r, request("GET", "/x", "X-Request-Id: trace-42.a:b_c\r\n") +
                               request("GET", "/x", "X-Request-Id: " + too_long + "\r\n") +
                               request("GET", "/x", "X-Request-Id: bad id\r\n") + request("GET", "/x") +
                               request("GET", "/missing"));
    REQUIRE(res.size() == 5);
    CHECK(res[0].body == "trace-42.a:b_c");
    CHECK(res[0].header("X-Request-Id") == "trace-42.a:b_c");
    std::set<std::string> made;
    for (std::size_t i = 1; i < 4; ++i) {
      CHECK(res[i].body != too_long);
      CHECK(cluster::request_id::acceptable(res[i].body));
      CHECK(res[i].header("X-Request-Id") == res[i].body);
      made.insert(res[i].body);
    }
    CHECK(made.size() == 3);
    CHECK(res[4].status == 404);
    CHECK(res[4].has_header("X-Request-Id"));
  }
}
