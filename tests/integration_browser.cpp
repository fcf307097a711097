// Tests of examples/sse as a browser sees it: raw loopback requests for the
// page, the event stream's fields, ids, Last-Event-ID resumption, CORS and
// errors; then a real headless Chromium (Debian's `chromium`) that opens the
// page, from the same origin and from another one, and must show the events
// in its DOM. Chromium is driven over the DevTools protocol on a socket passed
// as descriptors 3 and 4 (--remote-debugging-pipe: JSON messages ended by a
// NUL byte), which needs no port and no WebSocket. Without chromium the
// browser cases fail, saying how to install it.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

// --- Headless Chromium ---------------------------------------------------------

/// `chromium` from PATH, or an exception that says how to install it.
std::string chromium_path() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    std::string_view dir = dirs.substr(0, dirs.find(':'));
    dirs.remove_prefix(std::min(dirs.size(), dir.size() + 1));
    std::string candidate = std::string(dir.empty() ? "." : dir) + "/chromium";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(
      "chromium is not installed, and the browser tests need it: apt-get install -y chromium "
      "(.ci/run installs it)");
}

/// `text` as a JSON string literal.
std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// The JSON string that follows `key` ("\"value\":") in `message`, unescaped
/// (non-ASCII \u escapes become '?'); nothing if `key` is absent.
std::optional<std::string> json_string_after(std::string_view message, std::string_view key) {
  auto at = message.find(key);
  if (at == std::string_view::npos || at + key.size() >= message.size() || message[at + key.size()] != '"')
    return std::nullopt;
  std::string out;
  for (std::size_t i = at + key.size() + 1; i < message.size(); ++i) {
    char c = message[i];
    if (c == '"') return out;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == message.size()) break;
    switch (char e = message[i]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'u': {
        unsigned code = 0;
        if (i + 4 >= message.size() || std::sscanf(message.data() + i + 1, "%4x", &code) != 1) return std::nullopt;
        out += code < 0x80 ? static_cast<char>(code) : '?';
        i += 4;
        break;
      }
      default: out += e;  // \" \\ \/
    }
  }
  return std::nullopt;
}

/// Chromium without a screen, in a profile of its own that is removed
/// afterwards, killed (with its process group) by the destructor.
class headless_chromium {
 public:
  static constexpr auto call_timeout = 10s;

  headless_chromium() {
    const std::string chromium = chromium_path();
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) throw_errno("socketpair");
    devtools_.reset(pair[0]);
    unique_fd theirs(pair[1]);
    // Handed to the child above descriptor 9 and without close-on-exec, for
    // bash to move to 3 and 4. The test runner is single-threaded, so no
    // other child can inherit it before it is closed below.
    unique_fd inherited(::fcntl(theirs.get(), F_DUPFD, 10));
    if (!inherited) throw_errno("fcntl(F_DUPFD)");
    const std::string fd = std::to_string(inherited.get());
    std::vector<std::string> argv = {
        "/bin/bash", "-c", "exec 3<&" + fd + " 4>&" + fd + " " + fd + "<&-; exec \"$@\"", "chromium", chromium,
        "--headless=new", "--no-sandbox",  // the tests run as root
        "--disable-gpu", "--user-data-dir=" + profile_.path().string(), "--remote-debugging-pipe",
        // Nothing but the page under test: no traffic beyond 127.0.0.1.
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
        "--disable-client-side-phishing-detection", "--disable-domain-reliability", "--no-pings",
        "--disable-features=Translate,OptimizationHints,MediaRouter", "about:blank"};
    child_.emplace(argv, output::capture, output::capture);
  }

  headless_chromium(const headless_chromium&) = delete;
  headless_chromium& operator=(const headless_chromium&) = delete;

  /// Asks Chromium to close (so that it stops writing to its profile), then
  /// the child_process member kills whatever is left.
  ~headless_chromium() {
    try {
      if (child_ && devtools_) {
        call("Browser.close", "{}", 2s);
        child_->wait_exit(5s);
      }
    } catch (...) {
      // killed below in any case
    }
  }

  /// Opens `url` in a new tab and attaches to it.
  void open(const std::string& url) {
    url_ = url;
    std::string created = call("Target.createTarget", "{\"url\":" + json_quote(url) + "}", call_timeout);
    auto target = json_string_after(created, "\"targetId\":");
    if (!target) throw std::runtime_error("Target.createTarget: " + created);
    std::string attached = call("Target.attachToTarget",
                                "{\"targetId\":" + json_quote(*target) + ",\"flatten\":true}", call_timeout);
    auto session = json_string_after(attached, "\"sessionId\":");
    if (!session) throw std::runtime_error("Target.attachToTarget: " + attached);
    session_ = *session;
  }

  /// Evaluates `expression`, a promise of a string, in the open page once it
  /// shows `url` (asked again while the tab is still navigating), and returns
  /// the string. Throws when `timeout` passes first or the script fails.
  std::string evaluate(const std::string& expression, std::chrono::milliseconds timeout) {
    const auto deadline = test_clock::now() + timeout;
    // Until the page's own script has run, the tab answers "(loading)".
    const std::string guarded = "location.href !== " + json_quote(url_) +
                                " || document.readyState === 'loading' ? '(loading)' : (" + expression + ")";
    std::string last;
    for (int attempt = 0; attempt < 1000 && test_clock::now() < deadline; ++attempt) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - test_clock::now());
      last = call("Runtime.evaluate",
                  "{\"expression\":" + json_quote(guarded) + ",\"awaitPromise\":true,\"returnByValue\":true}", left,
                  session_);
      // "Execution context was destroyed": the tab navigated meanwhile.
      auto value = json_string_after(last, "\"value\":");
      if (last.find("\"exceptionDetails\"") == std::string::npos && value && *value != "(loading)") return *value;
      if (last.find("\"exceptionDetails\"") != std::string::npos)
        throw std::runtime_error("the script failed: " + last);
      std::this_thread::sleep_for(20ms);  // a tab still loading: ask again
    }
    throw std::runtime_error("the page " + url_ + " did not answer in time; last reply: " + last);
  }

  /// What Chromium logged (for failure messages), without its complaints
  /// about the missing D-Bus.
  std::string log() const {
    std::istringstream all(child_ ? child_->stderr_text() : std::string());
    std::string kept;
    for (std::string line; std::getline(all, line);)
      if (line.find("dbus") == std::string::npos) kept += line + '\n';
    return kept.size() > 4000 ? "..." + kept.substr(kept.size() - 4000) : kept;
  }

 private:
  // Sends one DevTools command and returns its reply (a JSON object), skipping
  // the events that come in between.
  std::string call(std::string_view method, std::string_view params, std::chrono::milliseconds timeout,
                   std::string_view session = {}) {
    const auto deadline = test_clock::now() + timeout;
    const int id = ++last_id_;
    std::string message = "{\"id\":" + std::to_string(id) + ",\"method\":" + json_quote(method) +
                          ",\"params\":" + std::string(params);
    if (!session.empty()) message += ",\"sessionId\":" + json_quote(session);
    message += '}';
    message += '\0';
    for (std::string_view rest = message; !rest.empty();) {
      ssize_t n = ::send(devtools_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw_errno("sending to chromium (did it exit?)");
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    const std::string reply_prefix = "{\"id\":" + std::to_string(id) + ",";
    for (int reads = 0; reads < 100000; ++reads) {
      for (auto end = in_.find('\0'); end != std::string::npos; end = in_.find('\0')) {
        std::string reply = in_.substr(0, end);
        in_.erase(0, end + 1);
        if (reply.starts_with(reply_prefix)) return reply;
      }
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - test_clock::now());
      pollfd p{devtools_.get(), POLLIN, 0};
      int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) throw std::runtime_error(std::string(method) + ": no reply from chromium in time");
      char buf[65536];
      ssize_t n = ::recv(devtools_.get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(std::string(method) + ": chromium closed its DevTools pipe");
      in_.append(buf, static_cast<std::size_t>(n));
    }
    throw std::runtime_error(std::string(method) + ": too many messages from chromium");
  }

  temp_dir profile_{"browser"};  // declared first: removed after the browser is gone
  unique_fd devtools_;
  std::optional<child_process> child_;
  std::string in_;
  std::string url_;
  std::string session_;
  int last_id_ = 0;
};

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
