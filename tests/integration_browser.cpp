// Tests of examples/sse as a browser sees it: raw loopback requests for the
// page, the event stream's fields, ids, Last-Event-ID resumption, CORS and
// errors; then a real headless Chromium (Debian's `chromium`) that opens the
// page, from the same origin and from another one, and must show the events
// in its DOM (support/chromium.hpp drives it). Without chromium the browser
// cases fail, saying how to install it.
#include <doctest/doctest.h>

#include "support/chromium.hpp"
#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace test_support;

namespace {

/// The example's stream, as the tests expect it (examples/sse.cpp).
constexpr int last_tick = 10;
constexpr std::string_view retry_hint = "retry: 2000\n\n";
constexpr std::string_view heartbeat = ": heartbeat\n\n";

std::string event(int id) {
  return "id: " + std::to_string(id) + "\ndata: tick " + std::to_string(id) + "\n\n";
}

/// Sends GET /events with `fields` and reads the response head and the retry
/// hint that opens every stream.
http_response open_events(http_client& client, std::string_view fields = "") {
  client.send(request("GET", "/events", "Accept: text/event-stream\r\n" + std::string(fields)));
  http_response head = client.read_head();
  REQUIRE(head.status == 200);
  REQUIRE(client.read_chunk() == std::string(retry_hint));
  return head;
}

/// The first event of a stream opened with `Last-Event-ID: <value>`.
std::optional<std::string> first_event_after(std::uint16_t port, std::string_view value) {
  http_client client(port);
  open_events(client, "Last-Event-ID: " + std::string(value) + "\r\n");
  return client.read_chunk(3s);
}

/// A script that resolves, once the page's list holds an event with id
/// `last_id` (or after `timeout_ms`), to "<state text>;<id>=<text>|...".
std::string events_when_shown(int last_id, int timeout_ms = 15000) {
  return "(async () => {"
         "  const shown = () => [...document.querySelectorAll('#events li')];"
         "  const stop = Date.now() + " + std::to_string(timeout_ms) + ";"
         "  while (!shown().some((li) => li.dataset.id === '" + std::to_string(last_id) + "') && Date.now() < stop)"
         "    await new Promise((resolve) => setTimeout(resolve, 20));"
         "  return document.getElementById('state').textContent + ';' +"
         "         shown().map((li) => li.dataset.id + '=' + li.textContent).join('|');"
         "})()";
}

/// What events_when_shown() returns for the ticks `first`..`last`.
std::string shown(std::string_view state, int first, int last) {
  std::string out = std::string(state) + ";";
  for (int id = first; id <= last; ++id)
    out += (id > first ? "|" : "") + std::to_string(id) + "=id " + std::to_string(id) + ": tick " + std::to_string(id);
  return out;
}

}  // namespace

TEST_SUITE("browser") {
  TEST_CASE("GET / serves a self-contained page that lists the events of an EventSource on /events") {
    cluster_process server(program::sse, 1);
    http_client client(server.port());
    client.send(request("GET", "/"));
    http_response page = client.read_response();
    CHECK(page.status == 200);
    CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(page.body.starts_with("<!doctype html>"));
    CHECK(page.body.find("new EventSource(") != std::string::npos);
    CHECK(page.body.find("<ol id=\"events\">") != std::string::npos);
    CHECK(page.body.find("://") == std::string::npos);  // nothing loaded from elsewhere
    CHECK(page.body.find("src=") == std::string::npos);
    client.send(request("HEAD", "/"));  // same fields, no body
    http_response head = client.read_response(5s, true);
    CHECK(head.status == 200);
    CHECK(head.header("Content-Length") == std::to_string(page.body.size()));
    CHECK(head.body.empty());
  }

  TEST_CASE("GET /events is an uncached event stream with a retry hint, ids 1..10 as they come, then heartbeats") {
    cluster_process server(program::sse, 1);
    http_client client(server.port());
    http_response head = open_events(client);
    CHECK(head.header("Content-Type") == "text/event-stream");
    CHECK(head.header("Cache-Control") == "no-cache");
    CHECK(head.header("Access-Control-Allow-Origin") == "*");
    CHECK(head.header("Transfer-Encoding") == "chunked");
    std::vector<test_clock::time_point> times;
    for (int id = 1; id <= last_tick; ++id) {
      CHECK(client.read_chunk(3s) == event(id));
      times.push_back(test_clock::now());
    }
    CHECK(times.back() - times.front() >= 4s);  // 500 ms apart, each read as it was written
    const auto idle_since = test_clock::now();
    CHECK(client.read_chunk(5s) == std::string(heartbeat));
    CHECK(test_clock::now() - idle_since >= 1500ms);
  }

  TEST_CASE("Last-Event-ID resumes the stream after that id; past the last event, only heartbeats come") {
    cluster_process server(program::sse, 1);
    {
      http_client client(server.port());
      open_events(client, "Last-Event-ID: 7\r\n");
      for (int id = 8; id <= last_tick; ++id) CHECK(client.read_chunk(3s) == event(id));
      CHECK(client.read_chunk(5s) == std::string(heartbeat));
    }
    for (std::string_view last : {"10", "99"}) {
      CAPTURE(last);
      http_client client(server.port());
      open_events(client, "Last-Event-ID: " + std::string(last) + "\r\n");
      auto start = test_clock::now();
      CHECK(client.read_chunk(5s) == std::string(heartbeat));
      CHECK(client.read_chunk(5s) == std::string(heartbeat));
      CHECK(test_clock::now() - start >= 3s);  // every 2 s
    }
  }

  TEST_CASE("a malformed Last-Event-ID counts as none: the stream starts at the first event") {
    cluster_process server(program::sse, 1);
    for (std::string_view bad : {"abc", "-3", "7x", "0x5", "+4", "3.5", "99999999999999999999"}) {
      CAPTURE(bad);
      CHECK(first_event_after(server.port(), bad) == event(1));
    }
    CHECK(first_event_after(server.port(), "4") == event(5));  // and a good one still resumes
  }

  TEST_CASE("CORS: any origin may read the stream, and a preflight is answered") {
    cluster_process server(program::sse, 1);
    http_client client(server.port());
    http_response head = open_events(client, "Origin: http://elsewhere.example\r\n");
    CHECK(head.header("Access-Control-Allow-Origin") == "*");

    http_client preflight(server.port());
    preflight.send(request("OPTIONS", "/events",
                           "Origin: http://elsewhere.example\r\nAccess-Control-Request-Method: GET\r\n"
                           "Access-Control-Request-Headers: last-event-id\r\n"));
    http_response res = preflight.read_response();
    CHECK(res.status == 204);
    CHECK(res.body.empty());
    CHECK(res.header("Access-Control-Allow-Origin") == "*");
    CHECK(res.header("Access-Control-Allow-Methods").value_or("").find("GET") != std::string::npos);
    CHECK(res.header("Access-Control-Allow-Headers").value_or("").find("Last-Event-ID") != std::string::npos);
    CHECK(res.has_header("Access-Control-Max-Age"));
    CHECK(res.header("Allow") == "GET, HEAD, OPTIONS");
    preflight.send(request("GET", "/"));  // the connection goes on
    CHECK(preflight.read_response().status == 200);
  }

  TEST_CASE("HEAD /events gets the stream's fields and ends; unknown paths get 404, other methods 405") {
    cluster_process server(program::sse, 1);
    http_client client(server.port());
    client.send(request("HEAD", "/events"));
    http_response head = client.read_response(5s, true);
    CHECK(head.status == 200);
    CHECK(head.header("Content-Type") == "text/event-stream");
    CHECK(head.header("Access-Control-Allow-Origin") == "*");
    for (std::string_view path : {"/nope", "/events/1", "/index.html", "/Events"}) {
      CAPTURE(path);
      client.send(request("GET", path));
      CHECK(client.read_response().status == 404);
    }
    http_client other(server.port());
    other.send(request("POST", "/events", "Content-Length: 0\r\n"));
    http_response refused = other.read_response();
    CHECK(refused.status == 405);
    CHECK(refused.header("Allow") == "GET, HEAD, OPTIONS");
  }

  TEST_CASE("a client that goes away ends its stream: the worker's descriptors come back") {
    cluster_process server(program::sse, 1);
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = server.worker_pids()).size() == 1; }, 5s));
    const std::size_t before = count_fds(workers[0]);
    {
      std::vector<std::unique_ptr<http_client>> clients;
      for (int i = 0; i < 20; ++i) {
        clients.push_back(std::make_unique<http_client>(server.port()));
        // Half of them idle (heartbeats only), half while events flow.
        open_events(*clients.back(), i % 2 ? "Last-Event-ID: 10\r\n" : "");
      }
      CHECK(count_fds(workers[0]) >= before + 20);
      for (std::size_t i = 0; i < clients.size(); i += 4) clients[i]->reset();  // some abortively
    }
    // A write notices the client is gone: at most two heartbeats (2 s each).
    CHECK(wait_until([&] { return count_fds(workers[0]) <= before; }, 10s));
    CHECK(server.worker_pids() == workers);
  }

  TEST_CASE("headless Chromium: the page shows each event, with its id, as it arrives") {
    cluster_process server(program::sse, 1);
    headless_chromium browser;
    INFO("chromium's log:\n", browser.log());
    browser.open("http://127.0.0.1:" + std::to_string(server.port()) + "/");
    CHECK(browser.evaluate(events_when_shown(last_tick), 20s) == shown("open", 1, last_tick));
  }

  TEST_CASE("headless Chromium: a page from another origin reads the stream, thanks to CORS") {
    cluster_process stream(program::sse, 1);
    cluster_process page(program::sse, 1);  // another port: another origin
    headless_chromium browser;
    INFO("chromium's log:\n", browser.log());
    browser.open("http://127.0.0.1:" + std::to_string(page.port()) + "/?stream=http://127.0.0.1:" +
                 std::to_string(stream.port()) + "/events");
    CHECK(browser.evaluate(events_when_shown(last_tick), 20s) == shown("open", 1, last_tick));
  }

  TEST_CASE("headless Chromium: when its worker is killed, the page reconnects and resumes after the last id") {
    cluster_process server(program::sse, 1);
    std::vector<pid_t> workers;
    REQUIRE(wait_until([&] { return (workers = server.worker_pids()).size() == 1; }, 5s));
    headless_chromium browser;
    INFO("chromium's log:\n", browser.log());
    browser.open("http://127.0.0.1:" + std::to_string(server.port()) + "/");
    CHECK(browser.evaluate("(source.addEventListener('error', () => { window.errors = (window.errors || 0) + 1; }),"
                           + events_when_shown(3) + ")",
                           20s)
              .starts_with(shown("open", 1, 3)));
    REQUIRE(::kill(workers[0], SIGKILL) == 0);
    std::vector<pid_t> now;
    REQUIRE(wait_until([&] { return (now = server.worker_pids()).size() == 1 && now != workers; }, 10s));
    // Every tick once, in order: the new stream began after the last id seen.
    CHECK(browser.evaluate(events_when_shown(last_tick), 20s) == shown("open", 1, last_tick));
    CHECK(browser.evaluate("Promise.resolve(String(window.errors > 0))", 5s) == "true");  // it did reconnect
  }
}
