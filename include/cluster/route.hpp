// One route of a cluster::router: a method, a pattern, a handler of any
// shape, and the middleware that runs around it alone.
#pragma once

#include <cluster/detail/route_handler.hpp>
#include <cluster/detail/route_methods.hpp>
#include <cluster/middleware.hpp>

#include <concepts>
#include <stdexcept>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cluster {

class router;

namespace detail {
struct route_access;
class route_tree;
}  // namespace detail

/// A route, as router::get() and the like return it, to add middleware
/// that runs for this route only (after the router's own):
/// `r.post("/users", create).use(require_token)`.
class route {
 public:
  route(const route&) = delete;
  route& operator=(const route&) = delete;

  /// Adds `m` to this route's middleware (see cluster::middleware for the
  /// order); chainable.
  route& use(std::shared_ptr<middleware> m) {
    if (!m) throw std::invalid_argument("cluster::route::use: null middleware on " + pattern_);
    middleware_.push_back(std::move(m));
    return *this;
  }
  /// Adds a copy of `m`; chainable.
  template <std::derived_from<middleware> M>
  route& use(M m) {
    return use(std::make_shared<M>(std::move(m)));
  }

  /// The method it answers ("GET"), or "*" for any.
  std::string_view method() const noexcept { return method_; }
  /// The pattern it was registered with ("/users/:id").
  std::string_view pattern() const noexcept { return pattern_; }

 private:
  friend class router;
  friend struct detail::route_access;
  friend class detail::route_tree;

  route(std::string method, std::string pattern, std::vector<std::string> names,
        std::unique_ptr<detail::route_handler> handler)
      : method_(std::move(method)),
        pattern_(std::move(pattern)),
        bit_(detail::method_bit(method_)),
        names_(std::move(names)),
        handler_(std::move(handler)) {}

  std::string method_;
  std::string pattern_;
  detail::method_set bit_;          // 0: any method
  std::vector<std::string> names_;  // of its parameters, in pattern order
  std::unique_ptr<detail::route_handler> handler_;
  std::vector<std::shared_ptr<middleware>> middleware_;
};

namespace detail {

/// What the router, the connection and the library's middleware reach
/// inside requests, routes and routers (the rest of router's is defined in
/// router.hpp).
struct route_access {
  static route_state& state(const request& req) noexcept { return req.route_; }
  static route_handler& call(const route& r) noexcept { return *r.handler_; }
  static const std::vector<std::string>& names(const route& r) noexcept { return r.names_; }
  static const std::vector<std::shared_ptr<middleware>>& middleware_of(const route& r) noexcept {
    return r.middleware_;
  }

  static bool streams(const router& r) noexcept;
  static answer_shape prepare(const router& r, request& req);
  struct at_once;
  struct whole;
};

}  // namespace detail
}  // namespace cluster
