// Integration tests of file bodies: examples/static runs as a real cluster
// (two workers) over a temporary directory and serves its files with
// sendfile; the tests check bytes, framing and fields over loopback sockets,
// HEAD, keep-alive after a file, and the refusals (404, 403, hidden names).
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

#include <sys/stat.h>

#include <string>

using namespace test_support;

namespace {


std::string get(const std::string& target, const std::string& method = "GET") {
  return method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

}  // namespace

TEST_SUITE("http") {
  TEST_CASE("examples/static serves files with their length, type and date, keeps the connection, refuses the rest") {
    temp_dir root("static");
    const std::string big = pattern(3 * 1024 * 1024 + 17);
    write_file(root / "index.html", "<!doctype html><p>hi</p>\n");
    write_file(root / "big.bin", big);
    write_file(root / ".secret", "hidden");
    REQUIRE(::mkdir((root / "sub").c_str(), 0755) == 0);
    write_file(root / "sub/app.js", "console.log(1)\n");
    cluster_process server(program::static_files, 2, {}, {"STATIC_ROOT=" + root.path().string()});

    http_client client(server.port());
    client.send(get("/") + get("/big.bin") + get("/sub/app.js") + get("/big.bin", "HEAD") + get("/about"));
    http_response index = client.read_response();
    CHECK(index.status == 200);
    CHECK(index.body == "<!doctype html><p>hi</p>\n");
    CHECK(index.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(index.header("Last-Modified").value_or("").ends_with(" GMT"));
    http_response file = client.read_response(std::chrono::seconds(10));
    CHECK(file.status == 200);
    CHECK(file.header("Content-Length") == std::to_string(big.size()));
    CHECK(file.header("Content-Type") == "application/octet-stream");
    CHECK(file.body == big);
    http_response js = client.read_response();
    CHECK(js.header("Content-Type") == "text/javascript; charset=utf-8");
    CHECK(js.body == "console.log(1)\n");
    http_response head = client.read_response(http_client::default_timeout, true);
    CHECK(head.status == 200);
    CHECK(head.header("Content-Length") == std::to_string(big.size()));
    CHECK(head.body.empty());
    http_response about = client.read_response();
    CHECK(about.body == "static files from " + root.path().string() + "\n");

    for (auto [target, status] : {std::pair{"/missing.txt", 404}, std::pair{"/sub", 403}, std::pair{"/.secret", 404},
                                  std::pair{"/sub/../.secret", 404}, std::pair{"/%2e%2e/etc/passwd", 404}}) {
      CAPTURE(target);
      client.send(get(target));
      CHECK(client.read_response().status == status);
    }
    client.send(get("/"));  // still the same connection
    CHECK(client.read_response().status == 200);
  }
}
