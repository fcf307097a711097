// One request message as llhttp delivers it: the llhttp callbacks, the
// per-message state they fill (one value, reset by assignment between
// messages), the field spans and body storage they fill it into, and the
// request built from them. The limits and conformance rules are applied as
// the pieces arrive; request_parser drives llhttp over the input buffer.
#pragma once

#include <cluster/detail/input_buffer.hpp>
#include <cluster/detail/request_checks.hpp>
#include <cluster/options.hpp>
#include <cluster/request.hpp>

#include <llhttp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cluster::detail {

/// How far the message in progress has got.
enum class message_stage : std::uint8_t {
  request_line,   ///< before the HTTP version of the request line
  header_fields,  ///< the header section is arriving
  body,           ///< the header section is complete; the body (or trailer) is arriving
  complete,       ///< parsed whole; waiting for the next message
  failed,         ///< refused: final, nothing more is parsed on this connection
};

/// Why llhttp stopped (HPE_PAUSED) last: streaming reports a message's head
/// and its body pieces one by one.
enum class pause_reason : std::uint8_t { none, head, body };

/// Which part of a field line llhttp is delivering: a name or a value may
/// come in several pieces (split across reads; a value also after an
/// obs-fold gap), so the next piece either continues the part or starts one.
enum class field_part : std::uint8_t {
  none,   ///< between field lines
  name,   ///< the field name has begun
  value,  ///< the value has begun (the name is complete)
};

/// Everything that describes the message in progress but its storage (which
/// keeps its capacity from one message to the next).
struct message_state {
  message_stage stage = message_stage::request_line;
  field_part part = field_part::none;  ///< of the field line being parsed
  expectation expect = expectation::none;
  transfer_codings codings;
  bool unknown_method = false;  ///< parsed as GET, answered 501 (request_parser)
  bool skip_body = false;       ///< streaming: the handler is done with the body
  bool continue_due = false;    ///< the client waits for "100 Continue"
  int host_count = 0;
  int error_status = 0;  ///< why the message is refused
  std::size_t name_len = 0;  ///< of the field line being parsed
  std::size_t target_off = 0, target_len = 0;  ///< from the message's start
  std::size_t method_off = 0, method_len = 0;  ///< an unknown method's token
  std::size_t trailer_bytes = 0, trailer_fields = 0;
  std::uint64_t body_received = 0;
};

/// Receives llhttp's callbacks for one connection (its llhttp_t's data
/// points here) and builds the request from them.
class message_builder {
 public:
  /// `http` and `input` are the parser's: read for the version, method and
  /// framing flags, and for where the message lies.
  message_builder(const options& limits, const llhttp_t& http, const input_buffer& input)
      : limits_(limits), http_(http), input_(input) {
    spans_.reserve(std::min<std::size_t>(limits_.max_headers, 16));
    fields_.reserve(spans_.capacity());
  }

  message_builder(const message_builder&) = delete;
  message_builder& operator=(const message_builder&) = delete;

  /// The callbacks, for llhttp_init. Two per field line plus one at its end
  /// (on_header_field_complete stays null: llhttp skips a null callback, and
  /// the name is judged with its value).
  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_url = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_url(at, n); };
      st.on_version_complete = [](llhttp_t* p) { return self(p).on_version_complete(); };
      st.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_field(at, n); };
      st.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_value(at, n); };
      st.on_header_value_complete = [](llhttp_t* p) { return self(p).on_value_complete(); };
      st.on_headers_complete = [](llhttp_t* p) { return self(p).on_headers_complete(); };
      st.on_body = [](llhttp_t* p, const char* at, std::size_t n) { return self(p).on_body(at, n); };
      st.on_message_complete = [](llhttp_t* p) { return self(p).on_message_complete(); };
      return st;
    }();
    return s;
  }

  /// Streaming: pause after the head and after each body piece instead of
  /// buffering the body.
  void set_streaming(bool on) noexcept { streaming_ = on; }
  bool streaming() const noexcept { return streaming_; }

  /// The message in progress.
  message_state& state() noexcept { return msg_; }
  const message_state& state() const noexcept { return msg_; }

  /// Called before llhttp_execute: where the message starts now.
  void rebase() noexcept { base_ = input_.data() + input_.message_start(); }

  /// Why llhttp paused last; clears it (and the body piece) on resume.
  pause_reason paused() const noexcept { return paused_; }
  void resume() noexcept {
    paused_ = pause_reason::none;
    piece_ = {};
  }

  /// Streaming: the body piece that made llhttp pause.
  std::string_view piece() const noexcept { return piece_; }

  /// The request (see request_parser::current()).
  request& current() noexcept { return request_; }

  /// Streaming: where the request's body comes from (the connection).
  void set_body_source(body_source* source) noexcept { request_.source_ = source; }
  /// Where every request's peer() and local() come from (the connection).
  void set_connection_ends(const connection_ends* ends) noexcept { request_.ends_ = ends; }

  /// Appends `piece` to the body storage and points the request's body() at it.
  std::string_view keep_body(std::string_view piece) {
    // Sized once from Content-Length (already checked against max_body):
    // a body held whole costs its own size, not the slack and the copies of
    // repeated doubling. (llhttp counts content_length down as the body
    // arrives.)
    if (body_.empty() && (http_.flags & F_CONTENT_LENGTH))
      body_.reserve(static_cast<std::size_t>(msg_.body_received + http_.content_length));
    body_.append(piece);
    request_.body_ = body_;
    return request_.body_;
  }

  /// Starts the next message: its state is a fresh value; the storage keeps
  /// its capacity (no allocation per request), but not a huge body's.
  void next_message() noexcept {
    msg_ = {};
    spans_.clear();
    if (body_.capacity() > kept_body_capacity) body_ = std::string();
    body_.clear();
  }

  /// End of the header block, from the message's start: everything a
  /// request's views can point at lies before it. Field lines come in
  /// order, after the request line, so the last one ends it.
  std::size_t header_end() const noexcept {
    std::size_t last = msg_.target_off + msg_.target_len;
    if (msg_.unknown_method) last = std::max(last, msg_.method_off + msg_.method_len);
    if (spans_.empty()) return last;
    const span& s = spans_.back();
    return std::max({last, s.name_off + s.name_len, s.value_off + s.value_len});
  }

  /// Points the request at the message's pieces.
  void build_request() {
    // Sized once (within the capacity kept from earlier messages), then
    // filled: no capacity check per field.
    fields_.resize(spans_.size());
    header_field* f = fields_.data();
    for (const span& s : spans_) *f++ = {{base_ + s.name_off, s.name_len}, {base_ + s.value_off, s.value_len}};
    if (msg_.unknown_method)
      request_.method_ = {base_ + msg_.method_off, msg_.method_len};
    else
      request_.method_ = llhttp_method_name(static_cast<llhttp_method_t>(http_.method));
    request_.target_ = {base_ + msg_.target_off, msg_.target_len};
    request_.headers_ = fields_;
    request_.body_ = body_;
    request_.body_store_ = &body_;
    request_.major_ = http_.http_major;
    request_.minor_ = http_.http_minor;
    // llhttp_should_keep_alive() for a request (whose length never depends
    // on the connection's end): HTTP/1.1 unless "Connection: close", HTTP/1.0
    // only with "Connection: keep-alive"; inline, as it is asked every time.
    request_.keep_alive_ = http_.http_minor >= 1 ? (http_.flags & F_CONNECTION_CLOSE) == 0
                                                 : (http_.flags & F_CONNECTION_KEEP_ALIVE) != 0;
    request_.source_ = nullptr;
    request_.body_read_ = false;
    request_.route_.reset();
  }

 private:
  // Where a field line is, from its message's start (the buffer may move the
  // message, never within it).
  struct span {
    std::size_t name_off, name_len, value_off, value_len;
  };
  enum class field_kind : std::uint8_t { other, host, transfer_encoding, expect };
  // The most body storage kept for the next request: a normal body's, not a
  // huge one's.
  static constexpr std::size_t kept_body_capacity = 64 * 1024;

  static message_builder& self(llhttp_t* p) noexcept { return *static_cast<message_builder*>(p->data); }

  std::size_t offset(const char* at) const noexcept { return static_cast<std::size_t>(at - base_); }

  int refuse(int status) noexcept {
    msg_.error_status = status;
    return -1;
  }

  bool in_trailer() const noexcept { return msg_.stage == message_stage::body; }

  int on_url(const char* at, std::size_t n) noexcept {
    if (msg_.target_len == 0) {
      msg_.target_off = offset(at);
      // RFC 9112 §3: exactly one SP between method and target. llhttp skips
      // several; a lenient split is how request smuggling starts, so refuse.
      if (msg_.target_off >= 2 && base_[msg_.target_off - 2] == ' ') return refuse(400);
    }
    msg_.target_len += n;
    return msg_.target_len > limits_.max_target ? refuse(414) : 0;
  }

  int on_version_complete() noexcept {
    // llhttp accepts HTTP/0.9 and HTTP/2.0 request lines; we speak 1.0 and
    // 1.1 only (RFC 9110 §15.6.6).
    if (http_.http_major != 1 || http_.http_minor > 1) return refuse(505);
    // RFC 9112 §3: exactly one SP between target and version; llhttp skips
    // several (the whole line is in the buffer: nothing is compacted away
    // before the header block is complete).
    if (base_[msg_.target_off + msg_.target_len + 1] != 'H') return refuse(400);
    msg_.stage = message_stage::header_fields;
    return 0;
  }

  int on_field(const char* at, std::size_t n) {
    if (msg_.part == field_part::name) {  // the rest of a name split across reads
      msg_.name_len += n;
      if (!in_trailer()) spans_.back().name_len += n;
      return in_trailer() ? on_trailer_bytes(n) : 0;
    }
    msg_.part = field_part::name;
    msg_.name_len = n;
    if (in_trailer()) return on_trailer_bytes(n);
    if (spans_.size() == limits_.max_headers) return refuse(431);
    // The line before this field (the request line or a field line) ends
    // in CRLF (RFC 9112 §2.2).
    if (!follows_crlf(base_, offset(at))) return refuse(400);
    spans_.push_back({offset(at), n, 0, 0});
    return 0;
  }

  // The first piece of a value (possibly empty) completes its name.
  int begin_value() noexcept {
    // An empty field name (": value") is no token (RFC 9110 §5.1).
    if (msg_.part != field_part::name || msg_.name_len == 0) return refuse(400);
    msg_.part = field_part::value;
    return 0;
  }

  int on_value(const char* at, std::size_t n) noexcept {
    bool first = msg_.part != field_part::value;
    if (first && begin_value() != 0) return -1;
    if (in_trailer()) return on_trailer_bytes(n);
    // An empty value (RFC 9110 §5.5 allows one) comes as an empty span that
    // points past the line's end: nothing to record or check.
    if (n == 0) return 0;
    span& s = spans_.back();
    std::size_t off = offset(at);
    // RFC 9112 §5.2 lets a server reject obs-fold (a value continued on a line
    // that starts with SP or HT), and we do. llhttp 8.1 accepts it (bare CR
    // and LF it refuses itself): the continuation comes as a further span
    // after a gap, or, when the first line is empty, as the only span, which
    // then follows a line break instead of its field's colon. The colon is
    // where the name ended (strict llhttp allows no space before it).
    if (s.value_len == 0) {
      for (std::size_t i = s.name_off + s.name_len + 1; i < off; ++i)
        if (base_[i] != ' ' && base_[i] != '\t') return refuse(400);
      s.value_off = off;
    } else if (s.value_off + s.value_len != off) {
      return refuse(400);
    }
    s.value_len += n;
    return 0;
  }

  int on_value_complete() noexcept {
    // llhttp reports even an empty value as a span; should one ever be
    // skipped, the name is still judged here.
    if (msg_.part == field_part::name && begin_value() != 0) return -1;
    msg_.part = field_part::none;
    // Trailer fields are never merged into the header section (RFC 9110 §6.5.1).
    if (in_trailer()) return ++msg_.trailer_fields > limits_.max_headers ? refuse(431) : 0;
    span& s = spans_.back();
    std::string_view v(base_ + s.value_off, s.value_len);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    s.value_len = v.size();
    if (s.value_off + s.value_len > limits_.max_header_bytes) return refuse(431);
    switch (special_field(std::string_view(base_ + s.name_off, s.name_len))) {
      case field_kind::host:
        ++msg_.host_count;
        if (!valid_host(v)) return refuse(400);
        break;
      case field_kind::transfer_encoding: msg_.codings.add(v); break;
      case field_kind::expect: msg_.expect = add_expectation(msg_.expect, v); break;
      case field_kind::other: break;
    }
    return 0;
  }

  // The fields the server itself acts on; the length decides before any
  // byte is compared, so most names cost one switch.
  static field_kind special_field(std::string_view name) noexcept {
    switch (name.size()) {
      case 4: return is_named(name, "host") ? field_kind::host : field_kind::other;
      case 6: return is_named(name, "expect") ? field_kind::expect : field_kind::other;
      case 17: return is_named(name, "transfer-encoding") ? field_kind::transfer_encoding : field_kind::other;
      default: return field_kind::other;
    }
  }

  int on_trailer_bytes(std::size_t n) noexcept {
    msg_.trailer_bytes += n;
    return msg_.trailer_bytes > limits_.max_header_bytes ? refuse(431) : 0;
  }

  int on_headers_complete() {
    // llhttp takes "GET /" without a version for HTTP/0.9; RFC 9112 §3
    // requires the version.
    bool version_seen = msg_.stage == message_stage::header_fields;
    msg_.stage = message_stage::body;
    if (!version_seen) return refuse(400);
    // The empty line that ends the header section is CRLF too (llhttp takes
    // a bare LF there): find the end of the last line before it.
    std::size_t last_line = spans_.empty() ? msg_.target_off + msg_.target_len : spans_.back().name_off;
    if (!ends_header_section(base_ + last_line, input_.data() + input_.end())) return refuse(400);
    // RFC 9112 §3.2.4: the asterisk-form is for OPTIONS only.
    if (msg_.target_len == 1 && base_[msg_.target_off] == '*' && http_.method != HTTP_OPTIONS) return refuse(400);
    if (header_end() > limits_.max_header_bytes) return refuse(431);
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    if (msg_.host_count > 1 || (http_.http_minor >= 1 && msg_.host_count == 0)) return refuse(400);
    if (int status = msg_.codings.refusal(http_.http_minor); status != 0) return refuse(status);
    if (http_.method == HTTP_CONNECT) return refuse(501);
    bool has_body = (http_.flags & F_CHUNKED) || http_.content_length > 0;
    // RFC 9110 §10.1.1: HTTP/1.0 requests' expectations are ignored.
    if (http_.http_minor >= 1 && msg_.expect != expectation::none) {
      if (msg_.expect == expectation::unsupported) return refuse(417);
      msg_.continue_due = has_body;
    }
    if ((http_.flags & F_CONTENT_LENGTH) && http_.content_length > limits_.max_body) return refuse(413);
    if (msg_.unknown_method) return 0;
    if (streaming_) {
      paused_ = pause_reason::head;
      return HPE_PAUSED;
    }
    if (http_.flags & F_CONTENT_LENGTH) body_.reserve(static_cast<std::size_t>(http_.content_length));
    return 0;
  }

  int on_body(const char* at, std::size_t n) {
    if (n == 0) return 0;
    msg_.body_received += n;
    if (msg_.body_received > limits_.max_body) return refuse(413);
    if (msg_.unknown_method || msg_.skip_body) return 0;
    if (streaming_) {
      piece_ = {at, n};
      paused_ = pause_reason::body;
      return HPE_PAUSED;
    }
    body_.append(at, n);
    return 0;
  }

  int on_message_complete() {
    if (!streaming_ || msg_.unknown_method) build_request();
    msg_.stage = message_stage::complete;
    return HPE_PAUSED;  // one request at a time; consume() resumes
  }

  const options& limits_;
  const llhttp_t& http_;
  const input_buffer& input_;
  bool streaming_ = false;
  message_state msg_;
  pause_reason paused_ = pause_reason::none;
  std::string_view piece_;
  const char* base_ = nullptr;  // start of the message in progress, during llhttp_execute
  std::vector<span> spans_;
  std::vector<header_field> fields_;
  std::string body_;
  request request_;
};

}  // namespace cluster::detail
