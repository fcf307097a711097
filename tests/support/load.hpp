// A load client for lifecycle and fleet tests: N threads, each sending GET requests (and
// POSTs, if asked: what a balancer may not retry) one at a time on a
// keep-alive connection (or on a new connection each, to reach every slot)
// for as long as the test runs, and counting what happened to every request. It classifies outcomes the way a
// careful HTTP client would (RFC 9112 §9.3.1, §9.6):
//   - ok: a complete 200 response (one with `Connection: close` too; the
//     thread then opens a new connection);
//   - reconnect, not a failure: the server closed the connection after a
//     response and before the next request was written (seen by checking the
//     connection before reusing it, or by the write itself failing);
//   - failed: a request that was written and got no complete response (end of
//     file, reset, timeout, malformed), or a status other than 200;
//   - refused: connect() failed with ECONNREFUSED (the listening sockets
//     disappeared), counted apart from other connect errors.
// Test assertions stay in the test's thread: the load threads only count.
#pragma once

#include "http_client.hpp"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace test_support {

/// How a load_client sends.
struct load_options {
  int threads = 4;                                 ///< connections in use at once, one request in flight on each
  std::string target = "/";                        ///< request-target of every request
  int post_every = 0;                              ///< every Nth request of a thread is a POST with a body (0: none)
  std::chrono::milliseconds pause{0};              ///< wait between two requests of a thread
  bool reconnect = false;  ///< a new connection for every request: spread over every slot's accept queue
  std::chrono::milliseconds read_timeout{5000};    ///< for a response, then the request failed
  std::chrono::milliseconds connect_timeout{2000}; ///< for a connection, then a connect error
  std::chrono::milliseconds max_duration{60000};   ///< safety bound if the test never calls stop()
  std::uint64_t max_requests_per_thread = 10'000'000;
};

/// What a load_client saw, once stopped.
struct load_result {
  std::uint64_t ok = 0;              ///< complete 200 responses
  std::uint64_t posts_ok = 0;        ///< of which to POSTs
  std::uint64_t failed = 0;          ///< requests written that got no complete 200 response
  std::uint64_t refused = 0;         ///< connect() refused (ECONNREFUSED)
  std::uint64_t connect_errors = 0;  ///< connect() failed or timed out otherwise
  std::uint64_t connects = 0;        ///< connections opened
  std::uint64_t reconnects = 0;      ///< connections the server closed between two requests
  std::uint64_t closes = 0;          ///< responses with `Connection: close`
  std::map<pid_t, std::uint64_t> by_pid;  ///< ok responses per answering worker ("pid <pid> ..." bodies)
  std::map<int, std::uint64_t> failed_by_status;  ///< failed requests per status (0: no complete response)
  std::vector<std::string> notes;         ///< the first failures and errors, with wall-clock times (UTC)

  /// One paragraph for a test's INFO.
  std::string summary() const {
    std::string s = "load: ok " + std::to_string(ok) + " (POST " + std::to_string(posts_ok) + "), failed " + std::to_string(failed) + ", refused " +
                    std::to_string(refused) + ", connect errors " + std::to_string(connect_errors) + ", connects " +
                    std::to_string(connects) + ", reconnects " + std::to_string(reconnects) +
                    ", Connection: close " + std::to_string(closes) + "; failed by status:";
    for (const auto& [status, n] : failed_by_status) s += " " + std::to_string(status) + "=" + std::to_string(n);
    s += "; by pid:";
    for (const auto& [pid, n] : by_pid) s += " " + std::to_string(pid) + "=" + std::to_string(n);
    for (const std::string& n : notes) s += "\n  " + n;
    return s;
  }
};

/// Runs the load from construction until stop() (or the destructor).
class load_client {
 public:
  explicit load_client(std::uint16_t port, load_options opts = {}) : port_(port), opts_(std::move(opts)) {
    started_ = std::chrono::steady_clock::now();
    per_thread_.resize(static_cast<std::size_t>(opts_.threads));
    failed_per_thread_.resize(static_cast<std::size_t>(opts_.threads));
    for (int t = 0; t < opts_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
  }

  load_client(const load_client&) = delete;
  load_client& operator=(const load_client&) = delete;
  ~load_client() { stop(); }

  /// Stops every thread (each finishes its current request, bounded by the
  /// read timeout) and returns the totals. Later calls return the same.
  const load_result& stop() {
    stop_.store(true);
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
    if (!stopped_) {
      stopped_ = true;
      result_.ok = ok_.load();
      result_.posts_ok = posts_ok_.load();
      result_.failed = failed_.load();
      result_.refused = refused_.load();
      result_.connect_errors = connect_errors_.load();
      result_.connects = connects_.load();
      result_.reconnects = reconnects_.load();
      result_.closes = closes_.load();
      for (const auto& m : per_thread_)
        for (const auto& [pid, n] : m) result_.by_pid[pid] += n;
      for (const auto& m : failed_per_thread_)
        for (const auto& [status, n] : m) result_.failed_by_status[status] += n;
      std::lock_guard lock(notes_mutex_);
      result_.notes = notes_;
    }
    return result_;
  }

  // Live counters, readable while the load runs.
  std::uint64_t ok() const { return ok_.load(); }
  std::uint64_t failed() const { return failed_.load(); }
  std::uint64_t refused() const { return refused_.load(); }

 private:
  void note(int thread, const std::string& what) {
    std::lock_guard lock(notes_mutex_);
    if (notes_.size() >= 20) return;
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%02d:%02d:%02d.%03dZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    notes_.push_back(std::string(stamp) + " thread " + std::to_string(thread) + ": " + what);
  }

  static pid_t answering_pid(std::string_view body) {
    if (!body.starts_with("pid ")) return 0;
    body.remove_prefix(4);
    pid_t pid = 0;
    std::from_chars(body.data(), body.data() + body.size(), pid);
    return pid;
  }

  void run(int thread) {
    const auto deadline = started_ + opts_.max_duration;
    const std::string get = get_request(opts_.target);
    const std::string post = post_request(opts_.target, "form=load&thread=" + std::to_string(thread));
    std::map<pid_t, std::uint64_t>& by_pid = per_thread_[static_cast<std::size_t>(thread)];
    std::map<int, std::uint64_t>& failed_by_status = failed_per_thread_[static_cast<std::size_t>(thread)];
    // A request written that got no complete 200 response (status 0: none).
    auto fail = [&](int status) {
      failed_.fetch_add(1);
      ++failed_by_status[status];
    };
    std::unique_ptr<http_client> conn;
    std::uint64_t written = 0;
    std::uint64_t on_conn = 0;  // requests answered on the current connection
    // Where a failure happened, for the notes: which connection, how used.
    auto where = [&] {
      std::string w = " (connection from port ";
      try {
        w += std::to_string(conn->local_port());
      } catch (const std::exception&) {
        w += "?";
      }
      return w + ", after " + std::to_string(on_conn) + " answers on it)";
    };
    // Every iteration either writes a request or fails to connect; both are
    // bounded (requests by max_requests_per_thread, the whole by the deadline).
    for (std::uint64_t attempt = 0; attempt < 4 * opts_.max_requests_per_thread; ++attempt) {
      if (stop_.load() || written >= opts_.max_requests_per_thread || std::chrono::steady_clock::now() >= deadline)
        break;
      if (conn && conn->server_closed_now()) {
        conn.reset();
        reconnects_.fetch_add(1);
      }
      if (!conn) {
        try {
          conn = std::make_unique<http_client>(port_, opts_.connect_timeout);
          connects_.fetch_add(1);
          on_conn = 0;
        } catch (const std::system_error& e) {
          (e.code() == std::errc::connection_refused ? refused_ : connect_errors_).fetch_add(1);
          note(thread, std::string("connect: ") + e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        } catch (const std::exception& e) {
          connect_errors_.fetch_add(1);
          note(thread, std::string("connect: ") + e.what());
          continue;
        }
      }
      const bool is_post = opts_.post_every > 0 && (written + 1) % static_cast<std::uint64_t>(opts_.post_every) == 0;
      try {
        conn->send(is_post ? post : get, opts_.read_timeout);
      } catch (const std::system_error& e) {
        if (e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset) {
          // The server had closed the connection: the request never left.
          reconnects_.fetch_add(1);
        } else {
          fail(0);
          note(thread, std::string("send: ") + e.what() + where());
        }
        conn.reset();
        continue;
      } catch (const std::exception& e) {
        fail(0);
        note(thread, std::string("send: ") + e.what() + where());
        conn.reset();
        continue;
      }
      ++written;
      http_response res;
      try {
        res = conn->read_response(opts_.read_timeout);
      } catch (const std::exception& e) {
        fail(0);
        note(thread, std::string(is_post ? "POST" : "GET") + " written, no response: " + e.what() + where());
        conn.reset();
        continue;
      }
      if (res.status == 200) {
        ok_.fetch_add(1);
        if (is_post) posts_ok_.fetch_add(1);
        ++by_pid[answering_pid(res.body)];
        ++on_conn;
      } else {
        fail(res.status);
        note(thread, std::string(is_post ? "POST" : "GET") + " status " + std::to_string(res.status) + ": " +
                         res.body.substr(0, 60) + where());
      }
      if (auto c = res.header("Connection"); c && iequals(*c, "close")) {
        conn.reset();
        closes_.fetch_add(1);
      } else if (opts_.reconnect) {
        conn.reset();
      }
      if (opts_.pause.count() > 0) std::this_thread::sleep_for(opts_.pause);
    }
  }

  std::uint16_t port_;
  load_options opts_;
  std::chrono::steady_clock::time_point started_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> ok_{0}, posts_ok_{0}, failed_{0}, refused_{0}, connect_errors_{0}, connects_{0}, reconnects_{0},
      closes_{0};
  std::mutex notes_mutex_;
  std::vector<std::string> notes_;
  std::vector<std::map<pid_t, std::uint64_t>> per_thread_;  // each written by its thread only
  std::vector<std::map<int, std::uint64_t>> failed_per_thread_;  // likewise
  std::vector<std::thread> threads_;
  bool stopped_ = false;
  load_result result_;
};

}  // namespace test_support
