// A real browser for the browser tests: Debian's headless `chromium`, driven
// over the DevTools protocol on a socket passed as descriptors 3 and 4
// (--remote-debugging-pipe: JSON messages ended by a NUL byte), which needs
// no port and no WebSocket. It opens one page, evaluates scripts in it, and
// keeps what the page reported as a problem (console errors, uncaught
// exceptions, the browser's own error entries such as a Content-Security-
// Policy violation) for the test to check. Without chromium it throws,
// saying how to install it.
#pragma once

#include "process.hpp"
#include "temp_dir.hpp"

#include <cluster/detail/json_text.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace test_support {

/// `chromium` from PATH, or an exception that says how to install it.
inline std::string chromium_path() {
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

/// `text` as a JSON string literal (the library's one escaper).
inline std::string json_quote(std::string_view text) { return "\"" + cluster::detail::json_escaped(text) + "\""; }

/// The JSON string that follows `key` ("\"value\":") in `message`, unescaped
/// (non-ASCII \u escapes become '?'); nothing if `key` is absent.
inline std::optional<std::string> json_string_after(std::string_view message, std::string_view key) {
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
  /// Problems kept (the first ones), and bytes kept of each.
  static constexpr std::size_t max_problems = 50;
  static constexpr std::size_t max_problem_bytes = 600;

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
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--disable-default-apps", "--disable-client-side-phishing-detection",
        "--disable-domain-reliability", "--no-pings", "--disable-features=Translate,OptimizationHints,MediaRouter",
        "about:blank"};
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

  /// Opens `url` in a new tab and attaches to it, listening to its console
  /// and log from before the first byte of the page is parsed.
  void open(const std::string& url) {
    url_ = url;
    std::string created = call("Target.createTarget", "{\"url\":\"about:blank\"}", call_timeout);
    auto target = json_string_after(created, "\"targetId\":");
    if (!target) throw std::runtime_error("Target.createTarget: " + created);
    std::string attached =
        call("Target.attachToTarget", "{\"targetId\":" + json_quote(*target) + ",\"flatten\":true}", call_timeout);
    auto session = json_string_after(attached, "\"sessionId\":");
    if (!session) throw std::runtime_error("Target.attachToTarget: " + attached);
    session_ = *session;
    call("Runtime.enable", "{}", call_timeout, session_);
    call("Log.enable", "{}", call_timeout, session_);
    std::string navigated = call("Page.navigate", "{\"url\":" + json_quote(url) + "}", call_timeout, session_);
    if (navigated.find("\"errorText\"") != std::string::npos) throw std::runtime_error("Page.navigate: " + navigated);
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

  /// What the page reported as a problem since open(), as the DevTools
  /// events that said so: console.error() and console.assert() calls,
  /// uncaught exceptions, and the browser's error entries (a refused
  /// resource, a Content-Security-Policy violation). Only events read so far
  /// count: call it after an evaluate() that waited for what the test needs.
  const std::vector<std::string>& problems() const noexcept { return problems_; }

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
  // Keeps an event that reports a problem with the page.
  void note_event(const std::string& event) {
    const bool problem = (event.find("\"method\":\"Runtime.consoleAPICalled\"") != std::string::npos &&
                          (event.find("\"type\":\"error\"") != std::string::npos ||
                           event.find("\"type\":\"assert\"") != std::string::npos)) ||
                         event.find("\"method\":\"Runtime.exceptionThrown\"") != std::string::npos ||
                         (event.find("\"method\":\"Log.entryAdded\"") != std::string::npos &&
                          event.find("\"level\":\"error\"") != std::string::npos);
    if (problem && problems_.size() < max_problems) problems_.push_back(event.substr(0, max_problem_bytes));
  }

  // Sends one DevTools command and returns its reply (a JSON object), noting
  // the events that come in between.
  std::string call(std::string_view method, std::string_view params, std::chrono::milliseconds timeout,
                   std::string_view session = {}) {
    const auto deadline = test_clock::now() + timeout;
    const int id = ++last_id_;
    std::string message =
        "{\"id\":" + std::to_string(id) + ",\"method\":" + json_quote(method) + ",\"params\":" + std::string(params);
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
        note_event(reply);
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
  std::vector<std::string> problems_;
  int last_id_ = 0;
};

}  // namespace test_support
