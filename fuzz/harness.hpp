// What the HTTP fuzz targets (connection_fuzzer, admin_fuzzer) share: the
// input's header that picks small limits, read sizes and partial writes; a
// bounded run of one in-memory connection; and the oracle on its output.
//
// Input layout (the first header_bytes bytes, then what the client sends):
//   [0] mode: bits 0-1 the target's choice (handler shape), bit 2 partial
//       writes, bits 3-4 read sizes (up to 700, 8, 8192 or 64 bytes),
//       bits 5-6 a tail appended to the client's bytes (none, 3 KiB, 20 KiB
//       or 70 KiB) made of their last byte repeated, or (bit 7) their last
//       64 bytes: a long header value, body or run of pipelined requests
//       from a short input
//   [1] max_target       255: default; else 16 + 4v         (16..1036)
//   [2] max_header_bytes 255: default; else 256 + 16v       (256..4320)
//   [3] max_headers      255: default; else 1 + v % 64      (1..64)
//   [4] max_body         255: default; 128..254: 512(v-128) (0..64 KiB); else v
//   [5-6] seed of the read (and write) sizes
// Small limits let a short input cross every limit, fill the parser's
// buffer, make it grow and compact, and reach the lingering close with a
// long tail behind an error answer.
#pragma once

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

inline constexpr std::size_t header_bytes = 7;

/// What an input's header chose.
struct setup {
  cluster::options opts;
  int shape = 0;  ///< bits 0-1 of the mode byte
  std::vector<std::string> reads;
  std::size_t max_write = SIZE_MAX;
};

[[noreturn]] inline void fail(const char* what, const std::string& output = {}) {
  std::fprintf(stderr, "fuzz finding: %s\n", what);
  if (!output.empty()) std::fprintf(stderr, "output (%zu bytes):\n%s\n", output.size(), output.c_str());
  std::abort();
}

/// Decodes the header of `data` (at least header_bytes long) and splits
/// `client` into reads.
inline setup decode(const std::uint8_t* data, std::string_view client) {
  setup s;
  const std::uint8_t mode = data[0];
  s.shape = mode & 3;
  cluster::options& o = s.opts;
  if (data[1] != 255) o.max_target = 16 + 4 * std::size_t{data[1]};
  if (data[2] != 255) o.max_header_bytes = 256 + 16 * std::size_t{data[2]};
  if (data[3] != 255) o.max_headers = 1 + data[3] % 64;
  if (data[4] != 255) o.max_body = data[4] >= 128 ? 512 * std::uint64_t(data[4] - 128) : data[4];
  try {
    o.validate();  // the harness must only ever pick what a user could configure
  } catch (const std::exception& e) {
    fail(e.what());
  }

  std::uint32_t seed = (std::uint32_t{data[5]} << 8 | data[6]) * 2654435761u + 1;
  auto next = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
  };
  static constexpr std::size_t tails[] = {0, 3 * 1024, 20 * 1024, 70 * 1024};
  std::string bytes(client);
  if (std::size_t tail = tails[(mode >> 5) & 3]; tail != 0 && !client.empty()) {
    std::string_view unit = client.substr(client.size() - std::min<std::size_t>(client.size(), mode & 0x80 ? 64 : 1));
    bytes.reserve(bytes.size() + tail + unit.size());
    while (bytes.size() < client.size() + tail) bytes.append(unit);
  }
  static constexpr std::uint32_t max_read[] = {700, 8, 8192, 64};
  const std::uint32_t limit = max_read[(mode >> 3) & 3];
  for (std::string_view rest = bytes; !rest.empty();) {
    std::size_t n = std::min<std::size_t>(rest.size(), 1 + next() % limit);
    s.reads.emplace_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  // Tiny partial writes only for short inputs: a long pipelined tail (say
  // 1,900 /metrics requests) written 1 to 13 bytes at a time is millions of
  // steps, too slow to fuzz, and tests nothing more.
  if ((mode & 4) && bytes.size() <= 4096) s.max_write = 1 + next() % 13;
  return s;
}

/// The requests that reached the handler, in order: whether each was HEAD.
/// Every such request gets exactly one final response, in request order, so
/// the oracle knows which responses have no body whatever their framing
/// says (a 500 for a HEAD whose handler threw carries Content-Length and no
/// body, and a pipelined answer may follow it).
struct call_log {
  std::vector<bool> head;
  void record(const cluster::request& req) { head.push_back(req.method() == "HEAD"); }
};

/// Serves `s.reads` on one in-memory connection with `handler` and checks
/// the run: it ends by itself within a bounded number of steps, the
/// connection is closed, no read spun, and the output is well-formed
/// HTTP/1.1 (strict llhttp, which also refuses any byte after a
/// "Connection: close" response). Returns the wire.
template <class Handler>
test_support::memory_wire serve_and_check(Handler& handler, const setup& s, const call_log& calls) {
  using connection = cluster::detail::basic_connection<test_support::memory_socket>;
  static asio::io_context io(1);  // one for every input: its reactor is costly to build
  cluster::detail::server_state state(s.opts);
  auto wire = std::make_shared<test_support::memory_wire>();
  wire->input = s.reads;
  wire->max_write = s.max_write;
  wire->max_idle_reads = 64;
  {
    auto c = connection::open(test_support::memory_socket(io, wire), state);
    asio::co_spawn(io, connection::serve(std::move(c), handler), asio::detached);
  }
  io.restart();
  // Every step makes progress on input or output, or ends the connection:
  // reads and writes complete at once in memory, and no timeout is due. So
  // the steps are bounded by the bytes read and written (a large answer, such
  // as /metrics, written 1 to 13 bytes at a time takes many steps).
  std::size_t input = 0;
  for (const auto& r : s.reads) input += r.size();
  std::size_t steps = 0;
  while (io.poll_one())
    if (++steps > 100'000 + 64 * input + 8 * wire->output.size())
      fail("the connection does not finish (a busy loop)");
  if (!io.stopped()) fail("the connection waits for something that never comes (it does not finish)");
  if (wire->idle_reads > 4) fail("reads without progress (a read offered no room, or reads past the end)");
  if (!wire->closed) fail("the connection was not closed at the end of its input");

  // Which final response answers which request: 501s are the server's own
  // (unknown method, CONNECT), the others answer the handler's calls in
  // order, and a last one past them is the server's error for a refused
  // request (which has no body when that request was HEAD: unknowable here).
  struct attribution {
    std::size_t calls = 0;
    bool last_is_call = false;
  } at;
  auto answers_head = [&](std::size_t, const test_support::wire_response& r) {
    at.last_is_call = r.status != 501 && at.calls < calls.head.size();
    return at.last_is_call && calls.head[at.calls++];
  };
  test_support::wire_output out = test_support::parse_responses(wire->output, answers_head);
  if (!out.error.empty()) fail(("malformed output (" + out.error + ")").c_str(), wire->output);
  if (at.calls != calls.head.size()) fail("a request that reached the handler got no response", wire->output);
  if (out.truncated) {
    // Allowed: a stream cut short by a handler's exception (no
    // Content-Length), or a server error answering HEAD (stated length, no
    // body). A whole response of the handler's never ends early.
    const auto& last = out.responses.back();
    if (at.last_is_call && last.header("Content-Length").has_value())
      fail("a response with Content-Length was cut short", wire->output);
  }
  return std::move(*wire);
}

}  // namespace fuzz
