// The tests' one HTTP/1.1 response reader, llhttp in strict response mode:
// the raw-socket client (http_client.hpp) feeds it what it receives, the
// in-memory unit tests hand it a connection's whole output
// (parse_responses), and the fuzzer uses it as its oracle (whatever the
// input, the output must be well-formed HTTP/1.1). One reader, so every test
// holds the server's output to the same rules.
#pragma once

#include <llhttp.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace test_support {

/// ASCII case-insensitive equality, as field names compare (RFC 9110 §5.1).
inline bool iequals(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

/// One response as parsed from the server's output.
struct http_response {
  std::string version;  ///< "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  ///< in order, as received
  std::string body;                                          ///< de-chunked
  bool complete = false;                                     ///< its end was seen (1xx responses are complete at once)

  /// The first field named `name` (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (iequals(n, name)) return v;
    return std::nullopt;
  }
  bool has_header(std::string_view name) const { return header(name).has_value(); }
};

/// The name the in-memory tests and the fuzzer know the response by.
using wire_response = http_response;

/// Says whether the final response `index` (0-based, counted from the
/// reader's start; headers parsed) answers a HEAD request, and so has no body
/// whatever its framing fields say.
using head_predicate = std::function<bool(std::size_t index, const http_response&)>;

/// An incremental response reader: bytes go in as they arrive, responses
/// come out, and it can stop at the end of a head, of a chunk or of a message
/// so that a client can hand out a stream piece by piece.
class response_reader {
 public:
  /// Where feed() stops.
  enum class stop_at {
    message,  ///< the end of a response
    head,     ///< the end of a response's header section (or of the response)
    chunk,    ///< the end of a chunk of a chunked body (or of the response)
  };

  /// What one call of feed() did.
  struct progress {
    std::size_t used = 0;  ///< bytes parsed; the rest belongs to what follows the stop
    bool stopped = false;  ///< it stopped where asked; false: it needs more bytes
  };

  explicit response_reader(head_predicate answers_head = nullptr) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = on_message_begin;
    settings_.on_status = on_status;
    settings_.on_header_field = on_header_field;
    settings_.on_header_value = on_header_value;
    settings_.on_header_value_complete = on_header_value_complete;
    settings_.on_headers_complete = on_headers_complete;
    settings_.on_chunk_header = on_chunk_header;
    settings_.on_body = on_body;
    settings_.on_chunk_complete = on_chunk_complete;
    settings_.on_message_complete = on_message_complete;
    restart(std::move(answers_head));
  }

  // llhttp keeps a pointer to settings_ and to this reader.
  response_reader(const response_reader&) = delete;
  response_reader& operator=(const response_reader&) = delete;

  /// Starts again at a message boundary with a fresh parser, forgetting what
  /// was parsed (a client does, before reading its next response).
  void restart(head_predicate answers_head = nullptr) {
    answers_head_ = std::move(answers_head);
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
    responses_.clear();
    error_.clear();
    finals_ = 0;
    field_.clear();
    in_value_ = false;
  }

  /// Parses `bytes` until `where` or their end. A malformed response sets
  /// error() and uses nothing more.
  progress feed(std::string_view bytes, stop_at where) {
    if (!error_.empty()) return {};
    stop_ = where;
    if (llhttp_get_errno(&parser_) == HPE_PAUSED) llhttp_resume(&parser_);
    llhttp_errno_t err = llhttp_execute(&parser_, bytes.data(), bytes.size());
    if (err == HPE_OK) return {bytes.size(), false};
    if (err == HPE_PAUSED) return {static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - bytes.data()), true};
    error_ = std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&parser_);
    return {};
  }

  /// The input has ended (the server closed): a body delimited by the close
  /// ends here. False when a response was cut short instead.
  bool finish() {
    if (!error_.empty()) return false;
    if (llhttp_get_errno(&parser_) == HPE_PAUSED) llhttp_resume(&parser_);
    llhttp_errno_t err = llhttp_finish(&parser_);
    return err == HPE_OK || err == HPE_PAUSED;
  }

  /// The responses begun since the last restart(), the last maybe incomplete.
  std::vector<http_response>& responses() noexcept { return responses_; }
  /// llhttp's reason when the input is malformed; empty when it is fine.
  const std::string& error() const noexcept { return error_; }
  /// The data of the chunk feed() last stopped after.
  std::string_view last_chunk() const noexcept { return std::string_view(responses_.back().body).substr(chunk_start_); }
  /// True when the last chunk feed() stopped at was the last one (size 0).
  bool at_last_chunk() const noexcept { return last_chunk_; }

 private:
  static response_reader& self(llhttp_t* p) { return *static_cast<response_reader*>(p->data); }

  static int on_message_begin(llhttp_t* p) {
    auto& r = self(p);
    r.responses_.emplace_back();
    r.last_chunk_ = false;
    return 0;
  }
  static int on_status(llhttp_t* p, const char* at, std::size_t n) {
    self(p).responses_.back().reason.append(at, n);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    auto& r = self(p);
    if (r.in_value_) r.field_.clear(), r.in_value_ = false;
    r.field_.append(at, n);
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    auto& r = self(p);
    auto& headers = r.responses_.back().headers;
    if (!r.in_value_) headers.emplace_back(r.field_, std::string()), r.in_value_ = true;
    headers.back().second.append(at, n);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    auto& r = self(p);
    if (!r.in_value_) r.responses_.back().headers.emplace_back(r.field_, std::string());  // empty value
    r.field_.clear();
    r.in_value_ = false;
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) {
    auto& r = self(p);
    auto& res = r.responses_.back();
    res.status = p->status_code;
    res.version = "HTTP/" + std::to_string(p->http_major) + "." + std::to_string(p->http_minor);
    if (r.stop_ == stop_at::head) return HPE_PAUSED;
    if (res.status < 200) return 0;
    bool head = r.answers_head_ && r.answers_head_(r.finals_, res);
    ++r.finals_;
    return head ? 1 : 0;  // 1: this message has no body
  }
  static int on_chunk_header(llhttp_t* p) {
    auto& r = self(p);
    r.chunk_start_ = r.responses_.back().body.size();
    r.last_chunk_ = p->content_length == 0;
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, std::size_t n) {
    self(p).responses_.back().body.append(at, n);
    return 0;
  }
  static int on_chunk_complete(llhttp_t* p) {
    auto& r = self(p);
    // The last chunk's end is the message's: stop there instead.
    return r.stop_ == stop_at::chunk && !r.last_chunk_ ? HPE_PAUSED : 0;
  }
  static int on_message_complete(llhttp_t* p) {
    self(p).responses_.back().complete = true;
    return HPE_PAUSED;  // every stop includes a response's end
  }

  llhttp_settings_t settings_;
  llhttp_t parser_;
  head_predicate answers_head_;
  std::vector<http_response> responses_;
  std::string error_;
  stop_at stop_ = stop_at::message;
  std::size_t finals_ = 0;
  std::string field_;
  bool in_value_ = false;
  std::size_t chunk_start_ = 0;
  bool last_chunk_ = false;
};

/// Everything parsed from one connection's output.
struct wire_output {
  std::vector<http_response> responses;
  std::string error;       ///< llhttp's reason when the output is malformed; empty when fine
  bool truncated = false;  ///< the output ended inside a response (e.g. a stream cut short)

  /// The responses with a final status (no 1xx).
  std::vector<http_response> finals() const {
    std::vector<http_response> f;
    for (const auto& r : responses)
      if (r.status >= 200) f.push_back(r);
    return f;
  }
};

/// Parses `bytes`, the whole output of a connection that has closed.
inline wire_output parse_responses(std::string_view bytes, head_predicate answers_head = nullptr) {
  response_reader reader(std::move(answers_head));
  wire_output out;
  // Bounded: every stop but the last is at the end of a response, which
  // takes at least one byte.
  for (std::size_t turns = 0, most = bytes.size() + 1; turns < most; ++turns) {
    auto step = reader.feed(bytes, response_reader::stop_at::message);
    bytes.remove_prefix(step.used);
    if (!step.stopped) break;
  }
  out.error = reader.error();
  if (out.error.empty() && !reader.finish()) out.truncated = true;
  out.responses = std::move(reader.responses());
  return out;
}

}  // namespace test_support
