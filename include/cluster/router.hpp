// cluster::router: a handler that picks a route by method and path
// pattern, sets the route's parameters on the request, runs middleware
// around it, and gives the answers HTTP expects when no route fits (404,
// 405 with Allow, OPTIONS, HEAD by GET).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/dispatch.hpp>
#include <cluster/detail/route_handler.hpp>
#include <cluster/detail/route_methods.hpp>
#include <cluster/detail/route_path.hpp>
#include <cluster/detail/route_tree.hpp>
#include <cluster/detail/routed_stream.hpp>
#include <cluster/handler.hpp>
#include <cluster/middleware.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/response_stream.hpp>
#include <cluster/route.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cluster {

/// Routes requests by method and path to handlers of any of the three
/// shapes (handler.hpp); itself a handler: `cluster::run(r, argc, argv)`.
///
/// Patterns are paths whose segments are literals ("users"), named
/// parameters (":id", matching one non-empty segment) or, last, a wildcard
/// ("*" or "*name", matching the rest of the path: one or more segments,
/// possibly empty, e.g. "/files/*" matches "/files/" and "/files/a/b" but
/// not "/files"). The path is percent-decoded once, segment by segment, before
/// matching (so "%2F" stays inside its segment, and patterns are written
/// decoded), and its dot segments are removed ("/a/../b" is "/b"; ".." never
/// climbs above "/"). A literal segment is tried before a parameter, a
/// parameter before a wildcard, and the first route in that order that
/// answers the method wins. A trailing slash is significant: "/users" and
/// "/users/" are different paths.
///
/// When no route answers: 404 if no route has the path; 405 with an Allow
/// field if routes have it for other methods; OPTIONS is answered 204 with
/// Allow (unless a route answers OPTIONS); HEAD is answered by the GET route
/// (the body is not sent); a malformed escape or an escaped NUL in the path
/// is answered 400, more than 64 segments 414.
///
/// Register every route and middleware before run(): the router is read
/// only while it serves. A router whose routes are all plain functions
/// costs what a plain handler costs (see the README's benchmark). With a
/// streaming route, the connection hands every request to the router before
/// its body is read, and the router reads the body of the others itself.
class router {
 public:
  router() = default;
  router(const router&) = delete;
  router& operator=(const router&) = delete;
  router(router&&) noexcept = default;
  router& operator=(router&&) noexcept = default;
  ~router() = default;

  /// Adds a route answering `method` ("GET", "POST", ... one of GET, HEAD,
  /// POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE; "*" for any) on
  /// `pattern` with `handler` (any handler shape). Throws
  /// std::invalid_argument for a bad pattern or method, or a route that
  /// another for the same method already covers.
  template <class Handler>
  route& add(std::string_view method, std::string_view pattern, Handler handler) {
    detail::check_handler<Handler>();
    if (method != "*" && detail::method_bit(method) == 0)
      throw std::invalid_argument("cluster::router: unknown method \"" + std::string(method) + "\" for \"" +
                                  std::string(pattern) + "\"");
    auto segments = detail::parse_pattern(pattern);
    std::vector<std::string> names;
    for (const auto& s : segments)
      if (s.type != detail::pattern_segment::kind::literal) names.push_back(s.text);
    auto handle = std::make_unique<detail::route_handler_of<Handler>>(std::move(handler));
    std::unique_ptr<route> r(new route(std::string(method), std::string(pattern), std::move(names), std::move(handle)));
    tree_.insert(*r, segments);
    if (detail::shape_of<Handler>() == detail::answer_shape::streaming) streams_ = true;
    routes_.push_back(std::move(r));
    return *routes_.back();
  }

  /// A GET route (it answers HEAD too).
  template <class Handler>
  route& get(std::string_view pattern, Handler handler) {
    return add("GET", pattern, std::move(handler));
  }
  /// A POST route.
  template <class Handler>
  route& post(std::string_view pattern, Handler handler) {
    return add("POST", pattern, std::move(handler));
  }
  /// A PUT route.
  template <class Handler>
  route& put(std::string_view pattern, Handler handler) {
    return add("PUT", pattern, std::move(handler));
  }
  /// A PATCH route.
  template <class Handler>
  route& patch(std::string_view pattern, Handler handler) {
    return add("PATCH", pattern, std::move(handler));
  }
  /// A DELETE route (`delete` is a keyword).
  template <class Handler>
  route& del(std::string_view pattern, Handler handler) {
    return add("DELETE", pattern, std::move(handler));
  }
  /// An OPTIONS route, in place of the router's own OPTIONS answer.
  template <class Handler>
  route& options(std::string_view pattern, Handler handler) {
    return add("OPTIONS", pattern, std::move(handler));
  }
  /// A route for every method; a route for the request's own method on the
  /// same pattern is preferred.
  template <class Handler>
  route& any(std::string_view pattern, Handler handler) {
    return add("*", pattern, std::move(handler));
  }

  /// Adds `m` to the middleware that runs around every request, in the
  /// order added (see cluster::middleware); chainable.
  router& use(std::shared_ptr<middleware> m) {
    if (!m) throw std::invalid_argument("cluster::router::use: null middleware");
    middleware_.push_back(std::move(m));
    return *this;
  }
  /// Adds a copy of `m`; chainable.
  template <std::derived_from<middleware> M>
  router& use(M m) {
    return use(std::make_shared<M>(std::move(m)));
  }

  /// The streaming entry: how the connection calls a router with a
  /// streaming route (before the body is read). The router is also called
  /// without a coroutine when it can be (see the class comment).
  asio::awaitable<void> operator()(request& req, response_stream& out) const {
    const detail::answer_shape shape = prepare(req);
    const route* r = state(req).route;
    // The router's own answers need no body (the connection discards it);
    // a route that is not streaming gets its body read first, as the
    // connection would have.
    if (r != nullptr && shape != detail::answer_shape::streaming) co_await req.read_body();
    switch (shape) {
      case detail::answer_shape::at_once: co_await out.send(answer_now(req)); co_return;
      case detail::answer_shape::whole: co_await out.send(co_await answer_whole(req)); co_return;
      case detail::answer_shape::streaming: co_await answer_streaming(req, out); co_return;
    }
  }

 private:
  friend struct detail::route_access;

  // The chain of middleware a request runs: the router's, then its route's.
  class chain {
   public:
    chain(const std::vector<std::shared_ptr<middleware>>& outer, const route* r) noexcept
        : outer_(outer), inner_(r ? &detail::route_access::middleware_of(*r) : nullptr) {}
    std::size_t size() const noexcept { return outer_.size() + (inner_ ? inner_->size() : 0); }
    middleware& operator[](std::size_t i) const noexcept {
      return i < outer_.size() ? *outer_[i] : *(*inner_)[i - outer_.size()];
    }
    // Runs before() from the first; returns the answer of one that gave
    // one. `ran` counts those that ran, the answering one included.
    std::optional<response> before(request& req, std::size_t& ran) const {
      std::optional<response> early;
      for (ran = 0; ran < size() && !early;) early = (*this)[ran++].before(req);
      return early;
    }
    // Runs after() of the first `ran`, last first.
    void after(const request& req, response& res, std::size_t ran) const {
      while (ran > 0) (*this)[--ran].after(req, res);
    }

   private:
    const std::vector<std::shared_ptr<middleware>>& outer_;
    const std::vector<std::shared_ptr<middleware>>* inner_;
  };

  static detail::route_state& state(const request& req) noexcept;

  // Matches `req` and records the outcome in it: the route and its
  // parameters, or the router's own answer. Returns how the answer comes.
  detail::answer_shape prepare(request& req) const;

  // The router's own answer, made from what prepare() recorded.
  static response own_answer(const request& req) {
    const detail::route_state& s = state(req);
    std::array<char, detail::max_allow_length> allow{};
    std::string_view allowed(allow.data(), detail::format_allow(s.methods, allow));
    switch (s.status) {
      case 204: return response::empty(204).set("Allow", allowed);
      case 405: return response::text("Method Not Allowed\n", 405).set("Allow", allowed);
      case 400: return response::text("Bad Request: malformed path\n", 400);
      case 414: return response::text("URI Too Long: too many path segments\n", 414);
      default: return response::text("Not Found\n", 404);
    }
  }

  static response failed() { return response::text("Internal Server Error\n", 500); }

  // A plain route, or the router's own answer: no coroutine.
  response answer_now(const request& creq) const {
    // The connection's request is never const: the const is the plain
    // handler's signature, and before() may set fields on the request.
    request& req = const_cast<request&>(creq);
    const route* r = state(req).route;
    if (middleware_.empty() && (r == nullptr || detail::route_access::middleware_of(*r).empty()))
      return r ? detail::route_access::call(*r).at_once(req) : own_answer(req);  // no middleware: what a plain handler costs
    chain c(middleware_, r);
    std::size_t ran = 0;
    std::optional<response> res;
    try {
      res = c.before(req, ran);
      if (!res) res = r ? detail::route_access::call(*r).at_once(req) : own_answer(req);
    } catch (...) {
      detail::log_handler_exception();
      res = failed();
    }
    c.after(req, *res, ran);
    return std::move(*res);
  }

  // A coroutine route.
  asio::awaitable<response> answer_whole(request& req) const {
    const route* r = state(req).route;
    chain c(middleware_, r);
    std::size_t ran = 0;
    std::optional<response> res;
    try {
      res = c.before(req, ran);
      if (!res) res = co_await detail::route_access::call(*r).whole(req);
    } catch (...) {
      detail::log_handler_exception();
      res = failed();
    }
    c.after(req, *res, ran);
    co_return std::move(*res);
  }

  // A streaming route: after() sees the head as it is sent.
  asio::awaitable<void> answer_streaming(request& req, response_stream& out) const {
    const route* r = state(req).route;
    chain c(middleware_, r);
    if (c.size() == 0) {
      co_await detail::route_access::call(*r).streaming(req, out);
      co_return;
    }
    state(req).streamed = true;
    std::size_t ran = 0;
    std::optional<response> early = c.before(req, ran);
    detail::routed_stream sink(out, [&](response& head) { c.after(req, head, ran); });
    response_stream hooked(sink);
    if (early) {
      co_await hooked.send(std::move(*early));
      co_return;
    }
    bool failed_before_start = false;
    try {
      co_await detail::route_access::call(*r).streaming(req, hooked);
    } catch (const http_error&) {
      throw;  // the connection answers it with its status, or cuts the response short
    } catch (...) {
      if (hooked.started()) throw;
      detail::log_handler_exception();
      failed_before_start = true;
    }
    if (failed_before_start) co_await hooked.send(failed());
  }

  std::vector<std::unique_ptr<route>> routes_;
  std::vector<std::shared_ptr<middleware>> middleware_;
  detail::route_tree tree_;
  bool streams_ = false;
};

namespace detail {

inline bool route_access::streams(const router& r) noexcept { return r.streams_; }
inline answer_shape route_access::prepare(const router& r, request& req) { return r.prepare(req); }

/// The router as a plain handler, for a request prepare() found plain.
struct route_access::at_once {
  const router& r;
  response operator()(const request& req) const { return r.answer_now(req); }
};
/// The router as a coroutine handler, for a request prepare() found so.
struct route_access::whole {
  const router& r;
  asio::awaitable<response> operator()(request& req) const { return r.answer_whole(req); }
};

}  // namespace detail

inline detail::route_state& router::state(const request& req) noexcept { return detail::route_access::state(req); }

inline detail::answer_shape router::prepare(request& req) const {
  detail::route_state& s = state(req);
  s.reserve_for(req.target());
  detail::path_segments path;
  switch (detail::split_path(req.target(), s.text, path)) {
    case detail::path_verdict::ok: break;
    case detail::path_verdict::asterisk:
      s.methods = static_cast<detail::method_set>(tree_.methods() | detail::method_options);
      s.status = req.method() == "OPTIONS" ? 204 : 400;
      return detail::answer_shape::at_once;
    case detail::path_verdict::bad: s.status = 400; return detail::answer_shape::at_once;
    case detail::path_verdict::too_long: s.status = 414; return detail::answer_shape::at_once;
  }
  const detail::method_set method = detail::method_bit(req.method());
  detail::route_tree::match m = tree_.find(path, method);
  if (m.found == nullptr) {
    s.methods = tree_.allowed(path);
    if (s.methods == 0) {
      s.status = 404;
    } else {
      s.methods |= detail::method_options;
      s.status = method == detail::method_options ? 204 : 405;
    }
    return detail::answer_shape::at_once;
  }
  s.route = m.found;
  const auto& names = detail::route_access::names(*m.found);
  for (std::size_t i = 0; i < m.count; ++i) s.params[i] = {names[i], m.values[i]};
  s.param_count = static_cast<std::uint8_t>(m.count);
  return detail::route_access::call(*m.found).shape();
}

}  // namespace cluster
