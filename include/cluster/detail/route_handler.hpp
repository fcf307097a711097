// A route's handler behind one interface, whichever of the three shapes
// it has: the router keeps routes of every shape in one table and calls
// each the way its shape needs (a plain one without a coroutine frame).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/handler.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace cluster::detail {

/// How a handler answers, as the connection tells the shapes apart.
enum class answer_shape : std::uint8_t {
  at_once,    ///< sync_handler: a response, no coroutine
  whole,      ///< async_handler: a coroutine returning the response
  streaming,  ///< stream_handler: called before the body, writes a response_stream
};

/// The shape of `H`, with the connection's precedence (connection.hpp).
template <class H>
constexpr answer_shape shape_of() noexcept {
  if constexpr (sync_handler<H> && !async_handler<H> && !stream_handler<H>)
    return answer_shape::at_once;
  else if constexpr (stream_handler<H>)
    return answer_shape::streaming;
  else
    return answer_shape::whole;
}

/// A route's handler; only the call of its shape() is ever made.
class route_handler {
 public:
  virtual ~route_handler() = default;
  virtual answer_shape shape() const noexcept = 0;
  virtual response at_once(const request& req) = 0;
  virtual asio::awaitable<response> whole(request& req) = 0;
  virtual asio::awaitable<void> streaming(request& req, response_stream& out) = 0;
};

/// route_handler for a handler of type `H`, kept by value.
template <class H>
class route_handler_of final : public route_handler {
 public:
  explicit route_handler_of(H handler) : handler_(std::move(handler)) {}

  answer_shape shape() const noexcept override { return shape_of<H>(); }

  response at_once(const request& req) override {
    if constexpr (shape_of<H>() == answer_shape::at_once) return handler_(req);
    throw std::logic_error("cluster::router: route called as plain but is not");
  }

  asio::awaitable<response> whole(request& req) override {
    if constexpr (shape_of<H>() == answer_shape::whole) return handler_(req);
    throw std::logic_error("cluster::router: route called as a coroutine but is not");
  }

  asio::awaitable<void> streaming(request& req, response_stream& out) override {
    if constexpr (shape_of<H>() == answer_shape::streaming) return handler_(req, out);
    throw std::logic_error("cluster::router: route called as streaming but is not");
  }

 private:
  H handler_;
};

}  // namespace cluster::detail
