// What a request handler may be.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>

#include <concepts>
#include <type_traits>

namespace cluster {

/// A handler that answers at once: `response(const cluster::request&)`.
template <class H>
concept sync_handler = std::invocable<H&, const request&> &&
                       std::convertible_to<std::invoke_result_t<H&, const request&>, response>;

/// A handler that may suspend: `asio::awaitable<response>(cluster::request&)`.
/// The request stays valid until the awaitable completes.
template <class H>
concept async_handler = std::invocable<H&, request&> &&
                        std::same_as<std::invoke_result_t<H&, request&>, asio::awaitable<response>>;

/// A handler that does its own I/O:
/// `asio::awaitable<void>(cluster::request&, cluster::response_stream&)`.
/// It is called as soon as the header block is in, reads the body itself if
/// it wants it (request::read_some(), request::read_body()) and writes its
/// response through the stream, in pieces if it likes (Server-Sent Events,
/// large downloads, uploads processed as they arrive).
template <class H>
concept stream_handler =
    std::invocable<H&, request&, response_stream&> &&
    std::same_as<std::invoke_result_t<H&, request&, response_stream&>, asio::awaitable<void>>;

/// Any kind of handler.
template <class H>
concept handler = async_handler<H> || sync_handler<H> || stream_handler<H>;

namespace detail {

/// Fails with a readable message when `H` is not a handler.
template <class H>
constexpr void check_handler() {
  static_assert(handler<H>,
                "cluster: a handler must be callable as one of\n"
                "  cluster::response (const cluster::request&)          // answers at once\n"
                "  asio::awaitable<cluster::response> (cluster::request&)  // a coroutine\n"
                "  asio::awaitable<void> (cluster::request&, cluster::response_stream&)  // streams");
}

}  // namespace detail
}  // namespace cluster
