// libFuzzer target: one connection's whole state machine (llhttp, limits,
// framing checks, handlers of every shape, streaming, serialisation, buffer
// growth and compaction, the lingering close) driven over an in-memory socket
// with arbitrary bytes split into reads at arbitrary points. The input's
// first bytes pick small limits, the read sizes and partial writes (see
// harness.hpp), so a short input reaches every limit and what lies behind
// it. The oracle: no crash, no sanitizer report, no busy loop, the
// connection ends and closes, and whatever came in, what goes out parses as
// well-formed HTTP/1.1 with one response per request that reached the handler.
//
// Input: harness.hpp's header (byte 0 bits 0-1: sync, async or streaming
// handler), then what the client sends.
//   fuzz/run connection [seconds]   builds this with clang and runs it
#include "harness.hpp"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

fuzz::call_log calls;  // reset per input

cluster::response whole_response(const cluster::request& req) {
  calls.record(req);
  std::string_view path = req.path();
  if (path == "/throw") throw std::runtime_error("fuzz: thrown on purpose");
  cluster::response res;
  if (path == "/204") res.status = 204;
  if (path == "/bad-status") res.status = 99;
  if (path == "/close") res.set("Connection", "close");
  // Bodies of every in-memory kind, so that batches gather some from their
  // own storage (a copy of the request body, shared; static text; a large
  // owned string) between others copied into the output buffer.
  static constexpr std::string_view static_text = "gathered from static storage\n";
  if (path == "/shared")
    res.body = cluster::body::from_shared(std::make_shared<const std::string>(req.body()));
  else if (path == "/view")
    res.body = cluster::body::from_view(static_text);
  else if (path == "/large")
    res.body = std::string(3000, 'L');
  else
    res.body = req.body();
  return res;
}

auto sync_handler = [](const cluster::request& req) { return whole_response(req); };

auto async_handler = [](cluster::request& req) -> asio::awaitable<cluster::response> { co_return whole_response(req); };

auto stream_handler = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
  calls.record(req);
  std::string_view path = req.path();
  cluster::response head = cluster::response::with(200, "", "application/octet-stream");
  if (path.starts_with("/stream")) {
    if (path == "/stream/204") head.status = 204;
    co_await out.start(std::move(head));
    for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
      co_await out.write(piece);
    if (path == "/stream/throw") throw std::runtime_error("fuzz: thrown after start");
  } else if (path == "/pieces") {
    // Started implicitly by the first write.
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < fuzz::header_bytes) return 0;
  std::string_view client(reinterpret_cast<const char*>(data + fuzz::header_bytes), size - fuzz::header_bytes);
  const fuzz::setup s = fuzz::decode(data, client);
  calls = {};
  switch (s.shape) {
    case 0: fuzz::serve_and_check(sync_handler, s, calls); break;
    case 1: fuzz::serve_and_check(async_handler, s, calls); break;
    default: fuzz::serve_and_check(stream_handler, s, calls); break;
  }
  return 0;
}
