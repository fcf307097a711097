// A connection's parser: drives llhttp (strict mode) over the input buffer
// one message at a time and says what it found: a message to answer, a
// streamed head or body piece, a refusal, or that it needs more bytes. The
// connection reads into read_space(), commits, and calls next() until it
// needs more. What llhttp's callbacks build is in message_builder.hpp.
#pragma once

#include <cluster/detail/input_buffer.hpp>
#include <cluster/detail/message_builder.hpp>
#include <cluster/detail/request_checks.hpp>
#include <cluster/options.hpp>
#include <cluster/request.hpp>

#include <llhttp.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>
#include <utility>

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

/// The input side of one connection, without sockets.
class request_parser {
 public:
  explicit request_parser(const options& limits)
      : limits_(limits),
        input_(limits.max_header_bytes + 4 * input_buffer::min_read),
        builder_(limits, parser_, input_) {
    llhttp_init(&parser_, HTTP_REQUEST, &message_builder::settings());
    parser_.data = &builder_;
  }

  request_parser(const request_parser&) = delete;
  request_parser& operator=(const request_parser&) = delete;

  /// Streaming mode (for handlers that read the body themselves): next()
  /// reports each message's head, then each piece of its body, instead of
  /// buffering the body. Set before the first byte is parsed.
  void set_streaming(bool on) noexcept { builder_.set_streaming(on); }

  /// Writable free space for the next read: see input_buffer::read_space().
  /// Never after an error.
  std::span<char> read_space() {
    // While a body arrives, its header block holds the request's views.
    bool in_body = msg().stage == message_stage::body;
    std::size_t keep_end = in_body ? input_.message_start() + builder_.header_end() : input_.parsed();
    return input_.read_space(keep_end, in_body && !builder_.streaming());
  }

  /// Records that `n` bytes were written into read_space().
  void commit(std::size_t n) noexcept { input_.commit(n); }

  /// Parses the buffered bytes up to the next thing to act on.
  parse_state next() {
    const message_state& m = msg();
    if (m.stage == message_stage::failed) return parse_state::error;
    if (m.stage == message_stage::complete) return m.unknown_method ? parse_state::refused : parse_state::message;
    // After a pause llhttp may have work left that needs no more input (the
    // end of a message right after its headers or its last body byte).
    bool resumed = builder_.paused() != pause_reason::none;
    if (resumed) {
      builder_.resume();
      llhttp_resume(&parser_);
    }
    for (;;) {
      if (input_.parsed() == input_.end() && !std::exchange(resumed, false)) return parse_state::need_more;
      builder_.rebase();
      const char* from = input_.data() + input_.parsed();
      const char* end = input_.data() + input_.end();
      llhttp_errno_t err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
      while (err == HPE_PAUSED_UPGRADE && m.stage != message_stage::complete) {
        // An Upgrade we decline (RFC 9110 §7.8): the request is answered as an
        // ordinary one and the connection stays HTTP/1.1.
        llhttp_resume_after_upgrade(&parser_);
        from = llhttp_get_error_pos(&parser_);
        err = llhttp_execute(&parser_, from, static_cast<std::size_t>(end - from));
      }
      if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        if (err == HPE_PAUSED_UPGRADE) llhttp_resume_after_upgrade(&parser_);
        input_.parsed_to(static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - input_.data()));
        if (builder_.paused() == pause_reason::head) {
          keep_head_in_place();
          builder_.build_request();
          return parse_state::head;
        }
        if (builder_.paused() == pause_reason::body) return parse_state::body;
        return m.unknown_method ? parse_state::refused : parse_state::message;
      }
      if (err == HPE_INVALID_METHOD && m.error_status == 0 && !m.unknown_method) {
        switch (parse_unknown_method()) {
          case method_scan::incomplete: return parse_state::need_more;
          case method_scan::invalid: return fail(400);
          case method_scan::too_long: return fail(501);
          case method_scan::complete: continue;  // parse the rest of the message
        }
      }
      if (err != HPE_OK) return fail(m.error_status != 0 ? m.error_status : 400);
      input_.parsed_to(input_.end());
      // llhttp has consumed everything: enforce the limits on what is pending.
      if (m.stage == message_stage::request_line && m.target_len > limits_.max_target) return fail(414);
      if (m.stage < message_stage::body && input_.parsed() - input_.message_start() > limits_.max_header_bytes)
        return fail(431);
      return parse_state::need_more;
    }
  }

  /// The request; complete after next() returned message, or (streaming) all
  /// but its body after next() returned head. Valid until consume().
  request& current() noexcept { return builder_.current(); }

  /// Streaming: the piece of body reported by the last next() == body; valid
  /// until the next call to next() or read_space().
  std::string_view body_piece() const noexcept { return builder_.piece(); }

  /// Streaming: where the request's read_some() and read_body() get the
  /// body from (the connection), for the current message.
  void set_body_source(body_source* source) noexcept { builder_.set_body_source(source); }

  /// Where every request's peer() and local() come from (the connection).
  void set_connection_ends(const connection_ends* ends) noexcept { builder_.set_connection_ends(ends); }

  /// Streaming: stop reporting body pieces of the current message; the rest
  /// of its body is parsed (and limited) but dropped.
  void skip_body() noexcept { builder_.state().skip_body = true; }

  /// Streaming: appends `piece` to the body storage and points the request's
  /// body() at it (for a handler that asks for the whole body).
  std::string_view keep_body(std::string_view piece) { return builder_.keep_body(piece); }

  /// Releases the answered message; parsing resumes with the bytes after it.
  void consume() noexcept {
    builder_.next_message();
    input_.next_message();
    llhttp_resume(&parser_);
  }

  /// The status to answer after next() returned error or refused.
  int error_status() const noexcept {
    return msg().unknown_method && msg().stage != message_stage::failed ? 501 : msg().error_status;
  }

  /// True when no byte of an unanswered request is buffered: the connection
  /// is between requests.
  bool idle() const noexcept { return msg().stage != message_stage::complete && input_.empty(); }

  /// True once the current request's header block is complete (the body, if
  /// any, is being received).
  bool headers_done() const noexcept {
    return msg().stage == message_stage::body || msg().stage == message_stage::complete;
  }

  /// True once the input was refused (next() returns error from then on).
  bool failed() const noexcept { return msg().stage == message_stage::failed; }

  /// True when the client waits for "100 Continue" before sending the body
  /// of the current request (RFC 9110 §10.1.1) and it has not been sent.
  bool continue_due() const noexcept { return msg().continue_due && msg().stage == message_stage::body; }
  /// Records that "100 Continue" was sent (or must no longer be).
  void continue_sent() noexcept { builder_.state().continue_due = false; }

  /// True when the message being parsed is a HEAD request, as far as its
  /// method has arrived: its error response carries no content.
  bool head_request() const noexcept {
    std::string_view m = input_.message();
    while (m.starts_with("\r\n")) m.remove_prefix(2);
    return m.starts_with("HEAD ");
  }

  /// The input bytes (for tests).
  const input_buffer& input() const noexcept { return input_; }

 private:
  parse_state fail(int status) noexcept {
    builder_.state().stage = message_stage::failed;
    builder_.state().error_status = status;
    input_.refuse();
    return parse_state::error;
  }

  // llhttp knows a fixed set of methods. A request with another well-formed
  // method token is still a well-framed message: parse it under a stand-in
  // method so that its body is skipped correctly, then answer 501 (RFC 9110
  // §9.1) and keep the connection for the requests behind it.
  method_scan parse_unknown_method() {
    std::size_t start = 0, stop = 0;
    method_scan scan = scan_method(input_.message(), start, stop);
    if (scan == method_scan::incomplete) {
      // The method is still arriving: parse it again once more bytes came.
      llhttp_reset(&parser_);
      input_.parsed_to(input_.message_start());
    } else if (scan == method_scan::complete) {
      llhttp_reset(&parser_);
      llhttp_execute(&parser_, "GET", 3);
      message_state& m = builder_.state();
      m.unknown_method = true;
      m.method_off = start;
      m.method_len = stop - start;
      input_.parsed_to(input_.message_start() + stop);
    }
    return scan;
  }

  // Streaming: the handler holds views into the header block while the body
  // streams through the buffer behind it, so move the message to the front
  // once and make the buffer big enough that reading the body never moves or
  // reallocates it again (the header block is at most max_header_bytes).
  void keep_head_in_place() {
    std::size_t wanted = builder_.header_end() + 2 * input_buffer::min_read;
    if ((parser_.flags & F_CHUNKED) || parser_.content_length > 0)
      wanted = std::max(wanted, std::min(input_.limit(), input_buffer::body_capacity));
    input_.keep_message_in_place(wanted);
    builder_.rebase();
  }

  const message_state& msg() const noexcept { return builder_.state(); }

  const options& limits_;
  llhttp_t parser_{};
  input_buffer input_;
  message_builder builder_;  // after parser_ and input_, which it reads
};

}  // namespace cluster::detail
