// Unit tests: the request parser (llhttp, limits, framing) without sockets.
#include <cluster/detail/parser.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct parsed {
  std::string method, target, path, query, body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool keep_alive = false;
  int minor = -1;
};

struct outcome {
  std::vector<parsed> requests;
  int error = 0;  // status of a refused request, 0 when none
};

// Feeds `input` to a parser `step` bytes at a time, answering every complete
// request, the way a connection does.
outcome feed(const std::string& input, std::size_t step, const cluster::options& opts = {}) {
  cluster::detail::request_parser p(opts);
  outcome out;
  std::size_t pos = 0;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto st = p.next();
    if (st == cluster::detail::parse_state::error) {
      out.error = p.error_status();
      return out;
    }
    if (st == cluster::detail::parse_state::message) {
      const cluster::request& r = p.current();
      parsed q{std::string(r.method()), std::string(r.target()), std::string(r.path()), std::string(r.query()),
               std::string(r.body()), {}, r.keep_alive(), r.version_minor()};
      for (auto& f : r.headers()) q.headers.emplace_back(f.name, f.value);
      out.requests.push_back(std::move(q));
      p.consume();
      continue;
    }
    if (pos == input.size()) return out;
    auto space = p.read_space();
    std::size_t n = std::min({step, space.size(), input.size() - pos});
    REQUIRE(n > 0);
    std::memcpy(space.data(), input.data() + pos, n);
    p.commit(n);
    pos += n;
  }
  FAIL("parser did not converge");
  return out;
}

const std::string get = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nX-Custom:  padded value \t\r\n\r\n";

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("a GET is parsed into method, target, path, query and trimmed headers") {
    for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
      CAPTURE(step);
      auto o = feed(get, step);
      REQUIRE(o.requests.size() == 1);
      auto& r = o.requests[0];
      CHECK(r.method == "GET");
      CHECK(r.target == "/a/b?x=1&y=2");
      CHECK(r.path == "/a/b");
      CHECK(r.query == "x=1&y=2");
      CHECK(r.minor == 1);
      CHECK(r.keep_alive);
      REQUIRE(r.headers.size() == 2);
      CHECK(r.headers[0] == std::pair<std::string, std::string>{"Host", "example.com"});
      CHECK(r.headers[1].second == "padded value");
    }
  }

  TEST_CASE("pipelined requests come out one at a time, in order, at any split") {
    std::string in = get + "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
                     "DELETE /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    for (std::size_t step = 1; step <= in.size(); step += 13) {
      CAPTURE(step);
      auto o = feed(in, step);
      CHECK(o.error == 0);
      REQUIRE(o.requests.size() == 3);
      CHECK(o.requests[0].target == "/a/b?x=1&y=2");
      CHECK(o.requests[1].body == "hello");
      CHECK(o.requests[2].method == "DELETE");
      CHECK_FALSE(o.requests[2].keep_alive);
    }
  }

  TEST_CASE("a chunked body is de-chunked, extensions and trailers ignored") {
    std::string in =
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
        "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{64}, std::size_t{4096}}) {
      auto o = feed(in, step);
      REQUIRE(o.requests.size() == 2);
      CHECK(o.requests[0].body == "hello world");
      CHECK(o.requests[1].target == "/next");
    }
  }

  TEST_CASE("a body larger than the read buffer is received whole") {
    std::string body(200'000, 'z');
    for (std::size_t i = 0; i < body.size(); i += 97) body[i] = static_cast<char>('a' + i % 26);
    std::string in = "PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                     body + "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    auto o = feed(in, 1500);
    REQUIRE(o.requests.size() == 2);
    CHECK(o.requests[0].body == body);
  }

  TEST_CASE("HTTP/1.0 closes unless it asks for keep-alive") {
    auto a = feed("GET / HTTP/1.0\r\n\r\n", 4096);
    REQUIRE(a.requests.size() == 1);
    CHECK_FALSE(a.requests[0].keep_alive);
    CHECK(a.requests[0].minor == 0);
    auto b = feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 4096);
    REQUIRE(b.requests.size() == 1);
    CHECK(b.requests[0].keep_alive);
  }

  TEST_CASE("malformed requests are refused with 400") {
    const char* bad[] = {
        "garbage\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                                           // no Host (RFC 9112 §3.2)
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",                     // two Hosts
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",             // obs-fold
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",                               // space before colon
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: a\r\n\r\n",
    };
    for (const char* in : bad) {
      CAPTURE(in);
      auto o = feed(in, 4096);
      CHECK(o.requests.empty());
      CHECK(o.error == 400);
    }
  }

  TEST_CASE("an unknown method gets 501 and CONNECT is declined with 501") {
    CHECK(feed("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 4096).error == 501);
    CHECK(feed("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 4096).error == 501);
  }

  TEST_CASE("limits answer 414, 431 and 413") {
    cluster::options o;
    o.max_target = 64;
    o.max_header_bytes = 512;
    o.max_headers = 4;
    o.max_body = 10;
    CHECK(feed("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 4096, o).error == 414);
    CHECK(feed("GET /" + std::string(100, 'a'), 16, o).error == 414);  // decided before the line ends
    CHECK(feed("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(600, 'v') + "\r\n\r\n", 100, o).error == 431);
    CHECK(feed("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 4096, o).error == 431);
    CHECK(feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", 4096, o).error == 413);
    CHECK(feed("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n",
               4096, o)
              .error == 413);
    auto ok = feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", 3, o);
    REQUIRE(ok.requests.size() == 1);
    CHECK(ok.requests[0].body == "0123456789");
  }

  TEST_CASE("a declined Upgrade is answered as an ordinary request and parsing goes on") {
    auto o = feed(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /after HTTP/1.1\r\nHost: "
        "a\r\n\r\n",
        4096);
    REQUIRE(o.requests.size() == 2);
    CHECK(o.requests[0].target == "/ws");
    CHECK(o.requests[1].target == "/after");
  }

  TEST_CASE("the parser reports idle only between requests") {
    cluster::options opts;
    cluster::detail::request_parser p(opts);
    CHECK(p.idle());
    auto space = p.read_space();
    std::string part = "GET / HTTP/1.1\r\nHo";
    std::memcpy(space.data(), part.data(), part.size());
    p.commit(part.size());
    CHECK(p.next() == cluster::detail::parse_state::need_more);
    CHECK_FALSE(p.idle());
    CHECK_FALSE(p.headers_done());
    space = p.read_space();
    std::string rest = "st: a\r\n\r\n";
    std::memcpy(space.data(), rest.data(), rest.size());
    p.commit(rest.size());
    CHECK(p.next() == cluster::detail::parse_state::message);
    p.consume();
    CHECK(p.idle());
  }
}
