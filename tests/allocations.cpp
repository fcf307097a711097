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

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <thread>

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

/// One server connection on a loopback port, served in a thread of its own
/// (bounded: the io_context stops after 60 s whatever happens), and a
/// blocking client connected to it.
class loopback_server {
 public:
  template <class Handler>
  explicit loopback_server(Handler& handler)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), guard_(io_), state_(opts_) {
    guard_.expires_after(std::chrono::seconds(60));
    guard_.async_wait([this](const asio::error_code& ec) {
      if (!ec) io_.stop();
    });
    acceptor_.async_accept([this, &handler](const asio::error_code& ec, tcp::socket socket) {
      if (ec) return;
      asio::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);  // as a worker does
      auto c = cluster::detail::connection::open(std::move(socket), state_);
      asio::co_spawn(io_, cluster::detail::connection::serve(std::move(c), handler), asio::detached);
    });
    thread_ = std::thread([this] {
      server_thread = true;
      io_.run();
    });
    client_.connect(acceptor_.local_endpoint());
    client_.set_option(tcp::no_delay(true));
    timeval tv{10, 0};  // a read that waits longer fails the test instead of hanging it
    ::setsockopt(client_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  ~loopback_server() {
    asio::error_code ignored;
    client_.close(ignored);  // the connection sees end of file and ends
    asio::post(io_, [this] {
      guard_.cancel();
      asio::error_code e;
      acceptor_.close(e);
    });
    thread_.join();
  }

  /// Sends `count` requests for `target`, `depth` per write, each batch
  /// after the previous one's responses; returns the responses whose body
  /// was `body` (all of them when the server behaves).
  std::size_t exchange(std::string_view target, std::size_t count, std::size_t depth, std::string_view body) {
    std::string one = "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n";
    std::string batch;
    for (std::size_t i = 0; i < depth; ++i) batch += one;
    std::size_t answered = 0;
    std::string in;
    char buf[65536];
    // In an io_uring build the server's first operations (accept, the guard
    // timer) were submitted from this thread, and the kernel runs a ring
    // operation's completion work on the thread that submitted it,
    // interrupting what that thread is blocked in: a recv on a socket with
    // SO_RCVTIMEO is then not restarted but fails with EINTR. Only the
    // client's blocking calls see it; they are simply made again.
    for (std::size_t sent = 0; sent < count; sent += depth) {
      asio::error_code ec;
      for (std::size_t written = 0; written < batch.size();) {
        written += client_.write_some(asio::buffer(batch.data() + written, batch.size() - written), ec);
        if (ec && ec != asio::error::interrupted) return answered;
      }
      std::size_t expected = answered + depth;
      while (answered < expected) {
        std::size_t n = client_.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::interrupted) continue;
        if (ec) return answered;
        in.append(buf, n);
        // Complete responses: a header block, then a body of Content-Length.
        for (;;) {
          std::size_t end = in.find("\r\n\r\n");
          if (end == std::string::npos) break;
          std::size_t cl = in.find("Content-Length: ");
          if (cl == std::string::npos || cl > end) return answered;
          std::size_t length = std::strtoul(in.c_str() + cl + 16, nullptr, 10);
          if (in.size() < end + 4 + length) break;
          if (std::string_view(in).substr(end + 4, length) == body) ++answered;
          in.erase(0, end + 4 + length);
        }
      }
    }
    return answered;
  }

 private:
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  asio::steady_timer guard_;
  cluster::options opts_;
  cluster::detail::server_state state_;
  std::thread thread_;
  asio::io_context client_io_{1};  // the client is blocking, on the test thread
  tcp::socket client_{client_io_};
};

/// Counts the server thread's allocations over `count` requests.
std::uint64_t allocations_over(loopback_server& server, std::string_view target, std::size_t count,
                               std::size_t depth, std::string_view body) {
  allocations = 0;
  counting = true;
  std::size_t answered = server.exchange(target, count, depth, body);
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
      loopback_server server(hello);
      REQUIRE(server.exchange("/", 1024, depth, "Hello World\n") == 1024);  // warm: buffers at their size
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
      loopback_server server(hello);
      REQUIRE(server.exchange("/", 1024, depth, "Hello World\n") == 1024);
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
        loopback_server server(r);
        REQUIRE(server.exchange(target, 1024, depth, "Hello World\n") == 1024);
        CHECK(allocations_over(server, target, 4096, depth, "Hello World\n") == 0);
      }
    }
  }
}
