// The input side of a connection, without sockets: a byte buffer, llhttp in
// strict mode, the limits and the framing rules llhttp leaves to us, and the
// request a handler sees. The connection reads into read_space(), commits, and
// calls next() until it needs more.
#pragma once

#include <cluster/options.hpp>
#include <cluster/request.hpp>

#include <llhttp.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cluster::detail {

/// What next() found in the buffered bytes.
enum class parse_state {
  need_more,  ///< no complete message (or, when streaming, no new piece) yet: read more
  head,       ///< streaming only: the header block is complete; current() has all but the body
  body,       ///< streaming only: body_piece() is the next piece of the body
  message,    ///< the message is complete; answer it (unless streaming), then consume()
  refused,    ///< a complete message the server answers itself with error_status()
              ///< without closing (an unknown method); consume() after answering
  error,      ///< the input is refused: answer error_status() and close
};

class request_parser {
 public:
  /// Bytes allocated for a new connection's buffer (a typical request's
  /// header block fits, as in nginx's 1k client_header_buffer_size); it grows
  /// with a larger request up to max_header_bytes plus read room, and to
  /// body_buffer() for a body, which streams through it.
  static constexpr std::size_t initial_buffer = 2048;
  /// Smallest free space offered to a read.
  static constexpr std::size_t min_read = 1024;
  /// Longest method token we wait for before answering 501.
  static constexpr std::size_t max_method = 32;

  explicit request_parser(const options& limits)
      : limits_(limits), max_buffer_(limits.max_header_bytes + 4 * min_read) {
    llhttp_init(&parser_, HTTP_REQUEST, &settings());
    parser_.data = this;
    spans_.reserve(std::min<std::size_t>(limits_.max_headers, 16));
    fields_.reserve(spans_.capacity());
  }

  request_parser(const request_parser&) = delete;
  request_parser& operator=(const request_parser&) = delete;

  /// Streaming mode (for handlers that read the body themselves): next()
  /// reports each message's head, then each piece of its body, instead of
  /// buffering the body. Set before the first byte is parsed.
  void set_streaming(bool on) noexcept { streaming_ = on; }

  /// Writable free space after the buffered bytes, at least min_read bytes
  /// unless the buffer is at its limit (then next() reports the limit error
  /// before more room is needed).
  std::span<char> read_space() {
    // After an error the buffer holds a refused message whose offsets no
    // longer describe it (llhttp stopped inside it): reading on is the
    // connection's bug, and compacting would move bytes out of bounds.
    assert(!failed_);
    if (!buffer_) {
      capacity_ = initial_buffer;
      buffer_ = std::make_unique_for_overwrite<char[]>(capacity_);
    }
    if (capacity_ - end_ < min_read) compact();
    if (capacity_ - end_ < min_read && capacity_ < max_buffer_)
      grow(std::min(capacity_ * 2, max_buffer_));
    else if (!streaming_ && headers_done_ && !complete_ && capacity_ < body_buffer())
      grow(body_buffer());  // a body: read it in larger pieces (views are built at its end)
    return {buffer_.get() + end_, capacity_ - end_};
  }

  /// Records that `n` bytes were written into read_space().
  void commit(std::size_t n) noexcept { end_ += n; }

  /// Parses the buffered bytes up to the next thing to act on.
  parse_state next() {
    if (failed_) return parse_state::error;
    if (complete_) return unknown_method_ ? parse_state::refused : parse_state::message;
    // After a pause llhttp may have work left that needs no more input (the
    // end of a message right after its headers or its last body byte).
    bool resumed = paused_ != pause::none;
    if (resumed) {
      paused_ = pause::none;
      piece_ = {};
      llhttp_resume(&parser_);
    }
    for (;;) {
      if (parsed_ == end_ && !std::exchange(resumed, false)) return parse_state::need_more;
      base_ = buffer_.get() + msg_start_;
      const char* from = buffer_.get() + parsed_;
      const char* end = buffer_.get() + end_;
      llhttp_errno_t err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
      while (err == HPE_PAUSED_UPGRADE && !complete_) {
        // An Upgrade we decline (RFC 9110 §7.8): the request is answered as an
        // ordinary one and the connection stays HTTP/1.1.
        llhttp_resume_after_upgrade(&parser_);
        from = llhttp_get_error_pos(&parser_);
        err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
      }
      if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        if (err == HPE_PAUSED_UPGRADE) llhttp_resume_after_upgrade(&parser_);
        parsed_ = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - buffer_.get());
        if (paused_ == pause::head) {
          keep_head_in_place();
          build_request();
          return parse_state::head;
        }
        if (paused_ == pause::body) return parse_state::body;
        return unknown_method_ ? parse_state::refused : parse_state::message;
      }
      if (err == HPE_INVALID_METHOD && error_status_ == 0 && !unknown_method_) {
        switch (parse_unknown_method()) {
          case method_scan::incomplete: return parse_state::need_more;
          case method_scan::invalid: return fail(400);
          case method_scan::too_long: return fail(501);
          case method_scan::resumed: continue;  // parse the rest of the message
        }
      }
      if (err != HPE_OK) return fail(error_status_ != 0 ? error_status_ : 400);
      parsed_ = end_;
      // llhttp has consumed everything: enforce the limits on what is pending.
      if (!headers_done_) {
        if (in_target_ && target_len_ > limits_.max_target) return fail(414);
        if (parsed_ - msg_start_ > limits_.max_header_bytes) return fail(431);
      }
      return parse_state::need_more;
    }
  }

  /// The request; complete after next() returned message, or (streaming) all
  /// but its body after next() returned head. Valid until consume().
  request& current() noexcept { return request_; }

  /// Streaming: the piece of body reported by the last next() == body; valid
  /// until the next call to next() or read_space().
  std::string_view body_piece() const noexcept { return piece_; }

  /// Streaming: where the request's read_some() and read_body() get the
  /// body from (the connection), for the current message.
  void set_body_source(body_source* source) noexcept { request_.source_ = source; }

  /// Where every request's peer() and local() come from (the connection).
  void set_connection_ends(const connection_ends* ends) noexcept { request_.ends_ = ends; }

  /// Streaming: stop reporting body pieces of the current message; the rest
  /// of its body is parsed (and limited) but dropped.
  void skip_body() noexcept { skip_body_ = true; }

  /// Streaming: appends `piece` to the body storage and points the request's
  /// body() at it (for a handler that asks for the whole body).
  std::string_view keep_body(std::string_view piece) {
    // Sized once from Content-Length (already checked against max_body):
    // a body held whole costs its own size, not the slack and the copies of
    // repeated doubling.
    // (llhttp counts content_length down as the body arrives.)
    if (body_.empty() && (parser_.flags & F_CONTENT_LENGTH))
      body_.reserve(static_cast<std::size_t>(body_received_ + parser_.content_length));
    body_.append(piece);
    request_.body_ = body_;
    return request_.body_;
  }

  /// Releases the answered message; parsing resumes with the bytes after it.
  void consume() noexcept {
    complete_ = false;
    headers_done_ = false;
    in_target_ = false;
    unknown_method_ = false;
    expects_continue_ = false;
    continue_sent_ = false;
    skip_body_ = false;
    te_seen_ = te_chunked_last_ = te_unknown_ = te_bad_ = false;
    expect_seen_ = expect_bad_ = version_seen_ = false;
    field_ = field_kind::other;
    target_len_ = 0;
    host_count_ = 0;
    body_received_ = 0;
    trailer_bytes_ = 0;
    trailer_fields_ = 0;
    spans_.clear();
    // Keep a normal body's capacity for the next request, not a huge one's.
    if (body_.capacity() > 64 * 1024) body_ = std::string();
    body_.clear();
    msg_start_ = parsed_;
    llhttp_resume(&parser_);
    if (msg_start_ == end_) msg_start_ = parsed_ = end_ = 0;  // nothing pending: rewind for free
  }

  /// The status to answer after next() returned error or refused.
  int error_status() const noexcept { return unknown_method_ && !failed_ ? 501 : error_status_; }

  /// True when no byte of an unanswered request is buffered: the connection
  /// is between requests.
  bool idle() const noexcept { return !complete_ && msg_start_ == end_; }

  /// True once the current request's header block is complete (the body, if
  /// any, is being received).
  bool headers_done() const noexcept { return headers_done_; }

  /// True once the input was refused (next() returns error from then on).
  bool failed() const noexcept { return failed_; }

  /// True once the current message, body included, has been parsed.
  bool message_complete() const noexcept { return complete_; }

  /// True when the client waits for "100 Continue" before sending the body
  /// of the current request (RFC 9110 §10.1.1) and it has not been sent.
  bool continue_due() const noexcept {
    return expects_continue_ && !continue_sent_ && headers_done_ && !complete_ && !failed_;
  }
  /// Records that "100 Continue" was sent (or must no longer be).
  void continue_sent() noexcept { continue_sent_ = true; }

  /// True when the message being parsed is a HEAD request, as far as its
  /// method has arrived: its error response carries no content.
  bool head_request() const noexcept {
    if (!buffer_) return false;
    std::string_view m(buffer_.get() + msg_start_, end_ - msg_start_);
    while (m.starts_with("\r\n")) m.remove_prefix(2);
    return m.starts_with("HEAD ");
  }

 private:
  struct span {
    std::size_t name_off, name_len, value_off, value_len;
  };
  enum class pause : std::uint8_t { none, head, body };
  enum class field_kind : std::uint8_t { other, host, transfer_encoding, expect };
  enum class method_scan : std::uint8_t { incomplete, invalid, too_long, resumed };

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_url = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_url(at, n); };
      st.on_url_complete = [](llhttp_t* p) { return self(p).in_target_ = false, 0; };
      st.on_version_complete = [](llhttp_t* p) { return self(p).on_version_complete(); };
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
    if (target_len_ == 0) {
      target_off_ = offset(at);
      // RFC 9112 §3: exactly one SP between method and target. llhttp skips
      // several; a lenient split is how request smuggling starts, so refuse.
      if (target_off_ >= 2 && base_[target_off_ - 2] == ' ') return refuse(400);
    }
    target_len_ += n;
    in_target_ = true;
    return target_len_ > limits_.max_target ? refuse(414) : 0;
  }

  int on_version_complete() noexcept {
    // llhttp accepts HTTP/0.9 and HTTP/2.0 request lines; we speak 1.0 and
    // 1.1 only (RFC 9110 §15.6.6).
    if (parser_.http_major != 1 || parser_.http_minor > 1) return refuse(505);
    // RFC 9112 §3: exactly one SP between target and version; llhttp skips
    // several (the whole line is in the buffer: nothing is compacted away
    // before the header block is complete).
    if (base_[target_off_ + target_len_ + 1] != 'H') return refuse(400);
    version_seen_ = true;
    return 0;
  }

  int on_field(const char* at, std::size_t n) {
    name_len_ += n;
    if (headers_done_) {  // a trailer field
      in_field_ = true;
      return on_trailer_bytes(n);
    }
    if (!in_field_) {
      if (spans_.size() == limits_.max_headers) return refuse(431);
      // The line before this field (the request line or a field line) ends
      // in CRLF (RFC 9112 §2.2): llhttp takes a bare LF after the request line.
      if (!ends_line_with_crlf(offset(at))) return refuse(400);
      spans_.push_back({offset(at), 0, 0, 0});
      in_field_ = true;
    }
    spans_.back().name_len += n;
    return 0;
  }

  int on_field_complete() noexcept {
    // An empty field name (": value") is no token (RFC 9110 §5.1).
    if (!in_field_ || name_len_ == 0) return refuse(400);
    in_field_ = false;
    name_len_ = 0;
    if (headers_done_) return ++trailer_fields_ > limits_.max_headers ? refuse(431) : 0;
    const span& s = spans_.back();
    std::string_view name(base_ + s.name_off, s.name_len);
    field_ = field_kind::other;
    if (iequals(name, "host"))
      field_ = field_kind::host, ++host_count_;
    else if (iequals(name, "transfer-encoding"))
      field_ = field_kind::transfer_encoding;
    else if (iequals(name, "expect"))
      field_ = field_kind::expect;
    return 0;
  }

  int on_value(const char* at, std::size_t n) noexcept {
    if (headers_done_) return on_trailer_bytes(n);
    // An empty value (RFC 9110 §5.5 allows one) comes as an empty span that
    // points past the line's end: nothing to record or check.
    if (n == 0) return 0;
    span& s = spans_.back();
    std::size_t off = offset(at);
    // RFC 9112 §5.2 lets a server reject obs-fold (a value continued on a line
    // that starts with SP or HT), and we do. llhttp 8.1 accepts it (bare CR
    // and LF it refuses itself): the continuation comes as a further span
    // after a gap, or, when the first line is empty, as the only span, which
    // then follows a line break instead of its field's colon.
    if (s.value_len == 0) {
      std::size_t i = off;
      while (i > 0 && (base_[i - 1] == ' ' || base_[i - 1] == '\t')) --i;
      if (i == 0 || base_[i - 1] != ':') return refuse(400);
      s.value_off = off;
    } else if (s.value_off + s.value_len != off) {
      return refuse(400);
    }
    s.value_len += n;
    return 0;
  }

  int on_value_complete() noexcept {
    if (headers_done_) return 0;  // trailer fields are never merged into the header section (RFC 9110 §6.5.1)
    span& s = spans_.back();
    std::string_view v(base_ + s.value_off, s.value_len);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    s.value_len = v.size();
    if (s.value_off + s.value_len > limits_.max_header_bytes) return refuse(431);
    if (field_ == field_kind::host && !valid_host(v)) return refuse(400);
    if (field_ == field_kind::transfer_encoding)
      read_codings(v);
    else if (field_ == field_kind::expect)
      expect_seen_ = true, expect_bad_ |= !iequals(v, "100-continue");
    return 0;
  }

  int on_trailer_bytes(std::size_t n) noexcept {
    trailer_bytes_ += n;
    return trailer_bytes_ > limits_.max_header_bytes ? refuse(431) : 0;
  }

  // True when the two bytes before `off` (the start of a field line) are CRLF.
  bool ends_line_with_crlf(std::size_t off) const noexcept {
    return off >= 2 && base_[off - 1] == '\n' && base_[off - 2] == '\r';
  }

  // Called at the end of the header section, all of which is buffered: the
  // last line (the last field line, or the request line) and the empty line
  // after it end in CRLF.
  bool header_section_ends_with_crlf() const noexcept {
    std::size_t from = spans_.empty() ? target_off_ + target_len_ : spans_.back().name_off;
    const char* start = base_ + from;
    const char* end = buffer_.get() + end_;
    const char* lf = static_cast<const char*>(std::memchr(start, '\n', static_cast<std::size_t>(end - start)));
    if (!lf || lf == start || lf[-1] != '\r') return false;
    return end - lf >= 3 && lf[1] == '\r' && lf[2] == '\n';
  }

  // RFC 9112 §3.2 / RFC 9110 §7.2: Host = uri-host [ ":" port ], one
  // authority, no userinfo, no path, no list. An empty value is allowed
  // (a target without authority).
  static bool valid_host(std::string_view v) noexcept {
    std::size_t colon = std::string_view::npos;
    if (!v.empty() && v.front() == '[') {  // IP-literal
      std::size_t close = v.find(']');
      if (close == std::string_view::npos || close < 2) return false;
      for (char c : v.substr(1, close - 1))
        if (!(is_hex(c) || c == ':' || c == '.' || c == 'v' || c == 'V')) return false;
      if (close + 1 < v.size() && v[close + 1] != ':') return false;
      colon = close + 1 < v.size() ? close + 1 : std::string_view::npos;
    } else {
      colon = v.find(':');
      std::string_view name = v.substr(0, colon);
      for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        if (c == '%') {  // pct-encoded
          if (i + 2 >= name.size() || !is_hex(name[i + 1]) || !is_hex(name[i + 2])) return false;
          i += 2;
          continue;
        }
        bool unreserved = is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        // sub-delims but ',' (a list of hosts is no host).
        bool sub_delim = c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
                         c == '+' || c == ';' || c == '=';
        if (!unreserved && !sub_delim) return false;
      }
    }
    if (colon == std::string_view::npos) return true;
    for (char c : v.substr(colon + 1))
      if (c < '0' || c > '9') return false;  // port = *DIGIT
    return true;
  }

  static bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  static bool is_alnum(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  }

  // The transfer codings of one Transfer-Encoding field line (RFC 9112 §6.1),
  // added to those of earlier lines.
  void read_codings(std::string_view list) noexcept {
    te_seen_ = true;
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string_view coding = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) coding.remove_prefix(1);
      while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.remove_suffix(1);
      if (coding.empty()) continue;  // empty list elements are allowed (RFC 9110 §5.6.1)
      // chunked must be the final coding and applied once (RFC 9112 §7).
      if (te_chunked_last_) te_bad_ = true;
      if (iequals(coding, "chunked")) {
        te_chunked_last_ = true;
      } else {
        std::string_view name = coding.substr(0, coding.find(';'));
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
        if (iequals(name, "chunked")) te_bad_ = true;  // chunked takes no parameters
        te_unknown_ = true;
        te_chunked_last_ = false;
      }
    }
  }

  int on_headers_complete() {
    headers_done_ = true;
    // llhttp takes "GET /" without a version for HTTP/0.9; RFC 9112 §3
    // requires the version.
    if (!version_seen_) return refuse(400);
    // The empty line that ends the header section is CRLF too (llhttp takes
    // a bare LF there): find the end of the last line before it.
    if (!header_section_ends_with_crlf()) return refuse(400);
    // RFC 9112 §3.2.4: the asterisk-form is for OPTIONS only.
    if (target_len_ == 1 && base_[target_off_] == '*' && parser_.method != HTTP_OPTIONS) return refuse(400);
    if (header_end() - msg_start_ > limits_.max_header_bytes) return refuse(431);
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    if (host_count_ > 1 || (parser_.http_minor >= 1 && host_count_ == 0)) return refuse(400);
    if (te_seen_) {
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing;
      // §6.3: chunked must be the final coding, or the length is unknowable.
      if (parser_.http_minor == 0 || !te_chunked_last_ || te_bad_) return refuse(400);
    }
    if (parser_.method == HTTP_CONNECT) return refuse(501);
    // A coding we cannot decode (RFC 9112 §6.1: SHOULD be 501).
    if (te_unknown_) return refuse(501);
    bool has_body = (parser_.flags & F_CHUNKED) || parser_.content_length > 0;
    // RFC 9110 §10.1.1: 100-continue is the only expectation; HTTP/1.0
    // requests' expectations are ignored.
    if (parser_.http_minor >= 1 && expect_seen_) {
      if (expect_bad_) return refuse(417);
      expects_continue_ = has_body;
    }
    if ((parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > limits_.max_body) return refuse(413);
    if (unknown_method_) return 0;
    if (streaming_) {
      paused_ = pause::head;
      return HPE_PAUSED;
    }
    if (parser_.flags & F_CONTENT_LENGTH) body_.reserve(static_cast<std::size_t>(parser_.content_length));
    return 0;
  }

  int on_body(const char* at, std::size_t n) {
    if (n == 0) return 0;
    body_received_ += n;
    if (body_received_ > limits_.max_body) return refuse(413);
    if (unknown_method_ || skip_body_) return 0;
    if (streaming_) {
      piece_ = {at, n};
      paused_ = pause::body;
      return HPE_PAUSED;
    }
    body_.append(at, n);
    return 0;
  }

  int on_message_complete() {
    if (!streaming_ || unknown_method_) build_request();
    complete_ = true;
    return HPE_PAUSED;  // one request at a time; consume() resumes
  }

  void build_request() {
    fields_.clear();
    for (const span& s : spans_)
      fields_.push_back({{base_ + s.name_off, s.name_len}, {base_ + s.value_off, s.value_len}});
    if (unknown_method_)
      request_.method_ = {base_ + method_off_, method_len_};
    else
      request_.method_ = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    request_.target_ = {base_ + target_off_, target_len_};
    request_.headers_ = fields_;
    request_.body_ = body_;
    request_.body_store_ = &body_;
    request_.major_ = parser_.http_major;
    request_.minor_ = parser_.http_minor;
    request_.keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    request_.source_ = nullptr;
    request_.body_read_ = false;
  }

  parse_state fail(int status) noexcept {
    failed_ = true;
    error_status_ = status;
    return parse_state::error;
  }

  // llhttp knows a fixed set of methods. A request with another well-formed
  // method token is still a well-framed message: parse it under a stand-in
  // method so that its body is skipped correctly, then answer 501 (RFC 9110
  // §9.1) and keep the connection for the requests behind it.
  method_scan parse_unknown_method() {
    std::string_view rest(buffer_.get() + msg_start_, end_ - msg_start_);
    std::size_t start = 0;
    while (rest.substr(start, 2) == "\r\n") start += 2;  // empty lines before a request (RFC 9112 §2.2)
    std::size_t stop = start;
    while (stop < rest.size() && is_token_char(rest[stop])) ++stop;
    if (stop - start > max_method) return method_scan::too_long;
    if (stop == rest.size()) {
      // The method is still arriving: parse it again once more bytes came.
      llhttp_reset(&parser_);
      parsed_ = msg_start_;
      return method_scan::incomplete;
    }
    if (stop == start || rest[stop] != ' ') return method_scan::invalid;
    llhttp_reset(&parser_);
    llhttp_execute(&parser_, "GET", 3);
    unknown_method_ = true;
    method_off_ = start;
    method_len_ = stop - start;
    parsed_ = msg_start_ + stop;
    return method_scan::resumed;
  }

  // Streaming: the handler holds views into the header block while the body
  // streams through the buffer behind it, so move the message to the front
  // once and make the buffer big enough that reading the body never moves or
  // reallocates it again (the header block is at most max_header_bytes).
  void keep_head_in_place() {
    if (msg_start_ != 0) {
      std::memmove(buffer_.get(), buffer_.get() + msg_start_, end_ - msg_start_);
      parsed_ -= msg_start_;
      end_ -= msg_start_;
      msg_start_ = 0;
    }
    std::size_t needed = header_end() + 2 * min_read;
    if ((parser_.flags & F_CHUNKED) || parser_.content_length > 0) needed = std::max(needed, body_buffer());
    if (capacity_ < needed) grow(std::min(std::max(needed, capacity_ * 2), max_buffer_));
    base_ = buffer_.get();
  }

  // Drops what the current message no longer needs (earlier messages, body
  // bytes already delivered) and moves the rest to the front.
  void compact() noexcept {
    std::size_t keep_end = headers_done_ && !complete_ ? header_end() : parsed_;
    // Invariants (hold whenever the input has not been refused):
    // msg_start_ <= keep_end <= parsed_ <= end_ <= capacity_.
    assert(msg_start_ <= keep_end && keep_end <= parsed_ && parsed_ <= end_ && end_ <= capacity_);
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
    if (unknown_method_) last = std::max(last, method_off_ + method_len_);
    for (const span& s : spans_) last = std::max({last, s.name_off + s.name_len, s.value_off + s.value_len});
    return msg_start_ + last;
  }

  // What a buffer grows to for a request body (nginx's client_body_buffer_size
  // is 16k on 64-bit systems).
  std::size_t body_buffer() const noexcept { return std::min<std::size_t>(max_buffer_, 16 * 1024); }

  void grow(std::size_t cap) {
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);  // no zeroing: every byte is written before it is read
    std::memcpy(bigger.get(), buffer_.get(), end_);
    buffer_ = std::move(bigger);
    capacity_ = cap;
  }

  const options& limits_;
  std::size_t max_buffer_;
  llhttp_t parser_{};
  bool streaming_ = false;

  std::unique_ptr<char[]> buffer_;
  std::size_t capacity_ = 0;
  std::size_t msg_start_ = 0;   // first byte of the message being parsed
  std::size_t parsed_ = 0;      // bytes llhttp has consumed
  std::size_t end_ = 0;         // bytes buffered
  const char* base_ = nullptr;  // buffer_ + msg_start_ during llhttp_execute

  std::vector<span> spans_;
  std::vector<header_field> fields_;
  std::string body_;
  std::string_view piece_;
  std::uint64_t body_received_ = 0;
  std::size_t target_off_ = 0;
  std::size_t target_len_ = 0;
  std::size_t method_off_ = 0;
  std::size_t method_len_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::size_t trailer_fields_ = 0;
  std::size_t name_len_ = 0;
  int host_count_ = 0;
  int error_status_ = 0;
  field_kind field_ = field_kind::other;
  pause paused_ = pause::none;
  bool in_field_ = false;
  bool in_target_ = false;
  bool headers_done_ = false;
  bool complete_ = false;
  bool failed_ = false;
  bool unknown_method_ = false;
  bool skip_body_ = false;
  bool expects_continue_ = false;
  bool continue_sent_ = false;
  bool expect_seen_ = false;
  bool version_seen_ = false;
  bool expect_bad_ = false;
  bool te_seen_ = false;
  bool te_chunked_last_ = false;
  bool te_unknown_ = false;
  bool te_bad_ = false;
  request request_;
};

}  // namespace cluster::detail
