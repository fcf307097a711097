// Unit tests: large bodies cost their size once. A request body is buffered
// in storage sized from Content-Length and can be moved out with
// take_body(); a response body of 1 KiB or more is written from its own
// storage behind the head (gathered), never copied into the output buffer,
// and keeps its place among pipelined answers.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"
#include "support/test_data.hpp"

#include <string>
#include <vector>

using namespace test_support;

namespace {

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}
const std::string get_small = "GET /small HTTP/1.1\r\nHost: h\r\n\r\n";


std::vector<std::string> pieces(const std::string& s, std::size_t step) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size(); i += step) out.push_back(s.substr(i, step));
  return out;
}

// Where the body's bytes were when the handler saw them, to check a move.
const char* seen_body = nullptr;
const char* taken_body = nullptr;

auto take_async = [](cluster::request& req) -> asio::awaitable<cluster::response> {
  if (req.path() == "/small") co_return cluster::response::text("small");
  seen_body = req.body().data();
  std::string body = req.take_body();
  taken_body = body.data();
  CHECK(req.body().empty());
  co_return cluster::response::with(200, std::move(body), "application/octet-stream");
};

auto take_stream = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
  if (req.path() == "/small") {
    co_await out.send(cluster::response::text("small"));
    co_return;
  }
  co_await req.read_body();
  co_await out.send(cluster::response::with(200, req.take_body(), "application/octet-stream"));
};

auto big_sync = [](const cluster::request& req) {
  if (req.path() == "/small") return cluster::response::text("small");
  return cluster::response::with(200, pattern(100'000), "application/octet-stream");
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("large bodies: take_body() moves the buffered body out without a copy") {
    cluster::options opts;
    std::string body = pattern(200'000);
    auto wire = serve_in_memory(take_async, opts, pieces(post("/", body) + get_small, 4096));
    CHECK(seen_body != nullptr);
    CHECK(seen_body == taken_body);  // the same storage: moved, not copied
    auto out = parse_responses(wire.output);
    CHECK(out.error.empty());
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].body == body);
    CHECK(out.responses[1].body == "small");
  }

  TEST_CASE("large bodies: a streaming handler's read_body() then take_body() echoes the upload whole") {
    cluster::options opts;
    for (std::size_t size : {std::size_t{0}, std::size_t{16 * 1024 - 1}, std::size_t{16 * 1024}, std::size_t{300'001}}) {
      CAPTURE(size);
      std::string body = pattern(size);
      for (std::size_t max_write : {std::size_t{7}, std::size_t{65536}, std::size_t{1} << 30}) {
        auto wire = serve_in_memory(take_stream, opts, pieces(post("/", body) + get_small, 1000), max_write);
        auto out = parse_responses(wire.output);
        CHECK(out.error.empty());
        REQUIRE(out.responses.size() == 2);
        CHECK(out.responses[0].body == body);
        CHECK(out.responses[1].body == "small");
      }
    }
  }

  TEST_CASE("large bodies: pipelined answers keep their order around a large body written from its own storage") {
    cluster::options opts;
    std::string in = get_small + "GET /big HTTP/1.1\r\nHost: h\r\n\r\n" + get_small +
                     "HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n" + get_small;
    for (std::size_t max_write : {std::size_t{1000}, std::size_t{1} << 30}) {
      auto wire = serve_in_memory(big_sync, opts, {in}, max_write);
      auto out = parse_responses(wire.output, [](std::size_t i, const wire_response&) { return i == 3; });
      CHECK(out.error.empty());
      REQUIRE(out.responses.size() == 5);
      CHECK(out.responses[0].body == "small");
      CHECK(out.responses[1].body == pattern(100'000));
      CHECK(out.responses[2].body == "small");
      CHECK(out.responses[3].body.empty());
      CHECK(out.responses[4].body == "small");
      CHECK(wire.output.find("Content-Length: 100000\r\n") != std::string::npos);
    }
  }
}
