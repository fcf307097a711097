// Heap allocations per request in steady state (issue 5: zero for the hello
// handler). A real connection (asio TCP socket on 127.0.0.1, the worker's
// connection type) serves in a server thread; every operator new made by that
// thread is counted while a client on the test thread sends a few thousand
// requests on one keep-alive connection, one at a time and 16-deep pipelined.
// This is its own executable: it replaces the global operator new.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cluster/detail/connection.hpp>
#include <cluster/router.hpp>

#include "support/loopback_server.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::atomic<bool> counting{false};
std::atomic<std::uint64_t> allocations{0};
thread_local bool server_thread = false;

void note() noexcept {
  if (server_thread && counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}

void* allocate(std::size_t n, std::size_t align) {
  note();
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n != 0 ? n : 1);
  } else if (posix_memalign(&p, align, n != 0 ? n : 1) != 0) {
    p = nullptr;
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return allocate(n, 0); }
void* operator new[](std::size_t n) { return allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return allocate(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept {
  return operator new(n, a, t);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using tcp = asio::ip::tcp;
using test_support::loopback_server;
using test_support::pattern;

void on_server_thread() { server_thread = true; }

/// Sends `count` requests for `target` (a POST with `upload` as its body
/// when it is not empty), `depth` per write, each batch after the previous
/// one's responses; returns the responses whose body was `body` (all of
/// them when the server behaves).
std::size_t exchange(tcp::socket& client, std::string_view target, std::size_t count, std::size_t depth,
                     std::string_view body, std::string_view upload = {}) {
  std::string one = upload.empty()
                        ? "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n"
                        : "POST " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                              std::to_string(upload.size()) + "\r\n\r\n" + std::string(upload);
  std::string batch;
  for (std::size_t i = 0; i < depth; ++i) batch += one;
  std::size_t answered = 0;
  std::string in;
  std::vector<char> buf(1 << 20);
  for (std::size_t sent = 0; sent < count; sent += depth) {
    asio::error_code ec;
    test_support::write_all(client, batch, ec);
    if (ec) return answered;
    std::size_t expected = answered + depth;
    while (answered < expected) {
      std::size_t n = test_support::read_some(client, asio::buffer(buf), ec);
      if (ec) return answered;
      in.append(buf.data(), n);
      // Complete responses: a header block, then a body of Content-Length.
      std::size_t at = 0;
      for (;;) {
        std::size_t end = in.find("\r\n\r\n", at);
        if (end == std::string::npos) break;
        std::size_t cl = in.find("Content-Length: ", at);
        if (cl == std::string::npos || cl > end) return answered;
        std::size_t length = std::strtoul(in.c_str() + cl + 16, nullptr, 10);
        if (in.size() < end + 4 + length) break;
        if (std::string_view(in).substr(end + 4, length) == body) ++answered;
        at = end + 4 + length;
      }
      in.erase(0, at);
    }
  }
  return answered;
}

/// Counts the server thread's allocations over `count` requests.
std::uint64_t allocations_over(loopback_server& server, std::string_view target, std::size_t count,
                               std::size_t depth, std::string_view body, std::string_view upload = {}) {
  allocations = 0;
  counting = true;
  std::size_t answered = exchange(server.client(), target, count, depth, body, upload);
  counting = false;
  CHECK(answered == count);
  return allocations.load();
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("hello allocates nothing per request once a connection is warm, plain and pipelined") {
    auto hello = [](const cluster::request& req) {
      if (req.path() == "/allocate") return cluster::response::text(std::string(200, 'x'));  // the control
      return cluster::response::text("Hello World\n");
    };
    for (std::size_t depth : {std::size_t{1}, std::size_t{16}}) {
      CAPTURE(depth);
      loopback_server server(hello, on_server_thread);
      REQUIRE(exchange(server.client(), "/", 1024, depth, "Hello World\n") == 1024);  // warm: buffers at their size
      CHECK(allocations_over(server, "/", 4096, depth, "Hello World\n") == 0);
      // The counter sees the server thread: a body too long for the string's
      // inline storage costs at least one allocation per request.
      CHECK(allocations_over(server, "/allocate", 256, depth, std::string(200, 'x')) >= 256);
    }
  }
}

TEST_SUITE("unit") {
  TEST_CASE("a coroutine handler allocates nothing per request either") {
    auto hello = [](cluster::request& req) -> asio::awaitable<cluster::response> {
      if (req.path() == "/allocate") co_return cluster::response::text(std::string(200, 'x'));
      co_return cluster::response::text("Hello World\n");
    };
    for (std::size_t depth : {std::size_t{1}, std::size_t{16}}) {
      CAPTURE(depth);
      loopback_server server(hello, on_server_thread);
      REQUIRE(exchange(server.client(), "/", 1024, depth, "Hello World\n") == 1024);
      CHECK(allocations_over(server, "/", 4096, depth, "Hello World\n") == 0);
      CHECK(allocations_over(server, "/allocate", 256, depth, std::string(200, 'x')) >= 256);
    }
  }
}

TEST_SUITE("unit") {
  TEST_CASE("a router allocates nothing per request: parameters, escapes, query fields, plain and coroutine routes") {
    cluster::router r;
    for (int i = 0; i < 20; ++i) r.get("/filler" + std::to_string(i) + "/:id", [](const cluster::request&) {
      return cluster::response::text("filler\n");
    });
    // The answer says whether the route saw what was sent, decoded.
    auto check = [](const cluster::request& req) {
      bool right = req.param("id") == "42" && req.param("post") == "a b" && req.query_param("limit") == "10" &&
                   req.query_param("q") == "x y" && req.has_query_param("flag");
      return cluster::response::text(right ? "Hello World\n" : "wrong\n");
    };
    r.get("/users/:id/posts/:post", check);
    r.get("/async/:id/posts/:post", [check](cluster::request& req) -> asio::awaitable<cluster::response> {
      co_return check(req);
    });
    for (std::string_view target : {"/users/42/posts/a%20b?limit=10&q=x+y&flag", "/async/42/posts/a%20b?limit=10&q=x%20y&flag"}) {
      for (std::size_t depth : {std::size_t{1}, std::size_t{16}}) {
        CAPTURE(target);
        CAPTURE(depth);
        loopback_server server(r, on_server_thread);
        REQUIRE(exchange(server.client(), target, 1024, depth, "Hello World\n") == 1024);
        CHECK(allocations_over(server, target, 4096, depth, "Hello World\n") == 0);
      }
    }
  }
}

TEST_SUITE("unit") {
  TEST_CASE("bodies: shared and view bodies cost no allocation per request; an owned one moved in costs its own") {
    const std::string big = pattern(64 * 1024);
    auto shared = std::make_shared<const std::string>(big);
    auto handler = [&](const cluster::request& req) {
      if (req.path() == "/shared") return cluster::response::shared(shared, "application/octet-stream");
      if (req.path() == "/view") return cluster::response::view(big, "application/octet-stream");
      if (req.path() == "/tiny") return cluster::response::view("Hello World\n", "text/plain");
      return cluster::response::with(200, std::string(big), "application/octet-stream");  // /owned: one copy made here
    };
    for (std::size_t depth : {std::size_t{1}, std::size_t{16}}) {
      CAPTURE(depth);
      loopback_server server(handler, on_server_thread);
      for (std::string_view target : {"/shared", "/view", "/owned"})
        REQUIRE(exchange(server.client(), target, 64, depth, big) == 64);  // warm
      REQUIRE(exchange(server.client(), "/tiny", 64, depth, "Hello World\n") == 64);
      CHECK(allocations_over(server, "/shared", 512, depth, big) == 0);
      CHECK(allocations_over(server, "/view", 512, depth, big) == 0);
      CHECK(allocations_over(server, "/tiny", 1024, depth, "Hello World\n") == 0);
      // The handler's std::string(big) is the one allocation: the writer
      // moves it, it does not copy it.
      CHECK(allocations_over(server, "/owned", 512, depth, big) == 512);
    }
  }

  TEST_CASE("bodies: a file body costs no heap allocation per request (open, fstat, sendfile and close only)") {
    test_support::temp_dir dir("alloc-file");
    const std::string content = pattern(64 * 1024);
    std::string path = dir / "page.html";
    test_support::write_file(path, content);
    auto handler = [&](const cluster::request&) { return cluster::response::file(path); };
    for (std::size_t depth : {std::size_t{1}, std::size_t{16}}) {
      CAPTURE(depth);
      loopback_server server(handler, on_server_thread);
      REQUIRE(exchange(server.client(), "/", 64, depth, content) == 64);
      CHECK(allocations_over(server, "/", 512, depth, content) == 0);
    }
  }

  TEST_CASE("request bodies: a POST body is stored in one allocation sized from Content-Length") {
    auto handler = [](const cluster::request& req) { return cluster::response::text(std::to_string(req.body().size())); };
    // 100 KB: past what the parser keeps between requests, so a request may
    // pay for its body's storage, at most once (growth by doubling from the
    // first piece would cost about six allocations and copies).
    const std::string upload = pattern(100'000);
    loopback_server server(handler, on_server_thread);
    REQUIRE(exchange(server.client(), "/", 16, 1, "100000", upload) == 16);
    CHECK(allocations_over(server, "/", 256, 1, "100000", upload) <= 256);
    // 64 KiB fits what is kept: no allocation at all once warm.
    const std::string kept = pattern(64 * 1024);
    REQUIRE(exchange(server.client(), "/", 16, 1, "65536", kept) == 16);
    CHECK(allocations_over(server, "/", 256, 1, "65536", kept) == 0);
  }
}
