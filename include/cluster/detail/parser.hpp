// The input side of a connection, without sockets: a byte buffer, llhttp in
// strict mode, the limits, and the request a handler sees. The connection
// reads into read_space(), commits, and calls next() until it needs more.
#pragma once

#include <cluster/options.hpp>
#include <cluster/request.hpp>

#include <llhttp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace cluster::detail {

/// What next() found in the buffered bytes.
enum class parse_state {
  need_more,  ///< no complete message yet: read more
  message,    ///< request() is complete; call consume() after answering it
  error,      ///< the input is refused: answer error_status() and close
};

class request_parser {
 public:
  /// Bytes allocated for a new connection's buffer; it grows with the request
  /// up to max_header_bytes plus read room.
  static constexpr std::size_t initial_buffer = 4096;
  /// Smallest free space offered to a read.
  static constexpr std::size_t min_read = 2048;

  explicit request_parser(const options& limits)
      : limits_(limits), max_buffer_(limits.max_header_bytes + 4 * min_read) {
    llhttp_init(&parser_, HTTP_REQUEST, &settings());
    parser_.data = this;
    spans_.reserve(std::min<std::size_t>(limits_.max_headers, 32));
    fields_.reserve(spans_.capacity());
  }

  request_parser(const request_parser&) = delete;
  request_parser& operator=(const request_parser&) = delete;

  /// Writable free space after the buffered bytes, at least min_read bytes
  /// unless the buffer is at its limit (then next() reports the limit error
  /// before more room is needed).
  std::span<char> read_space() {
    if (!buffer_) {
      capacity_ = initial_buffer;
      buffer_ = std::make_unique<char[]>(capacity_);
    }
    if (capacity_ - end_ < min_read) compact();
    if (capacity_ - end_ < min_read && capacity_ < max_buffer_) grow();
    return {buffer_.get() + end_, capacity_ - end_};
  }

  /// Records that `n` bytes were written into read_space().
  void commit(std::size_t n) noexcept { end_ += n; }

  /// Parses the buffered bytes up to the end of the next complete message.
  parse_state next() {
    if (failed_) return parse_state::error;
    if (complete_) return parse_state::message;
    if (parsed_ == end_) return parse_state::need_more;
    base_ = buffer_.get() + msg_start_;
    const char* from = buffer_.get() + parsed_;
    const char* end = buffer_.get() + end_;
    llhttp_errno_t err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
    while (err == HPE_PAUSED_UPGRADE && !complete_) {
      // An Upgrade we decline (RFC 9110 §7.8): the request was answered as an
      // ordinary one and the connection stays HTTP/1.1.
      llhttp_resume_after_upgrade(&parser_);
      from = llhttp_get_error_pos(&parser_);
      err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      if (err == HPE_PAUSED_UPGRADE) llhttp_resume_after_upgrade(&parser_);
      parsed_ = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - buffer_.get());
      return parse_state::message;
    }
    if (err != HPE_OK) return fail(status_for(err));
    parsed_ = end_;
    // llhttp has consumed everything: enforce the limits on what is pending.
    if (!headers_done_) {
      if (in_target_ && target_len_ > limits_.max_target) return fail(414);
      if (parsed_ - msg_start_ > limits_.max_header_bytes) return fail(431);
    }
    return parse_state::need_more;
  }

  /// The complete request; valid after next() returned message and until
  /// consume().
  request& current() noexcept { return request_; }

  /// Releases the answered message; parsing resumes with the bytes after it.
  void consume() noexcept {
    complete_ = false;
    headers_done_ = false;
    in_target_ = false;
    target_len_ = 0;
    host_count_ = 0;
    spans_.clear();
    // Keep a normal body's capacity for the next request, not a huge one's.
    if (body_.capacity() > 64 * 1024) body_ = std::string();
    body_.clear();
    msg_start_ = parsed_;
    llhttp_resume(&parser_);
    if (msg_start_ == end_) msg_start_ = parsed_ = end_ = 0;  // nothing pending: rewind for free
  }

  /// The status to answer after next() returned error.
  int error_status() const noexcept { return error_status_; }

  /// True when no byte of an unanswered request is buffered: the connection
  /// is between requests.
  bool idle() const noexcept { return !complete_ && msg_start_ == end_; }

  /// True once the current request's header block is complete (the body, if
  /// any, is being received).
  bool headers_done() const noexcept { return headers_done_; }

 private:
  struct span {
    std::size_t name_off, name_len, value_off, value_len;
  };

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_url = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_url(at, n); };
      st.on_url_complete = [](llhttp_t* p) { return self(p).in_target_ = false, 0; };
      st.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_field(at, n); };
      st.on_header_field_complete = [](llhttp_t* p) { return self(p).on_field_complete(); };
      st.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_value(at, n); };
      st.on_header_value_complete = [](llhttp_t* p) { return self(p).on_value_complete(); };
      st.on_headers_complete = [](llhttp_t* p) { return self(p).on_headers_complete(); };
      st.on_body = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_body(at, n); };
      st.on_message_complete = [](llhttp_t* p) { return self(p).on_message_complete(); };
      return st;
    }();
    return s;
  }

  static request_parser& self(llhttp_t* p) noexcept { return *static_cast<request_parser*>(p->data); }

  std::size_t offset(const char* at) const noexcept { return static_cast<std::size_t>(at - base_); }

  int refuse(int status) noexcept {
    error_status_ = status;
    return -1;
  }

  int on_url(const char* at, std::size_t n) noexcept {
    if (target_len_ == 0) target_off_ = offset(at);
    target_len_ += n;
    in_target_ = true;
    return target_len_ > limits_.max_target ? refuse(414) : 0;
  }

  int on_field(const char* at, std::size_t n) {
    if (!in_field_) {
      if (spans_.size() == limits_.max_headers) return refuse(431);
      spans_.push_back({offset(at), 0, 0, 0});
      in_field_ = true;
    }
    spans_.back().name_len += n;
    return 0;
  }

  int on_field_complete() noexcept {
    in_field_ = false;
    span& s = spans_.back();
    if (iequals({base_ + s.name_off, s.name_len}, "host")) ++host_count_;
    return 0;
  }

  int on_value(const char* at, std::size_t n) noexcept {
    span& s = spans_.back();
    if (s.value_len == 0) s.value_off = offset(at);
    s.value_len += n;
    return 0;
  }

  int on_value_complete() noexcept {
    span& s = spans_.back();
    std::string_view v(base_ + s.value_off, s.value_len);
    // llhttp 8.1 still folds obs-fold continuation lines into the value; RFC
    // 9112 §5.2 lets a server reject them, and we do, as with any CR or LF.
    if (v.find_first_of("\r\n") != std::string_view::npos) return refuse(400);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    s.value_len = v.size();
    return 0;
  }

  int on_headers_complete() {
    headers_done_ = true;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    if (host_count_ > 1 || (parser_.http_minor >= 1 && host_count_ == 0)) return refuse(400);
    if (parser_.method == HTTP_CONNECT) return refuse(501);
    if ((parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > limits_.max_body) return refuse(413);
    if (parser_.flags & F_CONTENT_LENGTH) body_.reserve(static_cast<std::size_t>(parser_.content_length));
    return 0;
  }

  int on_body(const char* at, std::size_t n) {
    if (body_.size() + n > limits_.max_body) return refuse(413);
    body_.append(at, n);
    return 0;
  }

  int on_message_complete() {
    fields_.clear();
    for (const span& s : spans_)
      fields_.push_back({{base_ + s.name_off, s.name_len}, {base_ + s.value_off, s.value_len}});
    request_.method_ = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    request_.target_ = {base_ + target_off_, target_len_};
    request_.headers_ = fields_;
    request_.body_ = body_;
    request_.major_ = parser_.http_major;
    request_.minor_ = parser_.http_minor;
    request_.keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    complete_ = true;
    return HPE_PAUSED;  // one request at a time; consume() resumes
  }

  parse_state fail(int status) noexcept {
    failed_ = true;
    error_status_ = status;
    return parse_state::error;
  }

  int status_for(llhttp_errno_t err) const noexcept {
    if (error_status_ != 0) return error_status_;  // set by one of our callbacks
    if (err == HPE_INVALID_METHOD && method_is_token()) return 501;  // RFC 9110 §9.1
    return 400;
  }

  // True when the request starts with a syntactically valid method token that
  // llhttp does not know: an unknown method rather than garbage.
  bool method_is_token() const noexcept {
    std::string_view rest(buffer_.get() + msg_start_, end_ - msg_start_);
    auto sp = rest.find(' ');
    if (sp == 0 || sp == std::string_view::npos) return false;
    return is_valid_field_name(rest.substr(0, sp));
  }

  // Drops what the current message no longer needs (earlier messages, body
  // bytes already copied) and moves the rest to the front.
  void compact() noexcept {
    std::size_t keep_end = headers_done_ && !complete_ ? header_end() : parsed_;
    std::size_t keep = keep_end - msg_start_;
    if (msg_start_ != 0 && keep != 0) std::memmove(buffer_.get(), buffer_.get() + msg_start_, keep);
    std::size_t pending = end_ - parsed_;
    if (pending != 0 && parsed_ != keep) std::memmove(buffer_.get() + keep, buffer_.get() + parsed_, pending);
    msg_start_ = 0;
    parsed_ = keep;
    end_ = keep + pending;
  }

  // End of the header block of the current message, relative to the buffer:
  // everything a request's views can point at lies before it.
  std::size_t header_end() const noexcept {
    std::size_t last = target_off_ + target_len_;
    for (const span& s : spans_) last = std::max({last, s.name_off + s.name_len, s.value_off + s.value_len});
    return msg_start_ + last;
  }

  void grow() {
    std::size_t cap = std::min(capacity_ * 2, max_buffer_);
    auto bigger = std::make_unique<char[]>(cap);
    std::memcpy(bigger.get(), buffer_.get(), end_);
    buffer_ = std::move(bigger);
    capacity_ = cap;
  }

  const options& limits_;
  std::size_t max_buffer_;
  llhttp_t parser_{};

  std::unique_ptr<char[]> buffer_;
  std::size_t capacity_ = 0;
  std::size_t msg_start_ = 0;  // first byte of the message being parsed
  std::size_t parsed_ = 0;     // bytes llhttp has consumed
  std::size_t end_ = 0;        // bytes buffered
  const char* base_ = nullptr;  // buffer_ + msg_start_ during llhttp_execute

  std::vector<span> spans_;
  std::vector<header_field> fields_;
  std::string body_;
  std::size_t target_off_ = 0;
  std::size_t target_len_ = 0;
  int host_count_ = 0;
  int error_status_ = 0;
  bool in_field_ = false;
  bool in_target_ = false;
  bool headers_done_ = false;
  bool complete_ = false;
  bool failed_ = false;
  request request_;
};

}  // namespace cluster::detail
