// Unit tests: the admin endpoint's page (GET /) through the admin routes and
// the connection code over an in-memory socket: status, type, security
// fields, a Content-Security-Policy whose hashes match the inline blocks
// actually served, HEAD without a body, and the other paths unchanged. Also
// the SHA-256 and base64 behind those hashes, against published vectors.
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cluster/detail/admin_routes.hpp>
#include <cluster/detail/sha256.hpp>

#include <functional>
#include <string>
#include <string_view>

using namespace test_support;
using namespace cluster::detail;

namespace {

std::string request(const std::string& method, const std::string& target) {
  return method + " " + target + " HTTP/1.1\r\nHost: h\r\n\r\n";
}

// Serves `input` through admin_answer over a fabricated two-slot cluster;
// `heads`: indexes of the responses that answer HEAD. Counts the snapshots
// and health verdicts taken.
wire_output admin_exchange(const std::string& input, std::function<bool(std::size_t)> heads, int* snapshots) {
  auto snapshot = [snapshots] {
    ++*snapshots;
    cluster_status st;
    st.state = "running";
    st.slots.resize(2);
    return st;
  };
  auto health = [snapshots] {
    ++*snapshots;
    return service_health{};
  };
  std::function<cluster::response(const cluster::request&)> render = [&](const cluster::request& req) {
    return admin_answer(req, snapshot, health);
  };
  cluster::options opts;
  auto wire = serve_in_memory(render, opts, {input});
  return parse_responses(wire.output, [&](std::size_t i, const wire_response&) { return heads(i); });
}

// The text between the first `open` and the next `close` in `page`.
std::string_view between(std::string_view page, std::string_view open, std::string_view close) {
  auto start = page.find(open);
  if (start == std::string_view::npos) return {};
  start += open.size();
  auto end = page.find(close, start);
  return end == std::string_view::npos ? std::string_view{} : page.substr(start, end - start);
}

std::string hex(const std::array<std::uint8_t, 32>& digest) {
  std::string out;
  for (auto b : digest) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", b);
    out += two;
  }
  return out;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("admin page: GET / is a small self-contained HTML page with security fields, taking no snapshot") {
    int snapshots = 0;
    auto out = admin_exchange(
        request("GET", "/"), [](std::size_t) { return false; }, &snapshots);
    CHECK(out.error.empty());
    REQUIRE(out.responses.size() == 1);
    const wire_response& page = out.responses[0];
    CHECK(page.status == 200);
    CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(page.header("X-Content-Type-Options") == "nosniff");
    CHECK(page.header("Cache-Control") == "no-store");
    CHECK(page.header("Referrer-Policy") == "no-referrer");
    CHECK(snapshots == 0);  // the page reads /status itself: no snapshot, no health verdict
    CHECK(page.body.starts_with("<!doctype html>"));
    CHECK(page.body.size() < 8 * 1024);
    CHECK(page.body.find("fetch(\"status\"") != std::string::npos);  // relative: works under a proxy's prefix
    CHECK(page.body.find("/status") != std::string::npos);
    CHECK(page.body.find("cannot reach /status") != std::string::npos);
    CHECK(page.body.find("innerHTML") == std::string::npos);  // values go in as text only
    CHECK(page.body.find("://") == std::string::npos);        // nothing from elsewhere
    CHECK(page.body.find("src=") == std::string::npos);
  }

  TEST_CASE("admin page: the Content-Security-Policy names exactly the served inline script and style by hash") {
    int snapshots = 0;
    auto out = admin_exchange(
        request("GET", "/"), [](std::size_t) { return false; }, &snapshots);
    REQUIRE(out.responses.size() == 1);
    const std::string& body = out.responses[0].body;
    const std::string policy = out.responses[0].header("Content-Security-Policy").value_or("");
    INFO(policy);
    std::string_view script = between(body, "<script>", "</script>");
    std::string_view style = between(body, "<style>", "</style>");
    REQUIRE(script.size() > 100);
    REQUIRE(style.size() > 100);
    CHECK(policy.starts_with("default-src 'none'; "));
    CHECK(policy.find("script-src " + csp_hash(script) + ";") != std::string::npos);
    CHECK(policy.find("style-src " + csp_hash(style) + ";") != std::string::npos);
    CHECK(policy.find("connect-src 'self'") != std::string::npos);
    CHECK(policy.find("frame-ancestors 'none'") != std::string::npos);
    CHECK(policy.find("unsafe") == std::string::npos);
    // One block of each: a second, unhashed one would be refused by the browser.
    CHECK(body.find("<script", body.find("</script>")) == std::string::npos);
    CHECK(body.find("<style", body.find("</style>")) == std::string::npos);
  }

  TEST_CASE("admin page: HEAD / has the same fields and no body; other paths still get 404 naming the page") {
    int snapshots = 0;
    auto out = admin_exchange(
        request("GET", "/") + request("HEAD", "/") + request("GET", "/index.html") + request("GET", "/status") +
            request("POST", "/"),
        [](std::size_t i) { return i == 1; }, &snapshots);
    CHECK(out.error.empty());
    REQUIRE(out.responses.size() == 5);
    const wire_response& get = out.responses[0];
    const wire_response& head = out.responses[1];
    CHECK(head.status == 200);
    CHECK(head.body.empty());
    CHECK(head.header("Content-Length") == std::to_string(get.body.size()));
    CHECK(head.header("Content-Security-Policy") == get.header("Content-Security-Policy"));
    CHECK(out.responses[2].status == 404);
    CHECK(out.responses[2].body ==
          "not found: try / (a page), /livez, /readyz, /metrics, /status or /status?format=text\n");
    CHECK(out.responses[3].status == 200);
    CHECK(out.responses[3].body.find("\"rates\":{") != std::string::npos);
    CHECK(out.responses[4].status == 405);
    CHECK(snapshots == 1);
  }

  TEST_CASE("sha256 and base64 match the published test vectors") {
    // FIPS 180-4 examples (NIST CSRC), and a message that needs a second padding block.
    CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex(sha256(std::string(1000, 'a'))) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    // RFC 4648 section 10.
    auto b64 = [](std::string_view s) { return base64(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); };
    CHECK(b64("") == "");
    CHECK(b64("f") == "Zg==");
    CHECK(b64("fo") == "Zm8=");
    CHECK(b64("foo") == "Zm9v");
    CHECK(b64("foobar") == "Zm9vYmFy");
  }
}
