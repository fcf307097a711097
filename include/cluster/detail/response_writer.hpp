// The output side of a connection: the one place that decides how a response
// is framed (Content-Length, chunked or close-delimited; HEAD; Connection:
// close; HTTP/1.0 keep-alive), the one place that sends "100 Continue", the
// output buffer that batches pipelined answers, bodies gathered from their
// own storage and files sent with sendfile(2), flushing, and a streaming
// handler's response_stream.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/deadline_watchdog.hpp>
#include <cluster/detail/request_parser.hpp>
#include <cluster/detail/serialize.hpp>
#include <cluster/detail/server_state.hpp>
#include <cluster/body.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <sys/sendfile.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <memory>
#include <type_traits>
#include <utility>

namespace cluster::detail {

/// Writes a connection's responses to `Socket`, in request order.
template <class Socket, class Watchdog>
class response_writer final : public stream_sink {
 public:
  response_writer(Socket& socket, Watchdog& watchdog, server_state& state, request_parser& parser)
      : socket_(socket), watchdog_(watchdog), state_(state), parser_(parser) {}

  response_writer(const response_writer&) = delete;
  response_writer& operator=(const response_writer&) = delete;

  // --- framing: the one place it is decided --------------------------------

  /// How a response with `status` to a request (HEAD or not, HTTP/1.`minor`)
  /// is framed; `close`: the connection closes after it; `streamed`: the
  /// length is unknown (chunked for HTTP/1.1; HTTP/1.0 has no chunked coding,
  /// RFC 9112 §7, so the body runs until the connection closes).
  static framing frame(bool head, int minor, int status, bool close, bool streamed) noexcept {
    framing f;
    f.head = head;
    if (streamed && minor >= 1) {
      f.body = body_framing::chunked;
    } else if (streamed) {
      f.body = body_framing::close;
      if (status_has_body(status) && !head) close = true;
    }
    f.close = close;
    f.keep_alive_10 = !close && minor == 0;  // HTTP/1.0 keeps the connection only when told
    return f;
  }

  /// True when the connection closes after the response to `req`:
  /// `forced`, the client asked, or the server drains or is leaving.
  bool closes_after(const request& req, bool forced) const noexcept {
    return forced || !req.keep_alive() || state_.draining || state_.closing;
  }

  /// True when the connection cannot carry another request after the
  /// current response: the body was refused, or the client still waits for
  /// "100 Continue" before sending a body nobody read, so what comes next is
  /// unknowable (RFC 9110 §10.1.1).
  bool body_forces_close() const noexcept { return parser_.failed() || parser_.continue_due(); }

  // --- whole responses --------------------------------------------------------

  /// Starts the answer to a request: until a response is appended, its
  /// status (for the metrics) is 500.
  void begin_answer() noexcept { status_ = 500; }
  /// The status of the last response appended or started.
  int status() const noexcept { return status_; }

  /// Appends a complete response to `req`; true when the connection closes
  /// after it. Only the head and a small owned body are copied into the
  /// output buffer: a shared or view body, an owned one of copy_limit bytes
  /// or more moved in (`res` an rvalue), and a file are queued to leave
  /// after the head from their own storage (gathered in one write, or by
  /// sendfile). An owned body of a response passed by const reference is
  /// copied: the handler may change it before the batch is written. Call
  /// only while should_flush() is false (the connection flushes first);
  /// otherwise a body in memory is copied and a file throws
  /// std::logic_error.
  template <class Response>
  bool append(Response&& res, const request& req, bool forced_close) {
    constexpr bool movable =
        std::is_rvalue_reference_v<Response&&> && !std::is_const_v<std::remove_reference_t<Response>>;
    status_ = res.status;
    bool close = closes_after(req, forced_close) || wants_close(res);
    framing f = frame(req.method() == "HEAD", req.version_minor(), res.status, close, false);
    const cluster::body& b = res.body;
    const bool owned = b.which() == cluster::body::kind::owned;
    const bool full = queued_ == max_queued || file_queued();  // a file is sent last in its batch
    if (full && b.which() == cluster::body::kind::file && !f.head && status_has_body(res.status) && !b.empty())
      throw std::logic_error("cluster::detail::response_writer: a file appended to a batch that must be flushed");
    if (f.head || !status_has_body(res.status) || b.empty() || full ||
        (owned && (!movable || b.size() < copy_limit))) {
      serialize(out_, res, f, state_.dates.line());
      return close;
    }
    serialize_head(out_, res.status, res.headers, f, state_.dates.line(), b.size());
    if constexpr (movable)
      queue_body(std::move(res.body));
    else
      queue_body(res.body);  // shared: a reference more; view: the same bytes; file: a duplicate descriptor
    return close;
  }

  /// Appends the server's own answer with `status` to the request being
  /// parsed (refused input, or a timeout), after which the connection closes.
  void append_error(int status) {
    serialize_error(out_, status, state_.dates.line(), frame(parser_.head_request(), 1, status, true, false));
  }

  /// Appends the server's own answer with `status` to a complete `req` (an
  /// unknown method: 501); true when the connection closes after it.
  bool append_refusal(const request& req, int status) {
    bool close = closes_after(req, false);
    serialize_error(out_, status, state_.dates.line(),
                    frame(req.method() == "HEAD", req.version_minor(), status, close, false));
    return close;
  }

  /// Appends "100 Continue" when the client waits for it before sending the
  /// body (RFC 9110 §15.2.1); true when it did.
  bool continue_if_due() {
    if (!parser_.continue_due()) return false;
    out_ += continue_response;
    parser_.continue_sent();
    return true;
  }

  // --- flushing -------------------------------------------------------------

  /// True when nothing waits to be written.
  bool empty() const noexcept { return out_.empty() && queued_ == 0; }

  /// True when what is buffered should go out before the next answer is
  /// appended after it: a full batch, a full queue of gathered bodies, or a
  /// file (sent by itself, after the heads and bodies before it).
  bool should_flush() const noexcept {
    return out_.size() >= flush_threshold || queued_ == max_queued || file_queued();
  }

  /// Writes what is buffered now if the socket takes all of it (the usual
  /// case: no coroutine, no trip through the reactor), gathered bodies and
  /// a file included; false when bytes are left for flush(), which also
  /// reports an error.
  bool write_now() {
    asio::error_code ec;
    if (queued_ == 0) {
      // The usual batch: heads and small bodies, all in out_. One buffer,
      // without gathering (which costs about 150 instructions a call).
      std::size_t n = socket_.write_some(asio::buffer(out_.data() + written_, out_.size() - written_), ec);
      if (ec) return false;
      state_.count_bytes(&worker_cell::bytes_out, n);
      written_ += n;
      if (written_ < out_.size()) return false;
      reset_batch();
      return true;
    }
    if (written_ < memory_bytes()) {
      batch_buffers buffers;
      // No MSG_MORE before a file: tried, it made 1 MiB files cost more CPU
      // per request, not less, in about half the runs (nginx does not cork
      // by default either).
      std::size_t n = socket_.write_some(gather(buffers), ec);
      if (ec) return false;
      state_.count_bytes(&worker_cell::bytes_out, n);
      written_ += n;
      if (written_ < memory_bytes()) return false;
    }
    if (file_queued()) {
      if constexpr (has_descriptor) {
        if (send_file_some(ec) != file_progress::done) return false;
      } else {
        return false;  // no descriptor: pread and write, in flush()
      }
    }
    if (written_ < file_end() + tail_bytes()) {
      std::size_t n = socket_.write_some(asio::buffer(tail()), ec);
      if (ec) return false;
      state_.count_bytes(&worker_cell::bytes_out, n);
      written_ += n;
      if (written_ < file_end() + tail_bytes()) return false;
    }
    reset_batch();
    return true;
  }

  /// Writes everything buffered; false when the connection is lost (a
  /// failed write, a stall longer than write_timeout, or a file that shrank
  /// below the length its head announced).
  asio::awaitable<bool> flush() {
    asio::error_code ec;
    if (written_ < memory_bytes()) {
      batch_buffers buffers;
      ec = co_await write_all(gather(buffers));
      written_ = memory_bytes();
    }
    if (!ec && file_queued()) ec = co_await send_file();
    if (!ec && written_ < file_end() + tail_bytes()) ec = co_await write_all(asio::buffer(tail()));
    reset_batch();
    co_return !ec;
  }

  // --- a streaming handler's response -----------------------------------------

  /// Starts the response of a streaming handler's request.
  void begin_stream() noexcept { stream_ = stream_state{}; }

  /// The client is gone (a write or a read failed): nothing more is written.
  void client_gone() noexcept { lost_ = true; }
  /// True once the client is gone.
  bool lost() const noexcept { return lost_; }

  /// After a streaming handler returned normally: ends a started body (the
  /// last chunk goes with the next batch); true when the connection closes.
  bool end_stream() {
    if (stream_.progress != stream_progress::finished) {
      stream_.progress = stream_progress::finished;
      if (stream_.chunked) out_ += last_chunk;
    }
    return stream_.close || parser_.failed();
  }

  /// A streaming handler refused its request with `status` before its
  /// response started: the server's answer, then close.
  void refuse_stream(const request& req, int status) {
    status_ = status;
    serialize_error(out_, status, state_.dates.line(), frame(req.method() == "HEAD", 1, status, true, false));
  }

  bool stream_started() const noexcept override { return stream_.progress != stream_progress::not_started; }

  asio::awaitable<void> stream_start(response head) override {
    if (stream_started()) throw std::logic_error("cluster::response_stream::start: the response has already started");
    check_status(head.status, "start");
    if (head.body.which() == cluster::body::kind::file)
      throw std::invalid_argument("cluster::response_stream::start: a file body cannot begin a stream (send() it)");
    const request& req = parser_.current();
    bool close = closes_after(req, parser_.failed()) || wants_close(head);
    framing f = frame(req.method() == "HEAD", req.version_minor(), head.status, close, true);
    // A handler that starts streaming before reading the body means to read
    // it: let a client waiting for "100 Continue" send it.
    continue_if_due();
    serialize_head(out_, head.status, head.headers, f, state_.dates.line(), 0);
    status_ = head.status;
    stream_.progress = stream_progress::started;
    stream_.head = f.head;
    stream_.no_body = f.head || !status_has_body(head.status);
    stream_.chunked = f.body == body_framing::chunked && !stream_.no_body;
    stream_.close = f.close;
    // Sent at once: the client of an event stream wants to see it begin.
    co_await write_piece(head.body.bytes());
  }

  asio::awaitable<void> stream_write(std::string_view data) override {
    if (!stream_started()) {
      // A named response, not a temporary: g++ 12 mis-destroys a prvalue
      // passed by value to a coroutine inside co_await.
      response defaults;
      co_await stream_start(std::move(defaults));
    }
    if (stream_.progress == stream_progress::finished)
      throw std::logic_error("cluster::response_stream::write: the response is finished");
    if (stream_.no_body && !stream_.head && !data.empty())
      throw std::logic_error("cluster::response_stream::write: a 204 or 304 response has no body");
    co_await write_piece(data);
  }

  asio::awaitable<void> stream_finish() override {
    if (!stream_started()) {
      response empty;  // named: see stream_write()
      co_await stream_send(std::move(empty));
      co_return;
    }
    if (stream_.progress == stream_progress::finished) co_return;
    stream_.progress = stream_progress::finished;
    if (stream_.chunked) out_ += last_chunk;
    co_await write_piece({});
  }

  asio::awaitable<void> stream_send(response res) override {
    if (stream_started()) throw std::logic_error("cluster::response_stream::send: the response has already started");
    check_status(res.status, "send");
    stream_.progress = stream_progress::finished;
    stream_.close = append(std::move(res), parser_.current(), body_forces_close());
    co_await write_piece({});
  }

 private:
  enum class stream_progress : std::uint8_t { not_started, started, finished };

  // The response of a streaming handler, while it is written.
  struct stream_state {
    stream_progress progress = stream_progress::not_started;
    bool chunked = false;  // pieces are framed as chunks
    bool no_body = false;  // HEAD, 204, 304: the header section is the whole response
    bool head = false;     // a HEAD request: pieces are dropped
    bool close = false;    // the connection closes after this response
  };

  static void check_status(int status, const char* operation) {
    if (!is_final_status(status))
      throw std::invalid_argument(std::string("cluster::response_stream::") + operation + ": status " +
                                  std::to_string(status) + " is not a final status (200..999)");
  }

  // Writes what out_ holds and then `data` as the next piece of the stream's
  // body, in one gathered write; throws when the client is gone.
  asio::awaitable<void> write_piece(std::string_view data) {
    if (lost_) throw std::system_error(asio::error::broken_pipe, "cluster::response_stream: the client is gone");
    // A response sent whole (stream_send) may have queued its body.
    if (queued_ != 0 && !co_await flush()) {
      lost_ = true;
      throw std::system_error(asio::error::broken_pipe, "cluster::response_stream: the client is gone");
    }
    std::array<asio::const_buffer, 4> buffers;
    std::size_t count = 0;
    char size_line[24];
    if (!out_.empty()) buffers[count++] = asio::buffer(out_);
    if (!data.empty() && !stream_.no_body) {
      if (stream_.chunked) buffers[count++] = asio::buffer(size_line, chunk_size_line(size_line, data.size()));
      buffers[count++] = asio::buffer(data);
      if (stream_.chunked) buffers[count++] = asio::buffer("\r\n", 2);
    }
    if (count == 0) co_return;
    asio::error_code ec = co_await write_all(std::span<const asio::const_buffer>(buffers.data(), count));
    out_.clear();
    watchdog_.wait_for(waiting_for::handler);
    if (ec) {
      lost_ = true;
      throw std::system_error(ec, "cluster::response_stream: the client is gone");
    }
  }

  // Writes every byte of `buffers`. The write timeout limits a stall, not
  // the whole transfer: every completed write moves the deadline, so a slow
  // reader that keeps reading is never cut off.
  template <class Buffers>
  asio::awaitable<asio::error_code> write_all(const Buffers& buffers) {
    auto progress = [this](const asio::error_code& error, std::size_t) -> std::size_t {
      if (error) return 0;
      watchdog_.wait_for(waiting_for::write);
      return max_write;
    };
    auto [ec, n] = co_await asio::async_write(socket_, buffers, progress, use_tuple);
    state_.count_bytes(&worker_cell::bytes_out, n);
    if (ec && watchdog_.take_expired()) ec = asio::error::timed_out;
    co_return ec;
  }

  // --- bodies written from their own storage ------------------------------

  // A body that leaves after the first `out_end` bytes of out_ (the head
  // before it), from where it lives.
  struct queued_body {
    std::size_t out_end = 0;
    cluster::body body;
  };

  enum class file_progress : std::uint8_t { done, blocked, failed };

  static constexpr bool has_descriptor = requires(Socket& s) { s.native_handle(); };
  // Bodies gathered per batch: with the pieces of out_ between them, at most
  // 2 * max_queued + 1 buffers per writev (the kernel takes up to 1024).
  static constexpr std::size_t max_queued = 16;
  using batch_buffers = std::array<asio::const_buffer, 2 * max_queued + 1>;

  // An owned body shorter than this is copied into out_ after its head; a
  // longer one moved in is gathered from its own string. Measured with
  // callgrind (the server thread of one loopback connection, user-space
  // instructions per request, 1-deep / 16-deep pipelined): copied vs
  // gathered, 12 B: 5,459 vs 5,772 / 3,596 vs 3,724; 256 B: 5,694 vs 5,677 /
  // 3,786 vs 3,874; 1 KiB: 5,742 vs 5,993 / 3,989 vs 3,980; 4 KiB: 6,754 vs
  // 6,227 / 4,752 vs 4,446. The copy wins below about 1 KiB (queueing a body
  // and one more iovec cost more than a short memcpy, and the kernel's extra
  // iovec is not even counted there); above it the memcpy dominates. Shared
  // and view bodies are always gathered: that is what their owners chose
  // them for.
  static constexpr std::size_t copy_limit = 1024;

  template <class Body>
  void queue_body(Body&& b) {
    if (!queue_) queue_ = std::make_unique<std::array<queued_body, max_queued>>();  // once per connection
    queued_body& q = (*queue_)[queued_++];
    q.out_end = out_.size();
    q.body = std::forward<Body>(b);
    if (cluster::file_part* f = q.body.file()) {
      file_size_ = f->size();
      file_sent_ = 0;
    } else {
      queued_bytes_ += q.body.size();
    }
  }

  bool file_queued() const noexcept {
    return queued_ != 0 && (*queue_)[queued_ - 1].body.which() == cluster::body::kind::file;
  }
  // out_ up to here precedes the file (all of it when there is none).
  std::size_t file_at() const noexcept { return file_queued() ? (*queue_)[queued_ - 1].out_end : out_.size(); }
  // Bytes of the batch before a file: heads and bodies in memory.
  std::size_t memory_bytes() const noexcept { return file_at() + queued_bytes_; }
  // Bytes of the batch through the file.
  std::size_t file_end() const noexcept { return memory_bytes() + (file_queued() ? file_size_ : 0); }
  // What was appended to out_ after a queued file (written after it).
  std::string_view tail() const noexcept {
    std::size_t done = written_ > file_end() ? written_ - file_end() : 0;
    return std::string_view(out_).substr(file_at() + done);
  }
  std::size_t tail_bytes() const noexcept { return out_.size() - file_at(); }

  // The batch's bytes before a file, in order, past the `written_` already
  // sent: out_ pieces with the gathered bodies between them.
  std::span<const asio::const_buffer> gather(batch_buffers& buffers) const noexcept {
    std::size_t count = 0;
    std::size_t skip = written_;
    auto add = [&](std::string_view piece) {
      if (skip >= piece.size()) {
        skip -= piece.size();
        return;
      }
      buffers[count++] = asio::buffer(piece.data() + skip, piece.size() - skip);
      skip = 0;
    };
    std::size_t at = 0;
    for (std::size_t i = 0; i < queued_; ++i) {
      const queued_body& q = (*queue_)[i];
      add(std::string_view(out_).substr(at, q.out_end - at));
      at = q.out_end;
      if (q.body.which() != cluster::body::kind::file) add(q.body.bytes());
    }
    if (!file_queued()) add(std::string_view(out_).substr(at));
    return {buffers.data(), count};
  }

  // Sends the queued file's next bytes with sendfile(2) until it is all
  // sent or the socket's buffer is full (never blocking: the socket is
  // non-blocking). A file that ends before its announced size fails with
  // eof: the connection must close, the client having been promised more.
  file_progress send_file_some(asio::error_code& ec) {
    cluster::file_part& f = *(*queue_)[queued_ - 1].body.file();
    while (file_sent_ < file_size_) {
      off_t offset = static_cast<off_t>(file_sent_);
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(file_size_ - file_sent_, max_sendfile));
      ssize_t n = ::sendfile(socket_.native_handle(), f.fd(), &offset, want);
      if (n > 0) {
        file_sent_ += static_cast<std::uint64_t>(n);
        written_ += static_cast<std::size_t>(n);
        state_.count_bytes(&worker_cell::bytes_out, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) {
        ec = asio::error::eof;  // the file shrank
        return file_progress::failed;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return file_progress::blocked;
      ec = asio::error_code(errno, asio::error::get_system_category());
      return file_progress::failed;
    }
    f.close();  // sent: the descriptor goes back at once
    return file_progress::done;
  }

  // Sends the queued file: sendfile while the socket takes bytes, then a
  // wait for it to become writable, each wait a stall limited by
  // write_timeout. A socket without a descriptor (the in-memory one of the
  // unit tests and the fuzzer) gets the same bytes by pread and write.
  asio::awaitable<asio::error_code> send_file() {
    asio::error_code ec;
    if constexpr (has_descriptor) {
      while (send_file_some(ec) == file_progress::blocked) {
        watchdog_.wait_for(waiting_for::write);
        auto [wait_ec] = co_await socket_.async_wait(asio::socket_base::wait_write, use_tuple);
        if (wait_ec) co_return watchdog_.take_expired() ? asio::error::timed_out : wait_ec;
      }
      co_return ec;
    } else {
      cluster::file_part& f = *(*queue_)[queued_ - 1].body.file();
      std::string chunk(16 * 1024, '\0');
      while (file_sent_ < file_size_) {
        std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(file_size_ - file_sent_, chunk.size()));
        ssize_t n = ::pread(f.fd(), chunk.data(), want, static_cast<off_t>(file_sent_));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) co_return asio::error_code(errno, asio::error::get_system_category());
        if (n == 0) co_return asio::error::eof;  // the file shrank
        ec = co_await write_all(asio::buffer(chunk.data(), static_cast<std::size_t>(n)));
        if (ec) co_return ec;
        file_sent_ += static_cast<std::uint64_t>(n);
        written_ += static_cast<std::size_t>(n);
      }
      f.close();
      co_return ec;
    }
  }

  // Forgets a written (or failed) batch: gathered bodies are released at
  // once (references dropped, descriptors closed).
  void reset_batch() noexcept {
    for (std::size_t i = 0; i < queued_; ++i) (*queue_)[i].body = cluster::body();
    queued_ = 0;
    queued_bytes_ = 0;
    file_size_ = 0;
    file_sent_ = 0;
    written_ = 0;
    out_.clear();
  }

  static constexpr std::size_t flush_threshold = 64 * 1024;
  static constexpr std::size_t max_write = 64 * 1024;  // per write(2), as asio::transfer_all
  // Bytes per sendfile(2) call: the socket's buffer usually stops it first.
  static constexpr std::size_t max_sendfile = 1024 * 1024;

  Socket& socket_;
  Watchdog& watchdog_;
  server_state& state_;
  request_parser& parser_;
  std::string out_;
  // Bodies that follow heads in out_ on the wire, made on the first one.
  std::unique_ptr<std::array<queued_body, max_queued>> queue_;
  std::size_t queued_ = 0;        // bodies in queue_
  std::size_t queued_bytes_ = 0;  // their bytes, a file's excepted
  std::uint64_t file_size_ = 0;   // of a queued file (always the last queued body)
  std::uint64_t file_sent_ = 0;   // of it, sent
  std::size_t written_ = 0;       // bytes of the batch already written
  stream_state stream_;
  int status_ = 0;     // of the response being answered, for the metrics
  bool lost_ = false;  // the client is gone
};

}  // namespace cluster::detail
