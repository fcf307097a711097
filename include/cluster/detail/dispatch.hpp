// Calling the user's handler for one request, in each of its three shapes,
// and turning whatever it returns or throws into exactly one response
// through the connection's response writer: a 500 in place of an exception
// or a status that is not final, the status of an http_error that a
// streaming handler let escape before its response started.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/serialize.hpp>
#include <cluster/handler.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace cluster::detail {

/// Logs the exception being handled (call from a catch block).
inline void log_handler_exception() noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    log_line("worker", std::string("handler threw: ") + e.what() + "; answered 500");
  } catch (...) {
    log_line("worker", "handler threw a non-standard exception; answered 500");
  }
}

/// Appends the answer of a handler that failed: 500; true when the
/// connection closes after it.
template <class Writer>
bool settle_failed(Writer& writer, const request& req) {
  return writer.append(response::text("Internal Server Error\n", 500), req, false);
}

/// Appends the handler's response, or a 500 in its place when its status is
/// not a final one; true when the connection closes after it.
template <class Writer, class Response>
bool settle(Writer& writer, Response&& res, const request& req) {
  if (is_final_status(res.status)) return writer.append(std::forward<Response>(res), req, false);
  log_line("worker", "handler returned status " + std::to_string(res.status) +
                         " (a final status must be 200..999); answered 500");
  return settle_failed(writer, req);
}

/// Calls a handler that answers at once, without a coroutine frame.
template <class Handler, class Writer>
bool answer_now(Handler& handler, const request& req, Writer& writer) {
  try {
    if constexpr (std::is_same_v<std::invoke_result_t<Handler&, const request&>, response>) {
      return settle(writer, handler(req), req);  // a prvalue: its body can be moved, not copied
    } else {
      const response& res = handler(req);  // a reference, or a type convertible to response
      return settle(writer, res, req);
    }
  } catch (...) {
    log_handler_exception();
    return settle_failed(writer, req);
  }
}

/// Calls a coroutine handler that returns its response whole.
template <class Handler, class Writer>
asio::awaitable<bool> answer_whole(Handler& handler, request& req, Writer& writer) {
  response res;
  try {
    res = co_await handler(req);
  } catch (...) {
    log_handler_exception();
    co_return settle_failed(writer, req);
  }
  co_return settle(writer, std::move(res), req);
}

/// Calls a streaming handler, which writes its response through a
/// response_stream over `writer` (its request reads the body from the
/// connection); true when the connection closes after it.
template <class Handler, class Writer>
asio::awaitable<bool> answer_streaming(Handler& handler, request& req, Writer& writer) {
  writer.begin_stream();
  response_stream out(writer);
  int refused = 0;
  bool failed = false;
  try {
    co_await handler(req, out);
  } catch (const http_error& e) {
    refused = e.status();
  } catch (const std::exception& e) {
    failed = true;
    if (!writer.lost())
      log_line("worker", std::string("handler threw: ") + e.what() +
                             (writer.stream_started() ? "; response cut short" : "; answered 500"));
  } catch (...) {
    failed = true;
    log_line("worker", std::string("handler threw a non-standard exception") +
                           (writer.stream_started() ? "; response cut short" : "; answered 500"));
  }
  if (writer.lost()) co_return true;
  if (!writer.stream_started()) {
    if (refused != 0) {
      writer.refuse_stream(req, refused);
      co_return true;
    }
    if (!failed) log_line("worker", "streaming handler returned without a response; answered 500");
    co_return writer.append(response::text("Internal Server Error\n", 500), req, writer.body_forces_close());
  }
  // The status line is out: all we can do is cut the body short, which the
  // client sees as an incomplete response.
  if (refused != 0 || failed) co_return true;
  co_return writer.end_stream();
}

}  // namespace cluster::detail
