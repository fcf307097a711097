// Unit tests: cluster::router over an in-memory connection: matching
// (parameters, wildcards, decoding, dot segments, precedence), the answers
// HTTP expects when no route fits (404, 405 with Allow, HEAD, OPTIONS), the
// three handler shapes in one router, and pattern errors at registration.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cluster/router.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using namespace test_support;

namespace {

std::string get(const std::string& target, const std::string& method = "GET", const std::string& fields = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n";
}

std::string with_body(const std::string& method, const std::string& target, const std::string& body) {
  return method + " " + target + " HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

/// The responses `r` gives to `input` on one connection; `heads` lists the
/// indexes of HEAD requests (their responses have no body).
std::vector<http_response> serve(cluster::router& r, const std::string& input, std::vector<std::size_t> heads = {}) {
  cluster::options opts;
  auto wire = serve_in_memory(r, opts, {input});
  auto out = parse_responses(wire.output, [heads](std::size_t i, const http_response&) {
    return std::find(heads.begin(), heads.end(), i) != heads.end();
  });
  REQUIRE(out.error.empty());
  return out.finals();
}

http_response one(cluster::router& r, const std::string& input, bool head = false) {
  auto all = serve(r, input, head ? std::vector<std::size_t>{0} : std::vector<std::size_t>{});
  REQUIRE(all.size() == 1);
  return all[0];
}

// A plain route answering with the route's name and its parameters.
auto says(std::string name) {
  return [name](const cluster::request& req) {
    std::string body = name;
    for (const auto& p : req.params()) body += " " + std::string(p.name) + "=" + std::string(p.value);
    return cluster::response::text(body);
  };
}

// The users table of the tests: literal, parameter and wildcard routes.
cluster::router users_router() {
  cluster::router r;
  r.get("/", says("root"));
  r.get("/users", says("list"));
  r.post("/users", says("create"));
  r.get("/users/me", says("me"));
  r.get("/users/:id", says("show"));
  r.del("/users/:id", says("delete"));
  r.get("/users/:id/posts/:post", says("post"));
  r.get("/static/*path", says("static"));
  r.get("/docs/", says("docs-dir"));
  return r;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("router: named parameters are set on the request, decoded") {
    auto r = users_router();
    CHECK(one(r, get("/users/42")).body == "show id=42");
    CHECK(one(r, get("/users/7/posts/hello%20world")).body == "post id=7 post=hello world");
    CHECK(one(r, get("/users/Zo%C3%AB")).body == "show id=Zo\xC3\xAB");
    CHECK(one(r, get("/")).body == "root");
  }

  TEST_CASE("router: an encoded '/' stays inside its segment") {
    auto r = users_router();
    CHECK(one(r, get("/users/a%2Fb")).body == "show id=a/b");
    CHECK(one(r, get("/users/a%2Fposts%2Fb")).body == "show id=a/posts/b");
  }

  TEST_CASE("router: a trailing wildcard takes the rest of the path, one segment or more") {
    auto r = users_router();
    CHECK(one(r, get("/static/css/site.css")).body == "static path=css/site.css");
    CHECK(one(r, get("/static/")).body == "static path=");
    CHECK(one(r, get("/static/a%20b/c")).body == "static path=a b/c");
    CHECK(one(r, get("/static")).status == 404);
    cluster::router bare;
    bare.get("/files/*", says("files"));
    CHECK(one(bare, get("/files/x/y")).body == "files *=x/y");
  }

  TEST_CASE("router: a literal segment wins over a parameter, a parameter over a wildcard") {
    cluster::router r = users_router();
    r.get("/users/*rest", says("rest"));
    CHECK(one(r, get("/users/me")).body == "me");
    CHECK(one(r, get("/users/5")).body == "show id=5");
    CHECK(one(r, get("/users/5/comments")).body == "rest rest=5/comments");
    // The literal has no DELETE: the parameter route answers it.
    CHECK(one(r, get("/users/me", "DELETE")).body == "delete id=me");
  }

  TEST_CASE("router: dot segments are removed and never climb above the root") {
    auto r = users_router();
    CHECK(one(r, get("/static/../users/3")).body == "show id=3");
    CHECK(one(r, get("/../../users/3")).body == "show id=3");
    CHECK(one(r, get("/users/./3")).body == "show id=3");
    CHECK(one(r, get("/users/%2e%2e/users/4")).body == "show id=4");
    CHECK(one(r, get("/static/a/..")).body == "static path=");
  }

  TEST_CASE("router: a malformed escape or an escaped NUL in the path is answered 400") {
    auto r = users_router();
    CHECK(one(r, get("/users/%zz")).status == 400);
    CHECK(one(r, get("/users/%4")).status == 400);
    CHECK(one(r, get("/users/a%00b")).status == 400);
  }

  TEST_CASE("router: a path with more segments than the router handles is answered 414") {
    auto r = users_router();
    std::string deep;
    for (int i = 0; i < 65; ++i) deep += "/a";
    CHECK(one(r, get(deep)).status == 414);
  }

  TEST_CASE("router: no route for the path is 404; other methods only is 405 with Allow") {
    auto r = users_router();
    CHECK(one(r, get("/nothing")).status == 404);
    auto refused = one(r, get("/users/9", "PUT"));
    CHECK(refused.status == 405);
    CHECK(refused.header("Allow") == "GET, HEAD, DELETE, OPTIONS");
    auto list = one(r, get("/users", "PATCH"));
    CHECK(list.status == 405);
    CHECK(list.header("Allow") == "GET, HEAD, POST, OPTIONS");
  }

  TEST_CASE("router: HEAD is answered by the GET route, without the body") {
    auto r = users_router();
    auto full = one(r, get("/users/42"));
    auto head = one(r, get("/users/42", "HEAD"), true);
    CHECK(head.status == 200);
    CHECK(head.body.empty());
    CHECK(head.header("Content-Length") == full.header("Content-Length"));
  }

  TEST_CASE("router: OPTIONS is answered 204 with Allow, unless a route answers it") {
    auto r = users_router();
    auto options = one(r, get("/users/1", "OPTIONS"));
    CHECK(options.status == 204);
    CHECK(options.header("Allow") == "GET, HEAD, DELETE, OPTIONS");
    CHECK(one(r, get("/nothing", "OPTIONS")).status == 404);
    auto star = one(r, get("*", "OPTIONS"));
    CHECK(star.status == 204);
    CHECK(star.header("Allow") == "GET, HEAD, POST, DELETE, OPTIONS");
    r.options("/users", says("own options"));
    CHECK(one(r, get("/users", "OPTIONS")).body == "own options");
  }

  TEST_CASE("router: a trailing slash is significant") {
    auto r = users_router();
    CHECK(one(r, get("/users/")).status == 404);
    CHECK(one(r, get("/docs/")).body == "docs-dir");
    CHECK(one(r, get("/docs")).status == 404);
  }

  TEST_CASE("router: an absolute-form target is routed by its path") {
    auto r = users_router();
    CHECK(one(r, get("http://h/users/8?x=1")).body == "show id=8");
  }

  TEST_CASE("router: a route for any method yields to one for the request's method") {
    cluster::router r;
    r.any("/thing", says("any"));
    r.put("/thing", says("put"));
    CHECK(one(r, get("/thing", "PUT")).body == "put");
    CHECK(one(r, get("/thing", "PATCH")).body == "any");
    CHECK(one(r, get("/thing", "OPTIONS")).body == "any");
  }

  TEST_CASE("router: plain, coroutine and streaming routes in one router, bodies read for each") {
    for (bool with_stream : {false, true}) {
      CAPTURE(with_stream);
      cluster::router r;
      r.post("/plain", [](const cluster::request& req) { return cluster::response::text("plain " + std::string(req.body())); });
      r.post("/async", [](cluster::request& req) -> asio::awaitable<cluster::response> {
        co_return cluster::response::text("async " + std::string(req.body()) + " " + std::string(req.param("x")));
      });
      if (with_stream)
        r.post("/stream", [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
          co_await out.start(cluster::response::with(200, "", "text/plain"));
          for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
            co_await out.write(piece);
        });
      std::string input = with_body("POST", "/plain", "one") + with_body("POST", "/async", "two") +
                          with_body("POST", "/nothing", "ignored") + with_body("PUT", "/plain", "ignored");
      if (with_stream) input += with_body("POST", "/stream", "three");
      input += with_body("POST", "/plain", "four");
      auto all = serve(r, input);
      REQUIRE(all.size() == (with_stream ? 6u : 5u));
      CHECK(all[0].body == "plain one");
      CHECK(all[1].body == "async two ");
      CHECK(all[2].status == 404);
      CHECK(all[3].status == 405);
      if (with_stream) CHECK(all[4].body == "three");
      CHECK(all.back().body == "plain four");
    }
  }

  TEST_CASE("router: a route that throws is answered 500 and the connection goes on") {
    cluster::router r;
    r.get("/boom", [](const cluster::request&) -> cluster::response { throw std::runtime_error("boom"); });
    r.get("/ok", says("ok"));
    auto all = serve(r, get("/boom") + get("/ok"));
    REQUIRE(all.size() == 2);
    CHECK(all[0].status == 500);
    CHECK(all[1].body == "ok");
  }

  TEST_CASE("router: bad patterns and conflicting routes are refused at registration, naming the pattern") {
    cluster::router r;
    auto refuses = [&](const std::string& pattern, const std::string& why) {
      CAPTURE(pattern);
      try {
        r.get(pattern, says("x"));
        FAIL("accepted");
      } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        CHECK(what.find("\"" + pattern + "\"") != std::string::npos);
        CHECK(what.find(why) != std::string::npos);
      }
    };
    refuses("users", "must start with '/'");
    refuses("/users/:", "needs a name");
    refuses("/users/:id/:id", "appears twice");
    refuses("/files/*/x", "wildcard must be the last");
    refuses("/a//b", "empty segment");
    refuses("/a/../b", "dot segments");
    refuses("/a%20b", "decoded");
    refuses("/users/:user-id", "letters, digits");
    refuses("/:a/:b/:c/:d/:e/:f/:g/:h/:i", "more than 8 parameters");
    r.get("/users/:id", says("x"));
    refuses("/users/:other", "conflicts with GET \"/users/:id\"");
    CHECK_THROWS_AS(r.add("FETCH", "/x", says("x")), std::invalid_argument);
    CHECK_NOTHROW(r.post("/users/:other", says("x")));
  }
}
