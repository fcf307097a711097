// The response_stream a router gives a streaming route that has
// middleware: it passes everything on to the connection's stream, and runs
// the middleware's after() on the head as it goes out (start(), send(), or
// the 200 a first write() or finish() implies).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <string_view>
#include <utility>

namespace cluster::detail {

/// A stream_sink over another response_stream that edits heads on the
/// way: `on_head(response&)` runs on each head before it is sent.
template <class OnHead>
class routed_stream final : public stream_sink {
 public:
  routed_stream(response_stream& out, OnHead on_head) : out_(out), on_head_(std::move(on_head)) {}

  asio::awaitable<void> stream_start(response head) override {
    on_head_(head);
    co_await out_.start(std::move(head));
  }
  asio::awaitable<void> stream_write(std::string_view data) override {
    if (!out_.started()) co_await start_default();
    co_await out_.write(data);
  }
  asio::awaitable<void> stream_finish() override {
    if (!out_.started()) co_await start_default();
    co_await out_.finish();
  }
  asio::awaitable<void> stream_send(response res) override {
    on_head_(res);
    co_await out_.send(std::move(res));
  }
  bool stream_started() const noexcept override { return out_.started(); }

 private:
  // The 200 a write() or finish() before start() implies.
  asio::awaitable<void> start_default() {
    response head;
    on_head_(head);
    co_await out_.start(std::move(head));
  }

  response_stream& out_;
  OnHead on_head_;
};

}  // namespace cluster::detail
