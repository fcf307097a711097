// cluster::access_log: middleware writing one line per request (client,
// method, target, status, bytes, duration), in the common log format or
// as JSON, buffered per worker.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/control.hpp>
#include <cluster/detail/exit_flush.hpp>
#include <cluster/detail/json_text.hpp>
#include <cluster/detail/log_escape.hpp>
#include <cluster/messaging.hpp>
#include <cluster/middleware.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/route.hpp>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace cluster {

/// The line format of an access_log.
enum class log_format {
  /// The common log format with Apache's %D and the request id added:
  /// `%h %l %u %t "%r" %>s %b %D "id"`, e.g.
  /// `127.0.0.1 - - [25/Nov/2026:09:39:49 +0000] "GET /users/7 HTTP/1.1" 200 31 152 "-"`
  /// (bytes: of the body; "-" for a streamed response; duration in µs).
  common,
  /// One JSON object per line:
  /// `{"time":"2026-11-25T09:39:49Z","client":"127.0.0.1","port":40312,"method":"GET",
  /// "target":"/users/7","version":"1.1","status":200,"bytes":31,"duration_us":152,"id":""}`
  /// ("bytes": null for a streamed response).
  json,
};

/// How an access_log writes.
struct access_log_options {
  /// The line format.
  log_format format = log_format::common;
  /// Where lines go: empty for standard output, else a file opened for
  /// appending (created with mode 0644), opened once, in the master, by
  /// the constructor.
  std::string path = {};
  /// A worker writes its buffered lines once they reach this many bytes
  /// (PIPE_BUF by default: a write of at most that size to a pipe never
  /// interleaves with another worker's; a single longer line is written
  /// alone).
  std::size_t buffer_bytes = PIPE_BUF;
  /// ... and at most this long after a line was buffered, and when the
  /// worker stops. Lines are lost only when a worker crashes.
  std::chrono::milliseconds flush_interval{250};
};

/// Middleware logging one line per request; off unless added (`r.use(
/// cluster::access_log())`). Add it first, so that its after() runs last
/// and sees the response as sent, and the duration covers the other
/// middleware. The duration runs from its before() to its after() (for a
/// streamed response, until the head is sent). Whatever the client sent
/// is escaped: no target can break or forge a line (log_escape.hpp for the
/// common format, json_text.hpp for JSON, where a byte that is not part of
/// valid UTF-8 becomes U+FFFD).
class access_log final : public middleware {
 public:
  /// Opens the file of `opts.path` (if any); throws std::system_error
  /// naming the path when it cannot, std::invalid_argument for a zero
  /// buffer_bytes or flush_interval.
  explicit access_log(access_log_options opts = {}) : sink_(std::make_unique<sink>(std::move(opts))) {}

  std::optional<response> before(request& req) override {
    detail::route_access::state(req).started = std::chrono::steady_clock::now();
    return std::nullopt;
  }

  void after(const request& req, response& res) override { sink_->log(req, res); }

  /// Writes out the buffered lines now.
  void flush() noexcept { sink_->flush(); }

 private:
  // The buffer and its descriptor: one object at a fixed address, for the
  // exit_flush list and the flush timer.
  class sink final : private detail::exit_flush {
   public:
    explicit sink(access_log_options opts) : opts_(std::move(opts)) {
      if (opts_.buffer_bytes == 0) throw std::invalid_argument("cluster::access_log: buffer_bytes must be > 0");
      if (opts_.flush_interval.count() <= 0)
        throw std::invalid_argument("cluster::access_log: flush_interval must be > 0");
      if (!opts_.path.empty()) {
        fd_ = ::open(opts_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0)
          throw std::system_error(errno, std::generic_category(), "cluster::access_log: cannot open " + opts_.path);
        owned_ = true;
      }
      buffer_.reserve(opts_.buffer_bytes + line_reserve);
    }
    sink(const sink&) = delete;
    sink& operator=(const sink&) = delete;
    ~sink() {
      if (timer_) timer_->cancel();
      flush();
      if (owned_) ::close(fd_);
    }

    void log(const request& req, const response& res) {
      const std::size_t line_start = buffer_.size();
      if (opts_.format == log_format::json)
        json_line(req, res);
      else
        common_line(req, res);
      // Whole lines only, at most buffer_bytes per write: the lines before
      // this one go first when it would not fit.
      if (buffer_.size() > opts_.buffer_bytes && line_start != 0) {
        write_out(std::string_view(buffer_).substr(0, line_start));
        buffer_.erase(0, line_start);
      }
      if (buffer_.size() >= opts_.buffer_bytes)
        flush();
      else if (line_start == 0)
        arm_timer();
    }

    void flush() noexcept override {
      if (buffer_.empty()) return;
      write_out(buffer_);
      buffer_.clear();
    }

   private:
    // Room kept for a typical line beyond buffer_bytes.
    static constexpr std::size_t line_reserve = 512;

    void write_out(std::string_view bytes) noexcept {
      while (!bytes.empty()) {
        ssize_t n = ::write(fd_, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // nowhere to log to: the request goes on
        bytes.remove_prefix(static_cast<std::size_t>(n));
      }
    }

    // In a worker, a line waits at most flush_interval. Outside one (unit
    // tests) lines go at buffer_bytes, flush() and destruction.
    void arm_timer() {
      if (detail::this_process().worker == nullptr) return;
      if (!timer_) timer_.emplace(this_worker().executor());
      timer_->expires_after(opts_.flush_interval);
      timer_->async_wait([this](const asio::error_code& ec) {
        if (!ec) flush();
      });
    }

    void common_line(const request& req, const response& res) {
      char address[endpoint::max_text];
      endpoint peer = req.peer();
      std::size_t n = peer.address(address);
      buffer_.append(n != 0 ? std::string_view(address, n) : std::string_view("-"));
      buffer_ += " - - [";
      buffer_ += clock_.common();
      buffer_ += "] \"";
      detail::escape_common(req.method(), buffer_);
      buffer_ += ' ';
      detail::escape_common(req.target(), buffer_);
      buffer_ += req.version_minor() == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ";
      number(static_cast<std::uint64_t>(res.status));
      buffer_ += ' ';
      bytes(req, res, "-");
      buffer_ += ' ';
      number(duration_us(req));
      buffer_ += " \"";
      buffer_ += req.id().empty() ? std::string_view("-") : req.id();  // checked: safe characters only
      buffer_ += "\"\n";
    }

    void json_line(const request& req, const response& res) {
      char address[endpoint::max_text];
      endpoint peer = req.peer();
      buffer_ += "{\"time\":\"";
      buffer_ += clock_.iso();
      buffer_ += "\",\"client\":\"";
      buffer_.append(address, peer.address(address));
      buffer_ += "\",\"port\":";
      number(peer.port());
      buffer_ += ",\"method\":\"";
      detail::append_json_escaped(buffer_, req.method());
      buffer_ += "\",\"target\":\"";
      detail::append_json_escaped(buffer_, req.target());
      buffer_ += req.version_minor() == 0 ? "\",\"version\":\"1.0\",\"status\":" : "\",\"version\":\"1.1\",\"status\":";
      number(static_cast<std::uint64_t>(res.status));
      buffer_ += ",\"bytes\":";
      bytes(req, res, "null");
      buffer_ += ",\"duration_us\":";
      number(duration_us(req));
      buffer_ += ",\"id\":\"";
      detail::append_json_escaped(buffer_, req.id());
      buffer_ += "\"}\n";
    }

    // The body's size, or `unknown` for a streamed body (not known when
    // its head is logged).
    void bytes(const request& req, const response& res, std::string_view unknown) {
      if (detail::route_access::state(req).streamed)
        buffer_ += unknown;
      else
        number(body_bytes(req, res));
    }

    // What goes out as the body: nothing for HEAD, 1xx, 204 and 304.
    static std::uint64_t body_bytes(const request& req, const response& res) noexcept {
      if (req.method() == "HEAD" || res.status < 200 || res.status == 204 || res.status == 304) return 0;
      return res.body.size();
    }

    static std::uint64_t duration_us(const request& req) noexcept {
      auto started = detail::route_access::state(req).started;
      if (started == std::chrono::steady_clock::time_point{}) return 0;
      auto d = std::chrono::steady_clock::now() - started;
      return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
    }

    void number(std::uint64_t v) {
      char digits[24];
      auto r = std::to_chars(digits, digits + sizeof digits, v);
      buffer_.append(digits, static_cast<std::size_t>(r.ptr - digits));
    }

    // The timestamps of the current second, formatted once per second (the
    // coarse clock is read from the vDSO: no system call per line).
    class second_clock {
     public:
      std::string_view common() {
        refresh();
        return {common_, common_length};
      }
      std::string_view iso() {
        refresh();
        return {iso_, iso_length};
      }

     private:
      static constexpr std::size_t common_length = sizeof("25/Nov/2026:09:39:49 +0000") - 1;
      static constexpr std::size_t iso_length = sizeof("2026-11-25T09:39:49Z") - 1;

      void refresh() noexcept {
        timespec ts{};
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        if (ts.tv_sec == second_) return;
        static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        std::tm tm{};
        gmtime_r(&ts.tv_sec, &tm);
        std::strftime(iso_, sizeof iso_, "%Y-%m-%dT%H:%M:%SZ", &tm);
        // The month by name in English whatever the locale: not strftime's %b.
        char head[8];
        std::strftime(head, sizeof head, "%d/", &tm);
        std::string_view month = months[tm.tm_mon];
        char* p = common_;
        for (char c : std::string_view(head, 3)) *p++ = c;
        for (char c : month) *p++ = c;
        std::strftime(p, sizeof common_ - static_cast<std::size_t>(p - common_), "/%Y:%H:%M:%S +0000", &tm);
        second_ = ts.tv_sec;
      }

      std::time_t second_ = -1;
      char common_[common_length + 1] = {};
      char iso_[iso_length + 1] = {};
    };

    access_log_options opts_;
    int fd_ = STDOUT_FILENO;
    bool owned_ = false;
    std::string buffer_;
    second_clock clock_;
    std::optional<asio::steady_timer> timer_;
  };

  std::unique_ptr<sink> sink_;
};

}  // namespace cluster
