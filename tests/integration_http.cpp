// Integration tests of the HTTP/1.1 layer: examples/echo (and examples/hello
// where the handler shape matters) run as real clusters on 127.0.0.1 with an
// ephemeral port, short limits and timeouts from their command line, and the
// tests speak raw bytes to them, asserting the status, the framing and whether
// the connection stays open.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace test_support;

namespace {

/// echo with one worker and `flags` (limits and timeouts).
cluster_process echo(std::vector<std::string> flags = {}) {
  return cluster_process(program::echo, 1, std::move(flags));
}

/// Sends `bytes` on a new connection and checks the answer is `status`, says
/// "Connection: close", and the server then closes.
void expect_refused(std::uint16_t port, const std::string& bytes, int status) {
  CAPTURE(bytes);
  http_client client(port);
  client.send(bytes);
  http_response res = client.read_response();
  CHECK(res.status == status);
  CHECK(res.header("Connection") == "close");
  CHECK(client.server_closed(3s));
}

/// A well-formed request still gets a correct answer on a new connection.
void expect_echo_works(std::uint16_t port) {
  http_client client(port);
  client.send(post_request("/", "still here"));
  http_response res = client.read_response();
  CHECK(res.status == 200);
  CHECK(res.body == "still here");
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

using ms = std::chrono::milliseconds;
ms since(test_clock::time_point t) { return std::chrono::duration_cast<ms>(test_clock::now() - t); }

}  // namespace

TEST_SUITE("http") {
  // --- Framing and smuggling defences -------------------------------------

  TEST_CASE("conformance over a socket: empty field values as curl, Python and Node send them are served") {
    cluster_process server = echo();
    http_client client(server.port());
    // curl -H 'X-Empty;' sends "X-Empty:", Python's putheader("X-Empty", "")
    // "X-Empty: ", Node's {'x-empty': ''} "x-empty: ".
    for (std::string field : {"X-Empty:\r\n", "X-Empty: \r\n", "x-empty: \r\n"}) {
      CAPTURE(field);
      client.send("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + field + "Content-Length: 2\r\n\r\nok");
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "ok");
    }
  }

  TEST_CASE("conformance over a socket: request lines, line ends and Host values RFC 9112 refuses get 400") {
    cluster_process server = echo();
    for (std::string bad : {"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\nHost: x\r\n\r\n",
                            "GET / HTTP/1.1\r\nHost: x\r\n\n", "GET / HTTP/1.1\r\nHost: user@x\r\n\r\n",
                            "GET / HTTP/1.1\r\nHost: x:80/path\r\n\r\n", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
                            "GET * HTTP/1.1\r\nHost: x\r\n\r\n"})
      expect_refused(server.port(), bad, 400);
    expect_echo_works(server.port());
  }

  TEST_CASE("Content-Length together with Transfer-Encoding gets 400 and the connection closes") {
    auto server = echo();
    expect_refused(server.port(),
                   request("POST", "/", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400);
    expect_refused(server.port(),
                   request("POST", "/", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400);
    expect_echo_works(server.port());
  }

  TEST_CASE("differing, repeated or malformed Content-Length gets 400") {
    auto server = echo();
    for (const char* fields :
         {"Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n",
          "Content-Length: 5, 5\r\n", "Content-Length: +5\r\n", "Content-Length: 0x5\r\n", "Content-Length: 5 5\r\n",
          "Content-Length: \r\n", "Content-Length: 99999999999999999999999\r\n"})
      expect_refused(server.port(), request("POST", "/", fields, "hello"), 400);
  }

  TEST_CASE("a Transfer-Encoding with an unknown coding gets 501; one whose final coding is not chunked gets 400") {
    auto server = echo();
    expect_refused(server.port(), request("POST", "/", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501);
    expect_refused(server.port(),
                   request("POST", "/", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 501);
    for (const char* te : {"gzip", "chunked, gzip", "chunked, chunked", "identity", "chunked;x=1"})
      expect_refused(server.port(), request("POST", "/", "Transfer-Encoding: " + std::string(te) + "\r\n", "0\r\n\r\n"),
                     400);
    expect_refused(server.port(), "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
  }

  TEST_CASE("invalid chunk sizes and chunk framing get 400") {
    auto server = echo();
    for (const char* body : {"zz\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
                             "5\r\nhelloXX\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "FFFFFFFFFFFFFFFFFF\r\nx\r\n"})
      expect_refused(server.port(), request("POST", "/", "Transfer-Encoding: chunked\r\n", body), 400);
  }

  TEST_CASE("obs-fold, space before the colon, control characters, NUL and bare CR get 400") {
    auto server = echo();
    const std::vector<std::string> bad = {
        request("GET", "/", "X-Folded: a\r\n b\r\n"),
        request("GET", "/", "X-Folded: a\r\n\tb\r\n"),
        request("GET", "/", "X-Folded:\r\n b\r\n"),
        request("GET", "/", "X-Space : a\r\n"),
        request("GET", "/", "X-Ctl: a\x01z\r\n"),
        request("GET", "/", "X\x7fName: a\r\n"),
        request("GET", "/", std::string("X-Nul: a\0b\r\n", 12)),
        request("GET", "/", std::string("X-N\0ul: ab\r\n", 12)),
        request("GET", "/", "X-CR: a\rb\r\n"),
        "GET / HTTP/1.1\rHost: 127.0.0.1\r\n\r\n",
        request("GET", "/", ": no-name\r\n"),
    };
    for (const std::string& r : bad) expect_refused(server.port(), r, 400);
  }

  TEST_CASE("an invalid request line or version gets 400; HTTP/2.0 and HTTP/0.9 get 505") {
    auto server = echo();
    for (const char* line :
         {"GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /a b HTTP/1.1", "GET\t/ HTTP/1.1", "GET / http/1.1",
          "GET / HTTP/1.2", "GET / HTTP/1.10", "GET /", "GET / HTTP/11", "\x16\x03\x01\x02\x00"})
      expect_refused(server.port(), std::string(line) + "\r\nHost: 127.0.0.1\r\n\r\n", 400);
    expect_refused(server.port(), "GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505);
    expect_refused(server.port(), "GET / HTTP/0.9\r\nHost: 127.0.0.1\r\n\r\n", 505);
  }

  TEST_CASE("HTTP/1.1 without Host, or with two, gets 400 from the headers alone, without waiting for the body") {
    auto server = echo();
    for (const char* head : {"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
                             "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 100000\r\n\r\n"}) {
      CAPTURE(head);
      http_client client(server.port());
      client.send(head);  // the body never comes
      const auto start = test_clock::now();
      http_response res = client.read_response(3s);  // the body timeout is 30 s
      CHECK(res.status == 400);
      CHECK(res.header("Connection") == "close");
      CHECK(since(start) < 3s);
      CHECK(client.server_closed(3s));
    }
    // HTTP/1.0 may omit Host.
    http_client client(server.port());
    client.send("GET / HTTP/1.0\r\n\r\n");
    CHECK(client.read_response().status == 200);
  }

  // --- Limits ----------------------------------------------------------------

  TEST_CASE("a request-target longer than max_target gets 414") {
    auto server = echo({"--max-target", "64"});
    expect_refused(server.port(), request("GET", "/" + std::string(100, 'a')), 414);
    http_client ok(server.port());
    ok.send(request("GET", "/" + std::string(60, 'a')));
    CHECK(ok.read_response().status == 200);
  }

  TEST_CASE("a header block larger than max_header_bytes, or more fields than max_headers, gets 431") {
    auto server = echo({"--max-header-bytes", "512", "--max-headers", "4"});
    expect_refused(server.port(), request("GET", "/", "X-Big: " + std::string(600, 'v') + "\r\n"), 431);
    std::string many;
    for (int i = 0; i < 30; ++i) many += "X-" + std::to_string(i) + ": 0123456789\r\n";
    expect_refused(server.port(), request("GET", "/", many), 431);  // > 512 bytes, arriving at once
    expect_refused(server.port(), request("GET", "/", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"), 431);  // 5 with Host
    http_client ok(server.port());
    ok.send(request("GET", "/", "A: 1\r\nB: 2\r\nC: 3\r\n"));
    CHECK(ok.read_response().status == 200);
  }

  TEST_CASE("a Content-Length over max_body gets 413 before the body is sent") {
    auto server = echo({"--max-body", "1000"});
    http_client client(server.port());
    client.send(request("POST", "/", "Content-Length: 1001\r\n"));
    http_response res = client.read_response(3s);
    CHECK(res.status == 413);
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(3s));
    http_client ok(server.port());
    ok.send(post_request("/", std::string(1000, 'x')));
    CHECK(ok.read_response().body.size() == 1000);
  }

  TEST_CASE("a chunked body growing past max_body gets 413 as the chunks arrive") {
    auto server = echo({"--max-body", "1000"});
    http_client client(server.port());
    client.send(request("POST", "/", "Transfer-Encoding: chunked\r\n"));
    client.send(chunk(std::string(600, 'a')));
    client.send(chunk(std::string(600, 'b')));  // 1200 > 1000; the last chunk never comes
    http_response res = client.read_response(3s);
    CHECK(res.status == 413);
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(3s));
  }

  TEST_CASE("a streamed upload is held to max_body too: refused up front, or cut short once over") {
    auto server = echo({"--max-body", "1000"});
    expect_refused(server.port(), request("POST", "/stream", "Content-Length: 1001\r\n"), 413);

    http_client client(server.port());
    client.send(request("POST", "/stream", "Transfer-Encoding: chunked\r\n"));
    client.send(chunk(std::string(600, 'a')));
    http_response head = client.read_head();  // the handler started streaming at once
    CHECK(head.status == 200);
    CHECK(head.header("Transfer-Encoding") == "chunked");
    CHECK(client.read_chunk() == std::string(600, 'a'));
    client.send(chunk(std::string(600, 'b')));
    // The status is out, so the server can only cut the response short: the
    // connection closes without the last chunk.
    std::size_t dropped = 0;
    CHECK(client.drain_until_closed(3s, &dropped));
    CHECK(dropped < 600 + 20);
  }

  TEST_CASE("at max_connections a worker stops accepting, and resumes once a connection closes") {
    auto server = echo({"--max-connections", "2"});
    auto first = std::make_unique<http_client>(server.port());
    http_client second(server.port());
    for (http_client* c : {first.get(), &second}) {
      c->send(post_request("/", "open"));
      CHECK(c->read_response().body == "open");
    }
    http_client third(server.port());  // the kernel completes the handshake; the worker does not accept
    third.send(post_request("/", "third"));
    CHECK_FALSE(third.server_closed(300ms));
    CHECK(third.unread().empty());  // no answer while at the limit
    first = nullptr;                // one closes: the worker accepts the third
    http_response res = third.read_response(3s);
    CHECK(res.status == 200);
    CHECK(res.body == "third");
  }

  // --- Timeouts --------------------------------------------------------------

  TEST_CASE("a slowloris header block gets 408 after header_timeout although bytes keep coming") {
    auto server = echo({"--header-timeout", "1000"});
    http_client client(server.port());
    const auto start = test_clock::now();
    client.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    // A field every 100 ms, until the server answers (at most 10 s).
    for (int i = 0; i < 100 && !client.has_data(100ms); ++i) client.send_some("X-" + std::to_string(i) + ": y\r\n", 1s);
    http_response res = client.read_response(5s);
    CHECK(res.status == 408);
    CHECK(res.header("Connection") == "close");
    CHECK(since(start) >= 900ms);
    CHECK(since(start) < 5s);
    CHECK(client.drain_until_closed(3s));
  }

  TEST_CASE("a slow header block completed within header_timeout is answered") {
    auto server = echo({"--header-timeout", "5000"});
    http_client client(server.port());
    const std::string req = post_request("/", "slow head");
    const std::size_t head_end = req.find("\r\n\r\n") + 4;
    for (std::size_t at = 0; at < head_end; at += 8) {  // ~10 pieces, 100 ms apart
      client.send(req.substr(at, std::min<std::size_t>(8, head_end - at)));
      std::this_thread::sleep_for(100ms);
    }
    client.send(req.substr(head_end));
    http_response res = client.read_response();
    CHECK(res.status == 200);
    CHECK(res.body == "slow head");
  }

  TEST_CASE("a body stalled longer than body_timeout gets 408; a slow body that keeps coming does not") {
    auto server = echo({"--body-timeout", "1000"});
    {
      http_client stalled(server.port());
      const auto start = test_clock::now();
      stalled.send(request("POST", "/", "Content-Length: 10\r\n", "12345"));
      http_response res = stalled.read_response(5s);
      CHECK(res.status == 408);
      CHECK(res.header("Connection") == "close");
      CHECK(since(start) >= 900ms);
    }
    // 25 pieces 100 ms apart: 2.5 s in all, far longer than the body timeout,
    // but never a pause near it.
    http_client slow(server.port());
    const std::string body = pattern(25 * 40);
    slow.send(request("POST", "/", "Content-Length: " + std::to_string(body.size()) + "\r\n"));
    for (std::size_t at = 0; at < body.size(); at += 40) {
      std::this_thread::sleep_for(100ms);
      slow.send(body.substr(at, 40));
    }
    http_response res = slow.read_response();
    CHECK(res.status == 200);
    CHECK(res.body == body);
  }

  TEST_CASE("an idle keep-alive connection is closed after idle_timeout, without a response") {
    auto server = echo({"--idle-timeout", "500"});
    http_client client(server.port());
    client.send(post_request("/", "x"));
    CHECK(client.read_response().status == 200);
    const auto start = test_clock::now();
    CHECK_FALSE(client.server_closed(200ms));
    CHECK(client.server_closed(5s));
    CHECK(since(start) >= 450ms);
    CHECK(client.unread().empty());
  }

  TEST_CASE("a client that stops reading is disconnected after write_timeout; a slow reader is not") {
    auto server = echo({"--write-timeout", "1000", "--max-body", "67108864"});
    const std::string body = pattern(8 << 20);
    {
      http_client stuck(server.port(), http_client::default_timeout, 16 * 1024);
      stuck.send(post_request("/", body), 20s);
      // Never reads: once the kernel buffers are full the worker's write
      // stalls, and write_timeout later it closes.
      std::this_thread::sleep_for(3s);  // the stall under test
      std::size_t received = 0;
      CHECK(stuck.drain_until_closed(5s, &received));
      CHECK(received < body.size());
    }
    http_client slow(server.port(), http_client::default_timeout, 16 * 1024);
    slow.send(post_request("/", body), 20s);
    http_response head = slow.read_head(5s);
    REQUIRE(head.status == 200);
    REQUIRE(head.header("Content-Length") == std::to_string(body.size()));
    std::string got;
    const auto start = test_clock::now();
    while (got.size() < body.size() && since(start) < 60s) {
      got += slow.read_exactly(std::min<std::size_t>(512 * 1024, body.size() - got.size()), 5s);
      std::this_thread::sleep_for(150ms);  // a slow reader, never stalling near 1 s
    }
    CHECK(since(start) > 1500ms);  // longer than the write timeout in all
    CHECK(got == body);
  }

  // --- Semantics -------------------------------------------------------------

  TEST_CASE("Expect: 100-continue gets 100 Continue before the body is sent, then the final response") {
    auto server = echo();
    for (const char* target : {"/", "/stream"}) {
      CAPTURE(target);
      http_client client(server.port());
      client.send(request("POST", target, "Expect: 100-continue\r\nContent-Length: 5\r\n"));
      http_response interim = client.read_response(3s);
      CHECK(interim.status == 100);
      client.send("hello");
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "hello");
      CHECK_FALSE(res.has_header("Connection"));
      client.send(post_request("/", "next"));  // and the connection goes on
      CHECK(client.read_response().body == "next");
    }
  }

  TEST_CASE("Expect: 100-continue works with a handler that answers at once (hello)") {
    cluster_process server(program::hello, 1);
    http_client client(server.port());
    client.send(request("POST", "/", "Expect: 100-continue\r\nContent-Length: 5\r\n"));
    CHECK(client.read_response(3s).status == 100);
    client.send("hello");
    CHECK(client.read_response().body == "Hello World\n");
  }

  TEST_CASE("Expect: 100-continue on a request refused from its headers gets the final status instead") {
    auto server = echo({"--max-body", "1000"});
    http_client client(server.port());
    client.send(request("POST", "/", "Expect: 100-continue\r\nContent-Length: 5000\r\n"));
    http_response res = client.read_response(3s);
    CHECK(res.status == 413);
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(3s));
  }

  TEST_CASE("an expectation other than 100-continue gets 417") {
    auto server = echo();
    expect_refused(server.port(), request("POST", "/", "Expect: 200-ok\r\nContent-Length: 1\r\n", "x"), 417);
  }

  TEST_CASE("HTTP/1.0 is answered with and without keep-alive, and gets a stream unframed, then a close") {
    auto server = echo();
    {
      http_client client(server.port());
      client.send("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
      http_response res = client.read_response();
      CHECK(res.body == "abc");
      CHECK(res.header("Connection") == "close");
      CHECK(client.server_closed(3s));
    }
    {
      http_client client(server.port());
      for (int i = 0; i < 2; ++i) {
        client.send("POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nka");
        http_response res = client.read_response();
        CHECK(res.body == "ka");
        CHECK(res.header("Connection") == "keep-alive");
      }
      CHECK_FALSE(client.server_closed(100ms));
    }
    {
      http_client client(server.port());
      client.send("POST /stream HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 6\r\n\r\nstream");
      http_response res = client.read_response();  // no length: the body runs to the close
      CHECK(res.status == 200);
      CHECK_FALSE(res.has_header("Transfer-Encoding"));
      CHECK_FALSE(res.has_header("Content-Length"));
      CHECK(res.header("Connection") == "close");
      CHECK(res.body == "stream");
    }
  }

  TEST_CASE("Connection: close from the client is honoured: the response says so and the server closes") {
    auto server = echo();
    for (const char* target : {"/", "/stream"}) {
      http_client client(server.port());
      client.send(request("POST", target, "Connection: close\r\nContent-Length: 2\r\n", "hi"));
      http_response res = client.read_response();
      CHECK(res.body == "hi");
      CHECK(res.header("Connection") == "close");
      CHECK(client.server_closed(3s));
    }
  }

  TEST_CASE("HEAD gets the GET's header fields and no body, for whole and streamed responses") {
    auto server = echo();
    http_client client(server.port());
    client.send(request("HEAD", "/"));
    http_response whole = client.read_response(3s, /*head=*/true);
    CHECK(whole.status == 200);
    CHECK(whole.header("Content-Length") == "0");
    client.send(request("HEAD", "/stream"));
    http_response streamed = client.read_response(3s, /*head=*/true);
    CHECK(streamed.status == 200);
    CHECK(streamed.header("Transfer-Encoding") == "chunked");
    CHECK(streamed.header("Content-Type") == "application/octet-stream");
    CHECK(client.unread().empty());
    client.send(post_request("/", "after"));  // stray body bytes would break this
    CHECK(client.read_response().body == "after");
  }

  TEST_CASE("a half-closed client still gets its response") {
    auto server = echo();
    for (const char* target : {"/", "/stream"}) {
      http_client client(server.port());
      client.send(post_request(target, "half"));
      client.shutdown_write();
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "half");
    }
  }

  TEST_CASE("an unknown method gets 501 and the requests behind it on the connection are answered") {
    auto server = echo();
    http_client client(server.port());
    client.send(request("BREW", "/pot", "Content-Length: 6\r\n", "coffee") + request("get", "/lower") +
                post_request("/", "after"));
    std::vector<http_response> res = client.read_responses(3);
    CHECK(res[0].status == 501);
    CHECK_FALSE(res[0].has_header("Connection"));
    CHECK(res[1].status == 501);  // methods are case-sensitive
    CHECK(res[2].status == 200);
    CHECK(res[2].body == "after");
    CHECK_FALSE(client.server_closed(100ms));
  }

  TEST_CASE("Upgrade is declined (answered as HTTP/1.1) and CONNECT gets 501") {
    auto server = echo();
    http_client client(server.port());
    client.send(request("POST", "/", "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n", "up") +
                post_request("/", "plain"));
    std::vector<http_response> res = client.read_responses(2);
    CHECK(res[0].status == 200);
    CHECK(res[0].body == "up");
    CHECK_FALSE(res[0].has_header("Upgrade"));
    CHECK(res[1].body == "plain");
    expect_refused(server.port(), "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501);
  }

  // --- Streaming ---------------------------------------------------------------

  TEST_CASE("a streamed upload comes back chunked piece by piece, before the upload has ended") {
    auto server = echo();
    http_client client(server.port());
    client.send(request("PUT", "/stream", "Transfer-Encoding: chunked\r\n"));
    client.send(chunk("first piece"));
    http_response head = client.read_head();
    CHECK(head.status == 200);
    CHECK(head.header("Transfer-Encoding") == "chunked");
    CHECK_FALSE(head.has_header("Content-Length"));
    CHECK(client.read_chunk() == "first piece");  // echoed while the upload is still open
    client.send(chunk("second"));
    CHECK(client.read_chunk() == "second");
    client.send("0\r\n\r\n");
    CHECK(client.read_chunk() == std::nullopt);
    client.send(post_request("/", "same connection"));
    CHECK(client.read_response().body == "same connection");
  }

  TEST_CASE("a client that reads slowly holds back a streamed upload instead of growing the worker") {
    auto server = echo({"--max-body", "1073741824"});
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = server.worker_pids()).size() == 1; }, 5s));
    const long before = status_kib(workers[0], "VmRSS");
    http_client client(server.port(), http_client::default_timeout, 64 * 1024);
    const std::size_t total = 256u << 20;  // 256 MiB if nothing held it back
    client.send(request("PUT", "/stream", "Content-Length: " + std::to_string(total) + "\r\n"));
    const std::string block = pattern(1 << 20);
    std::size_t sent = 0;
    for (int i = 0; i < 256; ++i) {
      std::size_t n = client.send_some(block, 1s);  // stops once the server stops reading
      sent += n;
      if (n < block.size()) break;
    }
    CHECK(sent < total / 4);  // flow control, end to end
    const long after = status_kib(workers[0], "VmRSS");
    INFO("worker RSS before ", before, " KiB, after ", after, " KiB, sent ", sent, " bytes");
    CHECK(after - before < 32 * 1024);  // the worker did not buffer what it could not send
    client.reset();
    expect_echo_works(server.port());
  }

  // --- Robustness --------------------------------------------------------------

  TEST_CASE("echo keeps answering after thousands of malformed, reset and abandoned connections") {
    auto server = echo({"--header-timeout", "2000"});
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = server.worker_pids()).size() == 1; }, 5s));
    const std::vector<std::string> garbage = {
        "GET / HTTP/1.1\r\n\r\n",
        std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11),
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        std::string("GET /\0 HTTP/1.1\r\n\r\n", 19),
        std::string(3000, 'A'),
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    const auto start = test_clock::now();
    int rounds = 0, answered = 0;
    for (; rounds < 3000 && since(start) < 90s; ++rounds) {
      http_client client(server.port());
      switch (rounds % 3) {
        case 0:  // malformed: answered with an error, then closed
          client.send(garbage[static_cast<std::size_t>(rounds / 3) % garbage.size()]);
          if (client.read_response().status >= 400) ++answered;
          break;
        case 1:  // reset in the middle of a request
          client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial");
          client.reset();
          break;
        default:  // abandoned: half a header block, then an orderly close
          client.send("GET /abandoned HTTP/1.1\r\nHo");
          break;
      }
      if (rounds % 250 == 249) expect_echo_works(server.port());
    }
    INFO("rounds: ", rounds, ", in ", since(start).count(), " ms");
    CHECK(rounds == 3000);
    CHECK(answered == 1000);
    expect_echo_works(server.port());
    CHECK(server.worker_pids() == workers);  // the same worker, never crashed
  }
}
