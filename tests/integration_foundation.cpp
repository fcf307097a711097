// Integration tests of the foundation: the example binaries run as real
// clusters (master plus two workers on 127.0.0.1, an ephemeral port), and the
// tests speak raw HTTP/1.1 to them and signal them by PID.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/proc.hpp"
#include "support/process.hpp"

#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

using namespace test_support;

namespace {

bool contains(const std::vector<pid_t>& pids, pid_t pid) { return std::ranges::find(pids, pid) != pids.end(); }

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("hello answers GET with 200, its body, a Date and a Content-Length") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send(get_request("/"));
    http_response res = client.read_response();

    CHECK(res.version == "HTTP/1.1");
    CHECK(res.status == 200);
    CHECK(res.body == "Hello World\n");
    CHECK(res.header("Content-Type") == "text/plain; charset=utf-8");
    CHECK(res.header("Content-Length") == "12");
    // An IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
    auto date = res.header("Date");
    REQUIRE(date);
    CHECK(date->size() == 29);
    CHECK(date->ends_with(" GMT"));
  }

  TEST_CASE("a keep-alive connection serves several requests in turn and stays open") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    for (int i = 0; i < 5; ++i) {
      CAPTURE(i);
      client.send(get_request("/request/" + std::to_string(i)));
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "Hello World\n");
      CHECK_FALSE(res.has_header("Connection"));
    }
    CHECK_FALSE(client.server_closed(100ms));
  }

  TEST_CASE("pipelined requests sent in one write are answered in order on the same connection") {
    cluster_process cluster(program::echo);
    http_client client(cluster.port());

    client.send(post_request("/a", "first") + post_request("/b", "second body") + post_request("/c", "") +
                post_request("/d", "fourth"));
    std::vector<http_response> responses = client.read_responses(4);

    REQUIRE(responses.size() == 4);
    CHECK(responses[0].body == "first");
    CHECK(responses[1].body == "second body");
    CHECK(responses[2].body == "");
    CHECK(responses[3].body == "fourth");
    for (const http_response& res : responses) CHECK(res.status == 200);
    CHECK(client.unread().empty());

    client.send(post_request("/e", "still open"));
    CHECK(client.read_response().body == "still open");
  }

  TEST_CASE("echo returns a chunked request body de-chunked") {
    cluster_process cluster(program::echo);
    http_client client(cluster.port());

    client.send(
        "POST /upload HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "5\r\nhello\r\n"
        "7;ext=1\r\n, world\r\n"
        "1\r\n!\r\n"
        "0\r\n"
        "\r\n");
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == "hello, world!");
    CHECK(res.header("Content-Length") == "13");
    CHECK(res.header("Content-Type") == "application/octet-stream");
  }

  TEST_CASE("echo returns a Content-Length request body") {
    cluster_process cluster(program::echo);
    http_client client(cluster.port());
    const std::string body = "binary\0body\r\n\r\nwith a blank line inside";

    client.send(post_request("/upload", body));
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == body);
    CHECK(res.header("Content-Length") == std::to_string(body.size()));
  }

  TEST_CASE("a request split across many small writes is reassembled") {
    cluster_process cluster(program::echo);
    http_client client(cluster.port());
    const std::string request =
        "PUT /pieces HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";

    for (std::size_t at = 0; at < request.size(); at += 7) client.send(request.substr(at, 7));
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == "abcdefg");
  }

  TEST_CASE("HEAD gets the headers of GET, with its Content-Length, but no body") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send("HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    http_response head = client.read_response(http_client::default_timeout, /*head=*/true);
    CHECK(head.status == 200);
    CHECK(head.header("Content-Length") == "12");
    CHECK(head.header("Content-Type") == "text/plain; charset=utf-8");
    CHECK(head.has_header("Date"));
    CHECK(client.unread().empty());

    // Had any body bytes followed the HEAD response, this one would not parse.
    client.send(get_request("/"));
    http_response get = client.read_response();
    CHECK(get.status == 200);
    CHECK(get.body == "Hello World\n");
  }

  TEST_CASE("an HTTP/1.0 request without keep-alive is answered, then the server closes") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send("GET / HTTP/1.0\r\n\r\n");
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == "Hello World\n");
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(2s));
  }

  TEST_CASE("an HTTP/1.0 request with Connection: keep-alive keeps the connection open") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    for (int i = 0; i < 2; ++i) {
      CAPTURE(i);
      client.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "Hello World\n");
      CHECK(res.header("Connection") == "keep-alive");
    }
    CHECK_FALSE(client.server_closed(100ms));
  }

  TEST_CASE("a malformed request gets 400 and the connection is closed") {
    cluster_process cluster(program::hello);
    const std::vector<std::string> malformed = {
        std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // a TLS ClientHello
        "GET / HTTP/1.1 trailing junk\r\nHost: 127.0.0.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };

    for (const std::string& request : malformed) {
      CAPTURE(request);
      http_client client(cluster.port());
      client.send(request);
      http_response res = client.read_response();

      CHECK(res.status == 400);
      CHECK(res.header("Connection") == "close");
      CHECK(client.server_closed(2s));
    }
  }

  TEST_CASE("an unknown method gets 501 Not Implemented") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send("BREW /pot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    http_response res = client.read_response();

    CHECK(res.status == 501);  // RFC 9110 §9.1
  }

  TEST_CASE("an HTTP/1.1 request without Host gets 400 and the connection is closed") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send("GET / HTTP/1.1\r\n\r\n");
    http_response res = client.read_response();

    CHECK(res.status == 400);
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(2s));
  }

  TEST_CASE("a client's Connection: close is echoed and the server closes after the response") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == "Hello World\n");
    CHECK(res.header("Connection") == "close");
    CHECK(client.server_closed(2s));
  }

  TEST_CASE("a client that half-closes after its request still gets the response") {
    cluster_process cluster(program::hello);
    http_client client(cluster.port());

    client.send(get_request("/"));
    client.shutdown_write();
    http_response res = client.read_response();

    CHECK(res.status == 200);
    CHECK(res.body == "Hello World\n");
  }

  TEST_CASE("a worker killed with SIGKILL is replaced and the service keeps answering") {
    cluster_process cluster(program::hello);
    std::vector<pid_t> before;
    REQUIRE(wait_until([&] { return (before = cluster.worker_pids()).size() == 2; }, 5s));

    const pid_t victim = before.front();
    const auto killed_at = test_clock::now();
    REQUIRE(::kill(victim, SIGKILL) == 0);

    std::vector<pid_t> after;
    REQUIRE(wait_until(
        [&] {
          after = cluster.worker_pids();
          return after.size() == 2 && !contains(after, victim);
        },
        5s));
    // Promised: "at once" (a fork, a few milliseconds; 1 s leaves room for a
    // loaded machine and the sanitizers).
    CHECK(test_clock::now() - killed_at < 1s);
    pid_t replacement = -1;
    for (pid_t p : after)
      if (!contains(before, p)) replacement = p;
    REQUIRE(replacement > 0);
    CHECK(contains(after, before.back()));  // the other worker was left alone
    CHECK(cluster.wait_for_log("(pid " + std::to_string(replacement) + ") ready", 5s));

    // Each connection lands on one of the two slots; every one is answered.
    for (int i = 0; i < 10; ++i) {
      CAPTURE(i);
      http_client client(cluster.port());
      client.send(get_request("/"));
      http_response res = client.read_response();
      CHECK(res.status == 200);
      CHECK(res.body == "Hello World\n");
    }
  }

  TEST_CASE("SIGTERM stops the master and every worker within 5 s, the master exiting 0") {
    cluster_process cluster(program::hello);
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = cluster.worker_pids()).size() == 2; }, 5s));
    const auto start = test_clock::now();

    cluster.signal(SIGTERM);
    std::optional<int> status = cluster.wait_exit(5s);

    REQUIRE_MESSAGE(status, "the master was still running 5 s after SIGTERM");
    CHECK(WIFEXITED(*status));
    CHECK(exit_code(status) == 0);
    const auto left = 5s - std::chrono::duration_cast<std::chrono::milliseconds>(test_clock::now() - start);
    CHECK(wait_until([&] { return std::ranges::none_of(workers, process_alive); }, std::max(left, 0ms)));
  }

  TEST_CASE("each process runs on an io_uring ring of its own: a worker sheds the master's (io_uring builds; none with epoll)") {
    cluster_process cluster(program::hello);
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = cluster.worker_pids()).size() == 2; }, 5s));
#if defined(ASIO_HAS_IO_URING)
    const std::pair<std::size_t, std::size_t> one_ring{1, 1};
#else
    const std::pair<std::size_t, std::size_t> one_ring{0, 0};
#endif
    CHECK(io_uring_rings(cluster.pid()) == one_ring);
    for (pid_t w : workers) CHECK_MESSAGE(io_uring_rings(w) == one_ring, "worker " << w);
    // And serve on them: four connections, spread over the two workers.
    for (int i = 0; i < 4; ++i) {
      http_client client(cluster.port());
      client.send(get_request("/"));
      CHECK(client.read_response().status == 200);
    }
  }

  TEST_CASE("an out-of-range --workers is refused with exit code 2 before any fork") {
    finished_program run = run_program({path_of(program::hello), "--workers", "-1"}, 5s);
    INFO("stderr: ", run.err);

    CHECK(exit_code(run.status) == 2);
    CHECK(run.err.find("--workers") != std::string::npos);
    CHECK(run.err.find("[0, 1024]") != std::string::npos);
    CHECK(run.err.find("started") == std::string::npos);
    CHECK(run.out.empty());
  }

  TEST_CASE("an out-of-range --port is refused with exit code 2 before any fork") {
    finished_program run = run_program({path_of(program::hello), "--port", "70000"}, 5s);
    INFO("stderr: ", run.err);

    CHECK(exit_code(run.status) == 2);
    CHECK(run.err.find("--port") != std::string::npos);
    CHECK(run.err.find("[0, 65535]") != std::string::npos);
    CHECK(run.err.find("started") == std::string::npos);
    CHECK(run.out.empty());
  }

  TEST_CASE("a handler sees the client's address and port and the address it reached (request::peer, local)") {
    cluster_process cluster(program::lifecycle, 1);
    for (int i = 0; i < 3; ++i) {  // keep-alive: the same answer on every request of the connection
      http_client client(cluster.port());
      for (int j = 0; j < 2; ++j) {
        client.send(get_request("/ends"));
        http_response res = client.read_response();
        CHECK(res.status == 200);
        CHECK(res.body == "peer 127.0.0.1:" + std::to_string(client.local_port()) + " local 127.0.0.1:" +
                              std::to_string(cluster.port()) + "\n");
      }
    }
  }

  TEST_CASE("a port another cluster serves is refused before any fork: no second member of its reuseport group") {
    cluster_process first(program::hello, 1);
    finished_program second =
        run_program({path_of(program::hello), "--host", "127.0.0.1", "--port", std::to_string(first.port()), "--workers", "1"}, 5s);
    INFO("stderr: ", second.err);
    CHECK(exit_code(second.status) == 1);
    CHECK(second.err.find("cannot listen on 127.0.0.1:" + std::to_string(first.port())) != std::string::npos);
    CHECK(second.err.find("already") != std::string::npos);
    CHECK(second.err.find("started") == std::string::npos);
    CHECK(second.out.empty());  // no ready line
    // The first one still has the port to itself.
    http_client client(first.port());
    client.send(get_request("/"));
    CHECK(client.read_response().status == 200);
  }

  TEST_CASE("a port a plain socket listens on is refused before any fork") {
    unique_fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(holder);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(holder.get(), 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const int port = ntohs(a.sin_port);
    finished_program run =
        run_program({path_of(program::hello), "--host", "127.0.0.1", "--port", std::to_string(port), "--workers", "1"}, 5s);
    INFO("stderr: ", run.err);
    CHECK(exit_code(run.status) == 1);
    CHECK(run.err.find("already") != std::string::npos);
    CHECK(run.out.empty());
  }

  TEST_CASE("--help prints the usage on stdout and exits 0") {
    finished_program run = run_program({path_of(program::hello), "--help"}, 5s);
    INFO("stderr: ", run.err);

    CHECK(exit_code(run.status) == 0);
    CHECK(run.out.starts_with("usage: "));
    CHECK(run.out.find("--port") != std::string::npos);
    CHECK(run.out.find("--workers") != std::string::npos);
    CHECK(run.err.empty());
  }
}
