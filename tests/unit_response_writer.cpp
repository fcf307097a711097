// Unit tests: the one place that decides a response's framing, and what it
// puts on the wire for each kind of request (HEAD, HTTP/1.0, streamed).
#include "support/memory_socket.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using writer = cluster::detail::response_writer<
    test_support::memory_socket,
    cluster::detail::deadline_watchdog<test_support::memory_socket,
                                       cluster::detail::basic_connection<test_support::memory_socket>>>;
using cluster::detail::body_framing;

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("framing: a whole response has a length; HEAD keeps it; close and HTTP/1.0 keep-alive are stated") {
    auto f = writer::frame(false, 1, 200, false, false);
    CHECK(f.body == body_framing::length);
    CHECK_FALSE(f.head);
    CHECK_FALSE(f.close);
    CHECK_FALSE(f.keep_alive_10);
    f = writer::frame(true, 1, 200, false, false);
    CHECK(f.head);
    CHECK(f.body == body_framing::length);
    CHECK(writer::frame(false, 1, 200, true, false).close);
    f = writer::frame(false, 0, 200, false, false);
    CHECK(f.keep_alive_10);  // HTTP/1.0 keeps the connection only when told
    f = writer::frame(false, 0, 200, true, false);
    CHECK_FALSE(f.keep_alive_10);
  }

  TEST_CASE("framing: a streamed response is chunked to HTTP/1.1 and close-delimited to HTTP/1.0") {
    auto f = writer::frame(false, 1, 200, false, true);
    CHECK(f.body == body_framing::chunked);
    CHECK_FALSE(f.close);
    f = writer::frame(false, 0, 200, false, true);
    CHECK(f.body == body_framing::close);
    CHECK(f.close);  // the body ends with the connection (RFC 9112 §7: no chunked in HTTP/1.0)
    CHECK_FALSE(f.keep_alive_10);
    // Without a body there is nothing to delimit: HEAD, 204 and 304 keep the connection.
    f = writer::frame(true, 0, 200, false, true);
    CHECK_FALSE(f.close);
    CHECK(f.keep_alive_10);
    CHECK_FALSE(writer::frame(false, 0, 204, false, true).close);
    CHECK_FALSE(writer::frame(false, 0, 304, false, true).close);
  }

  TEST_CASE("framing: only 200..999 may answer a request") {
    CHECK_FALSE(cluster::detail::is_final_status(100));
    CHECK_FALSE(cluster::detail::is_final_status(199));
    CHECK(cluster::detail::is_final_status(200));
    CHECK(cluster::detail::is_final_status(999));
    CHECK_FALSE(cluster::detail::is_final_status(1000));
  }
}
