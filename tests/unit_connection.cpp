// Unit tests: a connection's whole state machine (parse, answer, serialise,
// stream, close) driven over an in-memory socket, with input split into
// chunks, one per read. The same behaviours are tested over real sockets in
// integration_http.cpp; these pin down the exact bytes.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cluster/detail/admin_routes.hpp>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace test_support;

namespace {

// Splits `s` into pieces of `step` bytes.
std::vector<std::string> split(const std::string& s, std::size_t step) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size(); i += step) out.push_back(s.substr(i, step));
  return out;
}

auto whole_echo = [](cluster::request& req) -> asio::awaitable<cluster::response> {
  co_return cluster::response::text(std::string(req.body()));
};

// A streaming handler whose paths pick a behaviour.
auto streaming = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
  if (req.path() == "/stream") {
    co_await out.start(cluster::response::with(200, "", "application/octet-stream"));
    for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
      co_await out.write(piece);
  } else if (req.path() == "/pieces") {
    for (std::string_view p : {"a", "", "bb", "ccc"}) co_await out.write(p);
  } else if (req.path() == "/ignore-body") {
    co_await out.send(cluster::response::text("ignored\n"));
  } else if (req.path() == "/nothing") {
    co_return;
  } else if (req.path() == "/throw-after-start") {
    co_await out.write("partial");
    throw std::runtime_error("boom");
  } else if (req.path() == "/finish") {
    co_await out.write("done");
    co_await out.finish();
    co_await out.finish();
  } else {
    co_await out.send(cluster::response::text(std::string(co_await req.read_body())));
  }
};

const std::string host = "Host: h\r\n";

std::string request(const std::string& method, const std::string& target, const std::string& fields = "",
                    const std::string& body = "") {
  return method + " " + target + " HTTP/1.1\r\n" + host + fields + "\r\n" + body;
}

std::string with_length(const std::string& method, const std::string& target, const std::string& body,
                        const std::string& fields = "") {
  return request(method, target, fields + "Content-Length: " + std::to_string(body.size()) + "\r\n", body);
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("memory: pipelined requests are answered in order at any split, with identical bytes") {
    cluster::options opts;
    std::string in = with_length("POST", "/a", "first") + request("GET", "/b") + with_length("PUT", "/c", "third");
    std::string reference;
    for (std::size_t step : {std::size_t{1}, std::size_t{5}, std::size_t{64}, in.size()}) {
      CAPTURE(step);
      auto wire = serve_in_memory(whole_echo, opts, split(in, step));
      auto out = parse_responses(wire.output);
      CHECK(out.error.empty());
      CHECK_FALSE(out.truncated);
      REQUIRE(out.responses.size() == 3);
      CHECK(out.responses[0].body == "first");
      CHECK(out.responses[1].body.empty());
      CHECK(out.responses[2].body == "third");
      CHECK(wire.closed);
    }
  }

  TEST_CASE("memory: partial writes deliver the same bytes") {
    cluster::options opts;
    std::string in = with_length("POST", "/a", std::string(5000, 'x')) + request("GET", "/stream");
    auto whole = serve_in_memory(streaming, opts, {in});
    auto partial = serve_in_memory(streaming, opts, {in}, 3);
    auto a = parse_responses(whole.output), b = parse_responses(partial.output);
    CHECK(a.error.empty());
    CHECK(b.error.empty());
    REQUIRE(a.responses.size() == 2);
    REQUIRE(b.responses.size() == 2);
    CHECK(a.responses[0].body == b.responses[0].body);
    CHECK(partial.writes > whole.writes);
  }

  TEST_CASE("memory: 100 Continue is sent before the body is read, only to a client that waits for it") {
    cluster::options opts;
    std::string head = request("POST", "/", "Expect: 100-continue\r\nContent-Length: 5\r\n");
    auto wire = serve_in_memory(whole_echo, opts, {head, "hello"});
    CHECK(wire.output.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    auto out = parse_responses(wire.output);
    REQUIRE(out.finals().size() == 1);
    CHECK(out.finals()[0].body == "hello");

    // Body already there with the headers: nothing to wait for.
    auto at_once = serve_in_memory(whole_echo, opts, {head + "hello"});
    CHECK(at_once.output.starts_with("HTTP/1.1 200 OK\r\n"));

    // No expectation, no 100.
    auto plain = serve_in_memory(whole_echo, opts, split(with_length("POST", "/", "hello"), 10));
    CHECK(plain.output.starts_with("HTTP/1.1 200 OK\r\n"));
  }

  TEST_CASE("memory: a request refused from its headers is answered without a 100 and without its body") {
    cluster::options opts;
    opts.max_body = 4;
    auto wire =
        serve_in_memory(whole_echo, opts, {request("POST", "/", "Expect: 100-continue\r\nContent-Length: 5\r\n")});
    CHECK(wire.output.starts_with("HTTP/1.1 413 Content Too Large\r\n"));
    CHECK(wire.output.find("Connection: close\r\n") != std::string::npos);
    CHECK(wire.write_shut);
  }

  TEST_CASE("memory: an unknown expectation gets 417") {
    cluster::options opts;
    auto wire =
        serve_in_memory(whole_echo, opts, {request("POST", "/", "Expect: teapot\r\nContent-Length: 1\r\n", "x")});
    CHECK(wire.output.starts_with("HTTP/1.1 417 Expectation Failed\r\n"));
  }

  TEST_CASE("memory: an unknown method gets 501 and the next request is served on the same connection") {
    cluster::options opts;
    std::string in = with_length("BREW", "/pot", "coffee") + request("GET", "/after");
    for (std::size_t step : {std::size_t{1}, std::size_t{7}, in.size()}) {
      auto wire = serve_in_memory(whole_echo, opts, split(in, step));
      auto out = parse_responses(wire.output);
      REQUIRE(out.responses.size() == 2);
      CHECK(out.responses[0].status == 501);
      CHECK_FALSE(out.responses[0].header("Connection"));
      CHECK(out.responses[1].status == 200);
    }
  }

  TEST_CASE("memory: an error answering HEAD carries no body") {
    cluster::options opts;
    auto wire = serve_in_memory(whole_echo, opts, {"HEAD / HTTP/1.1\r\n\r\n"});  // no Host
    CHECK(wire.output.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    CHECK(wire.output.ends_with("\r\n\r\n"));
  }

  TEST_CASE("memory: a streamed response goes out as chunks, one write per piece, and ends with the last chunk") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {request("GET", "/pieces")});
    CHECK(wire.output.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(wire.output.find("Content-Length") == std::string::npos);
    CHECK(wire.output.ends_with("\r\n\r\n1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n"));
    auto out = parse_responses(wire.output);
    CHECK(out.error.empty());
    CHECK_FALSE(out.truncated);
    REQUIRE(out.responses.size() == 1);
    CHECK(out.responses[0].body == "abbccc");
    CHECK(wire.writes >= 4);  // head with "a", "bb", "ccc", last chunk
  }

  TEST_CASE("memory: HEAD to a streaming handler gets the header section only") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {request("HEAD", "/pieces") + request("GET", "/pieces")});
    auto out = parse_responses(wire.output, [](std::size_t i, const wire_response&) { return i == 0; });
    CHECK(out.error.empty());
    CHECK_FALSE(out.truncated);
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].header("Transfer-Encoding") == "chunked");
    CHECK(out.responses[0].body.empty());
    CHECK(out.responses[1].body == "abbccc");
  }

  TEST_CASE("memory: HTTP/1.0 gets a streamed response unframed, then the connection closes") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {"GET /pieces HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"});
    CHECK(wire.output.find("Transfer-Encoding") == std::string::npos);
    CHECK(wire.output.find("Content-Length") == std::string::npos);
    CHECK(wire.output.find("Connection: close\r\n") != std::string::npos);
    CHECK(wire.output.ends_with("\r\n\r\nabbccc"));
    CHECK(wire.write_shut);
  }

  TEST_CASE("memory: a streaming handler reads the body as it arrives and echoes it piece by piece") {
    cluster::options opts;
    std::string body(20'000, 'q');
    for (std::size_t i = 0; i < body.size(); i += 11) body[i] = static_cast<char>('a' + i % 26);
    std::string in = with_length("POST", "/stream", body) + request("GET", "/after");
    auto wire = serve_in_memory(streaming, opts, split(in, 999));
    auto out = parse_responses(wire.output);
    CHECK(out.error.empty());
    CHECK_FALSE(out.truncated);
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].body == body);
    CHECK(out.responses[1].status == 200);
  }

  TEST_CASE("memory: a streaming handler that reads the whole body gets Content-Length framing") {
    cluster::options opts;
    auto wire = serve_in_memory(
        streaming, opts,
        split(request("PUT", "/", "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 4));
    auto out = parse_responses(wire.output);
    REQUIRE(out.responses.size() == 1);
    CHECK(out.responses[0].body == "abcde");
    CHECK(out.responses[0].header("Content-Length") == "5");
  }

  TEST_CASE("memory: a body past max_body read by a streaming handler is answered 413") {
    cluster::options opts;
    opts.max_body = 6;
    auto wire = serve_in_memory(
        streaming, opts,
        split(request("PUT", "/", "Transfer-Encoding: chunked\r\n", "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n"), 8));
    CHECK(wire.output.starts_with("HTTP/1.1 413 "));
    CHECK(wire.output.find("Connection: close") != std::string::npos);
  }

  TEST_CASE("memory: an unread body is skipped and the connection goes on") {
    cluster::options opts;
    std::string in = with_length("POST", "/ignore-body", std::string(10'000, 'z')) + request("GET", "/after");
    auto wire = serve_in_memory(streaming, opts, split(in, 1000));
    auto out = parse_responses(wire.output);
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].body == "ignored\n");
    CHECK_FALSE(out.responses[0].header("Connection"));
    CHECK(out.responses[1].status == 200);
  }

  TEST_CASE("memory: an unread body the client holds back for 100 Continue closes the connection") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts,
                                {request("POST", "/ignore-body", "Expect: 100-continue\r\nContent-Length: 5\r\n")});
    CHECK(wire.output.find("100 Continue") == std::string::npos);
    CHECK(wire.output.find("Connection: close\r\n") != std::string::npos);
  }

  TEST_CASE("memory: a streaming handler that sends nothing gets 500") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {request("GET", "/nothing")});
    CHECK(wire.output.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
  }

  TEST_CASE("memory: an exception after the response started cuts it short and closes") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {request("GET", "/throw-after-start") + request("GET", "/after")});
    CHECK(wire.output.find("7\r\npartial\r\n") != std::string::npos);
    CHECK(wire.output.find("0\r\n\r\n") == std::string::npos);
    CHECK(wire.output.find("HTTP/1.1", 5) == std::string::npos);  // the next request is not answered
    CHECK(wire.closed);
    auto out = parse_responses(wire.output);
    CHECK(out.error.empty());
    CHECK(out.truncated);
  }

  TEST_CASE("memory: finish() ends the stream once") {
    cluster::options opts;
    auto wire = serve_in_memory(streaming, opts, {request("GET", "/finish")});
    CHECK(wire.output.ends_with("4\r\ndone\r\n0\r\n\r\n"));
  }
}

// Regression tests for what the fuzzers found (fuzz/corpus/*/tail_*): bytes
// that keep coming after an error answer, read in the splits the fuzzer
// used. Before the fix they overflowed the parser's buffer (compact() from
// the lingering close) or spun in the lingering close on a full buffer.
namespace {

// `total` copies of `byte` cut into reads of the given sizes (then repeated).
std::vector<std::string> reads_of(char byte, std::size_t total, const std::vector<std::size_t>& sizes) {
  std::vector<std::string> out;
  for (std::size_t i = 0; total != 0; ++i) {
    std::size_t n = std::min(total, sizes[i % sizes.size()]);
    out.emplace_back(n, byte);
    total -= n;
  }
  return out;
}

// The splits of the fuzzer's findings (fuzz/harness.hpp's seeds 0xffff,
// 0xff0a, 0x200a and 0x2f0a with 8 KiB reads).
const std::vector<std::vector<std::size_t>> finding_splits = {
    {682, 6342, 5583, 1395, 6479},
    {5029, 8039, 6275, 1138},
    {2806, 701, 1385, 2091, 8107, 971, 7162, 76, 7286, 2941, 1618},
    {2133, 4476, 605, 1042, 6396, 763, 6488, 6228, 1504, 3069, 2829},
};

// One 431 (the empty lines count toward the header block), then the close,
// with no read that made no progress besides the end of input.
void check_refused_once(const memory_wire& wire) {
  auto out = parse_responses(wire.output);
  CHECK(out.error.empty());
  REQUIRE(out.responses.size() == 1);
  CHECK(out.responses[0].status == 431);
  CHECK(wire.closed);
  CHECK(wire.idle_reads <= 1);
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("memory: 20 KiB and 70 KiB of empty lines are refused once with 431 and the rest is discarded, for every handler shape") {
    auto sync_hello = [](const cluster::request&) { return cluster::response::text("hello\n"); };
    cluster::options opts;
    for (std::size_t total : {std::size_t{20 * 1024 + 1}, std::size_t{70 * 1024 + 1}}) {
      for (const auto& sizes : finding_splits) {
        CAPTURE(total);
        CAPTURE(sizes[0]);
        check_refused_once(serve_in_memory(sync_hello, opts, reads_of('\n', total, sizes)));
        check_refused_once(serve_in_memory(whole_echo, opts, reads_of('\n', total, sizes), 7));
        check_refused_once(serve_in_memory(streaming, opts, reads_of('\n', total, sizes), 1));
      }
    }
  }

  TEST_CASE("memory: the admin endpoint's connection refuses 70 KiB of empty lines once and discards the rest") {
    // The master serves the admin endpoint with this code: a crash here
    // would take down the master and every worker.
    auto snapshot = [] { return cluster::detail::cluster_status{}; };
    auto health = [] { return cluster::detail::service_health{}; };
    std::function<cluster::response(const cluster::request&)> render = [&](const cluster::request& req) {
      return cluster::detail::admin_answer(req, snapshot, health);
    };
    cluster::options opts;
    opts.max_headers = 11;
    opts.max_body = 118;
    for (const auto& sizes : finding_splits)
      check_refused_once(serve_in_memory(render, opts, reads_of('\n', 70 * 1024 + 1, sizes), 5));
  }

  TEST_CASE("memory: admin routes answer /metrics, /status, /status?format=text, 404 and 405 on one connection") {
    auto snapshot = [] {
      cluster::detail::cluster_status st;
      st.state = "running";
      st.slots.resize(2);
      return st;
    };
    int snapshots = 0;
    auto counted_snapshot = [&] {
      ++snapshots;
      return snapshot();
    };
    auto health = [] { return cluster::detail::service_health{}; };
    std::function<cluster::response(const cluster::request&)> render = [&](const cluster::request& req) {
      return cluster::detail::admin_answer(req, counted_snapshot, health);
    };
    cluster::options opts;
    auto wire = serve_in_memory(render, opts,
                                {request("GET", "/metrics") + request("GET", "/status") +
                                 request("GET", "/status?format=text") + request("GET", "/nope") +
                                 request("POST", "/metrics") + request("HEAD", "/metrics")});
    auto out = parse_responses(wire.output, [](std::size_t i, const wire_response&) { return i == 5; });
    CHECK(out.error.empty());
    REQUIRE(out.responses.size() == 6);
    CHECK(out.responses[0].status == 200);
    CHECK(out.responses[0].body.find("cluster_slots 2\n") != std::string::npos);
    CHECK(out.responses[1].body.starts_with("{\"master\":"));
    CHECK(out.responses[2].body.starts_with("master pid"));
    CHECK(out.responses[3].status == 404);
    CHECK(out.responses[4].status == 405);
    CHECK(out.responses[4].header("Allow") == "GET, HEAD");
    CHECK(out.responses[5].status == 200);
    CHECK(out.responses[5].body.empty());
    CHECK(snapshots == 4);  // the 404 and the 405 take none
  }

  TEST_CASE("memory: /livez and /readyz answer the master's verdict, 200 ok or 503 with its reason, never cached") {
    cluster::detail::service_health verdict;
    int snapshots = 0;
    auto snapshot = [&] {
      ++snapshots;
      return cluster::detail::cluster_status{};
    };
    auto health = [&] { return verdict; };
    std::function<cluster::response(const cluster::request&)> render = [&](const cluster::request& req) {
      return cluster::detail::admin_answer(req, snapshot, health);
    };
    cluster::options opts;
    auto probe = [&](const char* method, const char* path) {
      auto wire = serve_in_memory(render, opts, {request(method, path)});
      auto out = parse_responses(wire.output, [&](std::size_t, const wire_response&) {
        return std::string_view(method) == "HEAD";
      });
      REQUIRE(out.error.empty());
      REQUIRE(out.responses.size() == 1);
      if (out.responses[0].status != 405) CHECK(out.responses[0].header("Cache-Control") == "no-store");
      return out.responses[0];
    };
    verdict.live = {true, ""};
    verdict.ready = {false, "slot 1 has no ready worker"};
    auto live = probe("GET", "/livez");
    CHECK(live.status == 200);
    CHECK(live.body == "ok\n");
    auto ready = probe("GET", "/readyz");
    CHECK(ready.status == 503);
    CHECK(ready.body == "slot 1 has no ready worker\n");
    CHECK(probe("HEAD", "/readyz").status == 503);
    verdict.live = {false, "stopped"};
    verdict.ready = {true, ""};
    CHECK(probe("GET", "/livez").status == 503);
    CHECK(probe("GET", "/readyz").status == 200);
    CHECK(probe("GET", "/readyz?verbose").status == 200);
    CHECK(probe("POST", "/readyz").status == 405);
    CHECK(snapshots == 0);  // a probe reads no /proc file
  }

  TEST_CASE("memory: a 500 answering HEAD has no body, and a request pipelined behind it is answered after it") {
    // The old fuzz oracle misread this (it took the next answer for the
    // 500's body); the server was right.
    auto thrower = [](const cluster::request& req) -> cluster::response {
      if (req.path() == "/throw") throw std::runtime_error("thrown on purpose");
      return cluster::response::text("ok\n");
    };
    cluster::options opts;
    auto wire = serve_in_memory(thrower, opts, {request("HEAD", "/throw") + "GET / HTTP/1.1\r\n\r\n"});
    auto out = parse_responses(wire.output, [](std::size_t i, const wire_response&) { return i == 0; });
    CHECK(out.error.empty());
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].status == 500);
    CHECK(out.responses[0].header("Content-Length") == "22");
    CHECK(out.responses[0].body.empty());
    CHECK(out.responses[1].status == 400);  // no Host
    CHECK(wire.closed);
  }
}
