// Parses what a server wrote into responses with llhttp (strict, response
// mode): the in-memory unit tests read their output with it, and the fuzzer
// uses it as its oracle (whatever the input, the output must be well-formed
// HTTP/1.1).
#pragma once

#include <llhttp.h>

#include <cctype>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace test_support {

/// One response as parsed from the server's output.
struct wire_response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;       ///< de-chunked
  bool complete = false;  ///< its end was seen (1xx responses are complete at once)

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n.size() != name.size()) continue;
      bool same = true;
      for (std::size_t i = 0; i < n.size() && same; ++i)
        same = std::tolower(static_cast<unsigned char>(n[i])) == std::tolower(static_cast<unsigned char>(name[i]));
      if (same) return v;
    }
    return std::nullopt;
  }
};

/// Everything parsed from one connection's output.
struct wire_output {
  std::vector<wire_response> responses;
  std::string error;       ///< llhttp's reason when the output is malformed; empty when fine
  bool truncated = false;  ///< the output ended inside a response (e.g. a stream cut short)

  /// The responses with a final status (no 1xx).
  std::vector<wire_response> finals() const {
    std::vector<wire_response> f;
    for (const auto& r : responses)
      if (r.status >= 200) f.push_back(r);
    return f;
  }
};

/// Says whether the final response `index` (0-based, headers parsed) answers
/// a HEAD request, and so has no body whatever its framing fields say.
using head_predicate = std::function<bool(std::size_t index, const wire_response&)>;

/// Parses `bytes`, the whole output of a connection that has closed.
inline wire_output parse_responses(std::string_view bytes, head_predicate answers_head = nullptr) {
  struct context {
    wire_output out;
    head_predicate answers_head;
    std::size_t finals = 0;
    std::string field;
    bool in_value = false;
  } ctx;
  ctx.answers_head = std::move(answers_head);

  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_message_begin = [](llhttp_t* p) {
    static_cast<context*>(p->data)->out.responses.emplace_back();
    return 0;
  };
  settings.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) {
    auto& c = *static_cast<context*>(p->data);
    if (c.in_value) c.field.clear(), c.in_value = false;
    c.field.append(at, n);
    return 0;
  };
  settings.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) {
    auto& c = *static_cast<context*>(p->data);
    auto& headers = c.out.responses.back().headers;
    if (!c.in_value) headers.emplace_back(c.field, std::string()), c.in_value = true;
    headers.back().second.append(at, n);
    return 0;
  };
  settings.on_header_value_complete = [](llhttp_t* p) {
    auto& c = *static_cast<context*>(p->data);
    if (!c.in_value) c.out.responses.back().headers.emplace_back(c.field, std::string());  // empty value
    c.field.clear();
    c.in_value = false;
    return 0;
  };
  settings.on_headers_complete = [](llhttp_t* p) {
    auto& c = *static_cast<context*>(p->data);
    auto& r = c.out.responses.back();
    r.status = p->status_code;
    if (r.status < 200) return 0;
    bool head = c.answers_head && c.answers_head(c.finals, r);
    ++c.finals;
    return head ? 1 : 0;  // 1: this message has no body
  };
  settings.on_body = [](llhttp_t* p, const char* at, std::size_t n) {
    static_cast<context*>(p->data)->out.responses.back().body.append(at, n);
    return 0;
  };
  settings.on_message_complete = [](llhttp_t* p) {
    static_cast<context*>(p->data)->out.responses.back().complete = true;
    return 0;
  };

  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parser.data = &ctx;
  llhttp_errno_t err = llhttp_execute(&parser, bytes.data(), bytes.size());
  if (err != HPE_OK) {
    ctx.out.error = std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&parser);
  } else if (llhttp_finish(&parser) != HPE_OK) {  // a body delimited by the close ends here
    ctx.out.truncated = true;
  }
  return std::move(ctx.out);
}

}  // namespace test_support
