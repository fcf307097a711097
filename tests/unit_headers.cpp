// Unit tests: header field names, values and the response header store.
#include <cluster/headers.hpp>
#include <cluster/response.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_SUITE("unit") {
  TEST_CASE("header names compare case-insensitively") {
    CHECK(cluster::iequals("Content-Length", "content-length"));
    CHECK(cluster::iequals("HOST", "host"));
    CHECK_FALSE(cluster::iequals("Host", "Hosts"));
    CHECK_FALSE(cluster::iequals("a-b", "a_b"));
  }

  TEST_CASE("response headers replace on set, repeat on add, and keep order") {
    cluster::response_headers h;
    h.set("Content-Type", "text/plain");
    h.add("Set-Cookie", "a=1");
    h.add("Set-Cookie", "b=2");
    h.set("content-type", "application/json");
    CHECK(h.get("CONTENT-TYPE") == "application/json");
    CHECK(h.get("set-cookie") == "a=1");
    CHECK(h.view() == "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-type: application/json\r\n");
    CHECK(h.erase("Set-Cookie") == 2);
    CHECK(h.view() == "content-type: application/json\r\n");
    CHECK_FALSE(h.contains("Set-Cookie"));
  }

  TEST_CASE("response headers refuse values that could split a response") {
    cluster::response_headers h;
    CHECK_THROWS_AS(h.set("X", "a\r\nInjected: 1"), std::invalid_argument);
    CHECK_THROWS_AS(h.set("X", std::string("a\0b", 3)), std::invalid_argument);
    CHECK_THROWS_AS(h.set("Bad Name", "v"), std::invalid_argument);
    CHECK_THROWS_AS(h.set("", "v"), std::invalid_argument);
    CHECK(h.empty());
  }

  TEST_CASE("response headers leave framing to the server") {
    cluster::response_headers h;
    CHECK_THROWS_WITH_AS(h.set("Content-Length", "5"), doctest::Contains("Content-Length"), std::invalid_argument);
    CHECK_THROWS_AS(h.add("transfer-encoding", "chunked"), std::invalid_argument);
  }

  TEST_CASE("response headers grow past their inline room and survive copies and moves") {
    cluster::response_headers h;
    std::string expected;
    for (int i = 0; i < 20; ++i) {
      std::string name = "X-Field-" + std::to_string(i);
      std::string value(20, static_cast<char>('a' + i));
      h.add(name, value);
      expected += name + ": " + value + "\r\n";
    }
    CHECK(h.view() == expected);
    cluster::response_headers copy = h;
    cluster::response_headers moved = std::move(h);
    CHECK(copy.view() == expected);
    CHECK(moved.view() == expected);
    CHECK(h.empty());  // NOLINT: a moved-from store is empty and usable
    h.set("A", "b");
    CHECK(h.view() == "A: b\r\n");
    cluster::response_headers small;
    small.set("K", "v");
    cluster::response_headers small_moved = std::move(small);
    CHECK(small_moved.view() == "K: v\r\n");
  }

  TEST_CASE("response helpers set status, body and content type") {
    auto t = cluster::response::text("hi\n", cluster::status::not_found);
    CHECK(t.status == 404);
    CHECK(t.body == "hi\n");
    CHECK(t.headers.get("Content-Type") == "text/plain; charset=utf-8");
    auto j = cluster::response::json("{}", 201);
    CHECK(j.headers.get("content-type") == "application/json");
    auto e = cluster::response::empty(cluster::status::no_content);
    CHECK(e.status == 204);
    CHECK(e.headers.empty());
    CHECK(cluster::reason_phrase(431) == "Request Header Fields Too Large");
    CHECK(cluster::reason_phrase(799) == "Unknown");
  }
}
