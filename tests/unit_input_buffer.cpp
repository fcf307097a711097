// Unit tests: a connection's input buffer at its edges (empty, compaction
// with a kept message, growth, full at its limit, a refused message) and its
// invariant after every step.
#include <cluster/detail/input_buffer.hpp>
#include <cluster/detail/request_parser.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <string_view>

namespace {

using cluster::detail::input_buffer;

// Reads `bytes` into the buffer as a socket would, at most what read_space() offers.
std::size_t read_into(input_buffer& in, std::string_view bytes, std::size_t keep_end, bool body = false) {
  auto space = in.read_space(keep_end, body);
  std::size_t n = std::min(space.size(), bytes.size());
  std::memcpy(space.data(), bytes.data(), n);
  in.commit(n);
  return n;
}

std::string_view at(const input_buffer& in, std::size_t from, std::size_t to) { return {in.data() + from, to - from}; }

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("input buffer: empty, it allocates nothing until the first read, then initial_capacity") {
    input_buffer in(8192);
    CHECK(in.data() == nullptr);
    CHECK(in.empty());
    CHECK(in.message().empty());
    CHECK(in.invariants_hold());
    auto space = in.read_space(0, false);
    CHECK(space.size() == input_buffer::initial_capacity);
    CHECK(in.capacity() == input_buffer::initial_capacity);
    CHECK(in.data() == space.data());
    CHECK(in.empty());
  }

  TEST_CASE("input buffer: a parsed message is released and the buffer rewinds when nothing is pending") {
    input_buffer in(8192);
    read_into(in, "GET / HTTP/1.1\r\n\r\nGET /b", 0);
    CHECK(in.message() == "GET / HTTP/1.1\r\n\r\nGET /b");
    in.parsed_to(18);
    in.next_message();
    CHECK(in.message_start() == 18);
    CHECK(in.message() == "GET /b");
    CHECK_FALSE(in.empty());
    in.parsed_to(in.end());
    in.next_message();
    CHECK(in.empty());
    CHECK(in.message_start() == 0);
    CHECK(in.parsed() == 0);
    CHECK(in.end() == 0);
    CHECK(in.invariants_hold());
  }

  TEST_CASE("input buffer: compaction keeps the message's kept bytes and the unparsed ones, and drops the rest") {
    input_buffer in(8192);
    // An answered message (100 bytes), a header block (50), body bytes
    // already delivered (1,350), and 100 bytes not parsed yet: 1,600 in all.
    std::string bytes = std::string(100, 'a') + std::string(50, 'h') + std::string(1350, 'b') + std::string(100, 'p');
    REQUIRE(read_into(in, bytes, 0) == bytes.size());
    in.parsed_to(100);
    in.next_message();  // the header block starts at 100
    in.parsed_to(1500);
    // 448 bytes free: less than min_read, so the buffer compacts around
    // [100, 150) and [1500, 1600).
    auto space = in.read_space(150, false);
    CHECK(in.capacity() == input_buffer::initial_capacity);  // compaction was enough
    CHECK(in.message_start() == 0);
    CHECK(in.parsed() == 50);
    CHECK(in.end() == 150);
    CHECK(at(in, 0, 50) == std::string(50, 'h'));
    CHECK(at(in, 50, 150) == std::string(100, 'p'));
    CHECK(space.size() == input_buffer::initial_capacity - 150);
    CHECK(in.invariants_hold());
  }

  TEST_CASE("input buffer: growth doubles while compaction frees too little, up to the limit, then stops") {
    const std::size_t limit = 5000;
    input_buffer in(limit);
    std::string header(limit, 'h');  // one header block that never completes
    std::size_t filled = 0;
    std::size_t last_capacity = 0;
    for (int reads = 0; reads < 100 && filled < limit; ++reads) {
      filled += read_into(in, std::string_view(header).substr(filled), in.parsed());
      in.parsed_to(in.end());  // parsed, but the message is in progress: all of it is kept
      CHECK(in.capacity() >= last_capacity);
      last_capacity = in.capacity();
      CHECK(in.invariants_hold());
    }
    CHECK(filled == limit);
    CHECK(in.capacity() == limit);
    CHECK(in.message() == header);  // growth moved nothing out of the message
    // Full at the limit: no room is left, and none is made.
    CHECK(in.read_space(in.parsed(), false).empty());
    CHECK(in.capacity() == limit);
  }

  TEST_CASE("input buffer: short of the limit, every read is offered at least min_read bytes") {
    input_buffer in(64 * 1024);
    std::string chunk(700, 'x');
    for (int i = 0; i < 40; ++i) {
      auto space = in.read_space(in.parsed(), false);
      CHECK(space.size() >= input_buffer::min_read);
      std::memcpy(space.data(), chunk.data(), chunk.size());
      in.commit(chunk.size());
      in.parsed_to(in.end());
    }
    CHECK(in.message().size() == 40 * chunk.size());
  }

  TEST_CASE("input buffer: a body read whole grows the buffer to body_capacity, or to the limit below it") {
    input_buffer big(64 * 1024);
    read_into(big, "x", 0, true);
    CHECK(big.capacity() == input_buffer::body_capacity);
    input_buffer small(6000);
    read_into(small, "x", 0, true);
    CHECK(small.capacity() == 6000);
  }

  TEST_CASE("input buffer: keeping a message in place moves it to the front once, with room behind it") {
    input_buffer in(64 * 1024);
    read_into(in, "answeredHEADbody", 0);
    in.parsed_to(8);
    in.next_message();
    in.parsed_to(12);
    in.keep_message_in_place(10'000);
    CHECK(in.message_start() == 0);
    CHECK(in.parsed() == 4);
    CHECK(in.message() == "HEADbody");
    CHECK(in.capacity() >= 10'000);
    CHECK(in.invariants_hold());
  }

  TEST_CASE("input buffer: a message refused at the buffer's limit leaves it refused and its offsets in range") {
    cluster::options o;
    o.max_header_bytes = 256;
    cluster::detail::request_parser p(o);
    std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(100'000, 'v');
    std::size_t pos = 0;
    cluster::detail::parse_state st = cluster::detail::parse_state::need_more;
    while (pos < head.size() && (st = p.next()) == cluster::detail::parse_state::need_more) {
      auto space = p.read_space();
      REQUIRE(!space.empty());
      std::size_t n = std::min(space.size(), head.size() - pos);
      std::memcpy(space.data(), head.data() + pos, n);
      p.commit(n);
      pos += n;
    }
    CHECK(st == cluster::detail::parse_state::error);
    CHECK(p.error_status() == 431);
    CHECK(p.input().refused());
    CHECK(p.input().invariants_hold());
    CHECK(p.input().capacity() <= p.input().limit());
    CHECK(p.next() == cluster::detail::parse_state::error);  // and stays so
  }
}
