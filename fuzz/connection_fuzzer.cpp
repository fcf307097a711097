// libFuzzer target: one connection's whole state machine (llhttp, limits,
// framing checks, handlers of every shape, streaming, serialisation, the
// lingering close) driven over an in-memory socket with arbitrary bytes split
// into reads at arbitrary points. The oracle: no crash, no sanitizer report,
// and whatever came in, what goes out parses as well-formed HTTP/1.1 (strict
// llhttp, which also refuses any byte after a "Connection: close" response).
//
// Input: byte 0 picks the limits, the handler and partial writes; bytes 1-2
// seed the read sizes; the rest is what the client sends.
//   fuzz/run [seconds]   builds this with clang and runs it (see that script)
#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

cluster::response whole_response(const cluster::request& req) {
  std::string_view path = req.path();
  if (path == "/throw") throw std::runtime_error("fuzz: thrown on purpose");
  cluster::response res;
  if (path == "/204") res.status = 204;
  if (path == "/bad-status") res.status = 99;
  if (path == "/close") res.set("Connection", "close");
  // Marks answers to HEAD for the oracle: they have no body whatever they say.
  if (req.method() == "HEAD") res.set("X-Head", "1");
  res.body = req.body();
  return res;
}

auto sync_handler = [](const cluster::request& req) { return whole_response(req); };

auto async_handler = [](cluster::request& req) -> asio::awaitable<cluster::response> { co_return whole_response(req); };

auto stream_handler = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
  std::string_view path = req.path();
  cluster::response head = cluster::response::with(200, "", "application/octet-stream");
  if (req.method() == "HEAD") head.set("X-Head", "1");
  if (path.starts_with("/stream")) {
    if (path == "/stream/204") head.status = 204;
    co_await out.start(std::move(head));
    for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
      co_await out.write(piece);
    if (path == "/stream/throw") throw std::runtime_error("fuzz: thrown after start");
  } else if (path == "/pieces") {
    // Started implicitly by the first write, except for HEAD: the oracle
    // needs the X-Head mark to know that no body follows.
    if (req.method() == "HEAD") co_await out.start(std::move(head));
    co_await out.write("a");
    co_await out.write("");
    co_await out.finish();
  } else if (path == "/nothing") {
    co_return;
  } else if (path == "/throw") {
    throw std::runtime_error("fuzz: thrown before start");
  } else {
    std::string body(co_await req.read_body());
    head.body = std::move(body);
    co_await out.send(std::move(head));
  }
};

cluster::options limits(std::uint8_t choice) {
  cluster::options o;
  switch (choice & 3) {
    case 1:  // the smallest limits options::validate() accepts
      o.max_target = 16;
      o.max_header_bytes = 256;
      o.max_headers = 1;
      o.max_body = 0;
      break;
    case 2:
      o.max_target = 64;
      o.max_header_bytes = 512;
      o.max_headers = 8;
      o.max_body = 100;
      break;
    default: break;
  }
  return o;
}

template <class Handler>
void drive(Handler& handler, const cluster::options& opts, std::vector<std::string> reads, std::size_t max_write) {
  static asio::io_context io(1);  // one for every input: its reactor is costly to build
  test_support::memory_wire wire = test_support::serve_in_memory(io, handler, opts, std::move(reads), max_write);
  auto answers_head = [](std::size_t, const test_support::wire_response& r) { return r.header("X-Head").has_value(); };
  test_support::wire_output out = test_support::parse_responses(wire.output, answers_head);
  // out.truncated is allowed: a stream cut short by a handler's exception, or
  // a server-made error answering HEAD (a stated length, no body).
  if (!out.error.empty()) {
    std::fprintf(stderr, "malformed output (%s):\n%s\n", out.error.c_str(), wire.output.c_str());
    std::abort();
  }
  if (!wire.closed) {
    std::fprintf(stderr, "the connection was not closed at the end of its input\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t mode = data[0];
  std::uint32_t seed = (static_cast<std::uint32_t>(data[1]) << 8 | data[2]) * 2654435761u + 1;
  std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);

  // Read sizes from a xorshift sequence: byte-by-byte to whole buffers.
  const std::uint32_t max_read = (mode & 0x10) ? 8 : 700;
  std::vector<std::string> reads;
  while (!input.empty()) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    std::size_t n = std::min<std::size_t>(input.size(), 1 + seed % max_read);
    reads.emplace_back(input.substr(0, n));
    input.remove_prefix(n);
  }
  const std::size_t max_write = (mode & 0x20) ? 1 + seed % 13 : SIZE_MAX;
  const cluster::options opts = limits(mode);
  switch ((mode >> 2) & 3) {
    case 0: drive(sync_handler, opts, std::move(reads), max_write); break;
    case 1: drive(async_handler, opts, std::move(reads), max_write); break;
    default: drive(stream_handler, opts, std::move(reads), max_write); break;
  }
  return 0;
}
