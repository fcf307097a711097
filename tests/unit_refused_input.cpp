// Unit tests: what a connection does with the bytes a client keeps sending
// after the server refused its request (400, 413, 431, ...). The answer goes
// out, the rest is read and thrown away during the lingering close, and the
// connection ends: no byte of the tail may reach the parser's buffer (its
// state describes the refused message), and no read may spin. Driven over
// the in-memory socket, bounded in time, so a spin fails instead of hanging.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <chrono>
#include <string>
#include <vector>

using namespace test_support;

namespace {

auto hello = [](const cluster::request&) { return cluster::response::text("hello\n"); };

auto echo = [](cluster::request& req) -> asio::awaitable<cluster::response> {
  co_return cluster::response::text(std::string(req.body()));
};

auto stream_echo = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
  co_await out.send(cluster::response::text(std::string(co_await req.read_body())));
};

// Small limits, so that short inputs reach each one.
cluster::options small_limits() {
  cluster::options o;
  o.max_target = 64;
  o.max_header_bytes = 256;
  o.max_headers = 8;
  o.max_body = 16;
  return o;
}

struct outcome {
  memory_wire wire;
  bool finished = false;  // the connection closed within the time bound
};

// Serves `input` (one chunk per read) and returns once the connection has
// closed, or after 10 s (a connection still running then is a spin or a hang).
template <class Handler>
outcome serve_bounded(Handler& handler, const cluster::options& opts, std::vector<std::string> input) {
  using connection = cluster::detail::basic_connection<memory_socket>;
  // The state outlives the loop: stopped with the connection still pending
  // (a hang), destroying the loop destroys the connection, which tells its
  // state.
  cluster::detail::server_state state(opts);
  asio::io_context io(1);
  auto wire = std::make_shared<memory_wire>();
  wire->input = std::move(input);
  auto c = connection::open(memory_socket(io, wire), state);
  asio::co_spawn(io, connection::serve(std::move(c), handler), asio::detached);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!wire->closed && std::chrono::steady_clock::now() < until && io.run_one_for(std::chrono::milliseconds(100)))
    ;
  outcome o;
  o.finished = wire->closed;
  io.stop();
  o.wire = *wire;
  return o;
}

// `tail` bytes cut into reads of `step` bytes.
std::vector<std::string> then_tail(std::string head, std::size_t tail, std::size_t step) {
  std::vector<std::string> chunks{std::move(head)};
  for (std::size_t sent = 0; sent < tail; sent += step) chunks.emplace_back(std::min(step, tail - sent), 'x');
  return chunks;
}

// Checks that exactly one response came back, with `status`, and that the
// connection read the whole tail and closed.
void check_refused(const outcome& o, int status) {
  CHECK(o.finished);
  auto out = parse_responses(o.wire.output);
  CHECK(out.error.empty());
  REQUIRE(out.responses.size() == 1);
  CHECK(out.responses[0].status == status);
  CHECK(o.wire.write_shut);
  // Lingering read everything up to the end of the input (then EOF).
  CHECK(o.wire.next == o.wire.input.size());
}

const std::vector<std::pair<std::string, int>> refused_heads = {
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", 413},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n", 413},
    {"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
    {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
    {"GET /" + std::string(100, 'a') + " HTTP/1.1\r\n", 414},
    {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(400, 'v') + "\r\n\r\n", 431},
    {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(400, 'v'), 431},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: h\r\nExpect: nothing\r\n\r\n", 417},
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("refused input: a large tail after each error answer is discarded, never parsed") {
    cluster::options opts = small_limits();
    for (const auto& [head, status] : refused_heads) {
      for (std::size_t step : {std::size_t{1} << 10, std::size_t{16} << 10, std::size_t{64} << 10}) {
        CAPTURE(head);
        CAPTURE(step);
        check_refused(serve_bounded(hello, opts, then_tail(head, 100'000, step)), status);
        check_refused(serve_bounded(echo, opts, then_tail(head, 100'000, step)), status);
        check_refused(serve_bounded(stream_echo, opts, then_tail(head, 100'000, step)), status);
      }
    }
  }

  TEST_CASE("refused input: an oversized body without Expect then 2 MB more is answered 413 once, at default limits") {
    cluster::options opts;  // max_body 1 MiB
    auto o = serve_bounded(echo, opts, then_tail("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n",
                                                 2'000'000, 64 * 1024));
    check_refused(o, 413);
  }

  TEST_CASE("refused input: a header block at the buffer's limit, then end of input, closes without spinning") {
    // The request line and one 70,000-byte field: 431 once the buffer is
    // full, then the client half-closes. Lingering must see the EOF.
    cluster::options opts;
    std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70'000, 'a');
    std::vector<std::string> chunks;
    for (std::size_t i = 0; i < head.size(); i += 4096) chunks.push_back(head.substr(i, 4096));
    auto o = serve_bounded(hello, opts, chunks);
    CHECK(o.finished);
    auto out = parse_responses(o.wire.output);
    REQUIRE(out.responses.size() == 1);
    CHECK(out.responses[0].status == 431);
    // A read that cannot make progress would be repeated without end.
    CHECK(o.wire.reads < chunks.size() + 8);
  }

  TEST_CASE("refused input: pipelined garbage after a valid request gets the answer, then 400, then close") {
    cluster::options opts = small_limits();
    std::string in = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n\x01\x02garbage\r\n\r\n";
    auto o = serve_bounded(hello, opts, then_tail(in, 50'000, 4096));
    CHECK(o.finished);
    auto out = parse_responses(o.wire.output);
    REQUIRE(out.responses.size() == 2);
    CHECK(out.responses[0].status == 200);
    CHECK(out.responses[1].status == 400);
  }
}
