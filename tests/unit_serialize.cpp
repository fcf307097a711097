// Unit tests: response serialisation and the Date line.
#include <cluster/detail/date_cache.hpp>
#include <cluster/detail/serialize.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <ctime>
#include <string>

using cluster::detail::framing;
using cluster::detail::serialize;

namespace {
const std::string date = "Date: Wed, 25 Nov 2026 10:00:00 GMT\r\n";
}

TEST_SUITE("unit") {
  TEST_CASE("a response is framed with status line, Date, Content-Length, fields and body") {
    std::string out;
    serialize(out, cluster::response::text("Hello World\n"), framing{}, date);
    CHECK(out ==
          "HTTP/1.1 200 OK\r\n" + date +
              "Content-Length: 12\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello World\n");
  }

  TEST_CASE("every status from 100 to 999 gets the status line its code and reason phrase make") {
    for (int status = 100; status <= 999; ++status) {
      CAPTURE(status);
      std::string out;
      cluster::detail::serialize_head(out, status, {}, framing{}, date, 0);
      std::string line = "HTTP/1.1 " + std::to_string(status) + " " + std::string(cluster::reason_phrase(status)) +
                         "\r\n";
      REQUIRE(out.starts_with(line));
      CHECK(out.substr(line.size()).starts_with(date));
      CHECK(out.ends_with("\r\n\r\n"));
    }
  }

  TEST_CASE("HEAD gets the GET's Content-Length but no body") {
    std::string out;
    serialize(out, cluster::response::text("abc"), framing{.head = true}, date);
    CHECK(out.find("Content-Length: 3\r\n") != std::string::npos);
    CHECK(out.ends_with("\r\n\r\n"));
  }

  TEST_CASE("204 and 304 carry neither body nor Content-Length") {
    for (int status : {204, 304}) {
      std::string out;
      auto res = cluster::response::text("ignored", status);
      serialize(out, res, framing{}, date);
      CHECK(out.find("Content-Length") == std::string::npos);
      CHECK(out.ends_with("\r\n\r\n"));
    }
  }

  TEST_CASE("closing and HTTP/1.0 keep-alive are stated; a handler's Connection field is not repeated") {
    std::string out;
    auto res = cluster::response::text("x");
    res.set("Connection", "close");
    CHECK(cluster::detail::wants_close(res));
    serialize(out, res, framing{.close = true}, date);
    CHECK(out.find("Connection: close\r\n") != std::string::npos);
    CHECK(out.find("Connection", out.find("Connection: close") + 1) == std::string::npos);
    std::string ka;
    serialize(ka, cluster::response::text("x"), framing{.keep_alive_10 = true}, date);
    CHECK(ka.find("Connection: keep-alive\r\n") != std::string::npos);
  }

  TEST_CASE("a handler's own Date replaces the server's") {
    std::string out;
    auto res = cluster::response::text("x");
    res.set("Date", "Thu, 01 Jan 1970 00:00:00 GMT");
    serialize(out, res, framing{}, date);
    CHECK(out.find(date) == std::string::npos);
    CHECK(out.find("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n") != std::string::npos);
  }

  TEST_CASE("server errors close the connection") {
    std::string out;
    cluster::detail::serialize_error(out, 431, date);
    CHECK(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    CHECK(out.find("Connection: close\r\n") != std::string::npos);
  }

  TEST_CASE("the Date line is an IMF-fixdate for the current second") {
    cluster::detail::date_cache cache;
    std::string line(cache.line());
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char expected[64];
    std::strftime(expected, sizeof expected, "Date: %a, %d %b %Y ", &tm);  // C locale in tests
    CHECK(line.starts_with(expected));
    CHECK(line.size() == 37);
    CHECK(line.ends_with(" GMT\r\n"));
  }

  TEST_CASE("a streamed head says chunked to HTTP/1.1, nothing to HTTP/1.0, and no length either way") {
    cluster::response_headers h;
    h.set("Content-Type", "text/event-stream");
    std::string chunked;
    cluster::detail::serialize_head(chunked, 200, h, framing{.body = cluster::detail::body_framing::chunked}, date, 0);
    CHECK(chunked == "HTTP/1.1 200 OK\r\n" + date +
                         "Transfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n");
    std::string until_close;
    cluster::detail::serialize_head(until_close, 200, h,
                                    framing{.close = true, .body = cluster::detail::body_framing::close}, date, 0);
    CHECK(until_close == "HTTP/1.1 200 OK\r\n" + date + "Connection: close\r\nContent-Type: text/event-stream\r\n\r\n");
    std::string no_content;
    cluster::detail::serialize_head(no_content, 204, h, framing{.body = cluster::detail::body_framing::chunked}, date,
                                    0);
    CHECK(no_content.find("Transfer-Encoding") == std::string::npos);
  }

  TEST_CASE("chunk size lines are hexadecimal with CRLF") {
    char buf[24];
    CHECK(std::string(buf, cluster::detail::chunk_size_line(buf, 1)) == "1\r\n");
    CHECK(std::string(buf, cluster::detail::chunk_size_line(buf, 500)) == "1f4\r\n");
    CHECK(std::string(buf, cluster::detail::chunk_size_line(buf, SIZE_MAX)) == "ffffffffffffffff\r\n");
    CHECK(cluster::detail::last_chunk == "0\r\n\r\n");
  }

  TEST_CASE("an error answering HEAD has its Content-Length but no body; a 501 may keep the connection") {
    std::string head;
    cluster::detail::serialize_error(head, 413, date, framing{.head = true, .close = true});
    CHECK(head.find("Content-Length: 18\r\n") != std::string::npos);
    CHECK(head.ends_with("\r\n\r\n"));
    std::string kept;
    cluster::detail::serialize_error(kept, 501, date, framing{});
    CHECK(kept.starts_with("HTTP/1.1 501 Not Implemented\r\n"));
    CHECK(kept.find("Connection") == std::string::npos);
    CHECK(kept.ends_with("Not Implemented\n"));
  }
}
