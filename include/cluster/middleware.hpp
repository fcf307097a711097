// Middleware: code a router runs before and after a route, for every route
// (router::use) or for one (route::use), which may answer in the route's
// place.
#pragma once

#include <cluster/request.hpp>
#include <cluster/response.hpp>

#include <functional>
#include <optional>
#include <utility>

namespace cluster {

/// Code that runs around routes. Derive and override what you need. The
/// router calls, for each request: every router-wide before() in the order
/// they were added, then the route's own; the route (unless a before()
/// answered); then the after() of each middleware whose before() ran, in
/// the reverse order. Router-wide middleware also runs around the router's
/// own answers (404, 405, OPTIONS, 400 for a malformed path), so an access
/// log sees every request.
///
/// A middleware object is shared by every request of its worker, which may
/// be in progress at once (coroutine routes): keep per-request state in the
/// request, not in members. Both hooks run on the worker's thread and must
/// not block.
class middleware {
 public:
  virtual ~middleware() = default;

  /// Runs before the route, with the route's parameters set (the body is in
  /// too, except for a streaming route, which reads it itself). Return a
  /// response to answer with it instead of calling the route (e.g. a 401,
  /// a CORS preflight); nothing to go on.
  virtual std::optional<response> before(request& req) {
    (void)req;
    return std::nullopt;
  }

  /// Runs on the response before it is sent, whoever made it (the route,
  /// a before(), the router, or a 500 for a route that threw): it may add
  /// header fields or replace the response. For a streaming route it runs
  /// on the head (the response passed to start() or send()); the body is
  /// not known yet.
  virtual void after(const request& req, response& res) {
    (void)req;
    (void)res;
  }
};

/// A middleware made of two functions, either of which may be empty:
/// `r.use(cluster::hooks([](cluster::request& req) -> std::optional<cluster::response> { ... }))`.
class hooks final : public middleware {
 public:
  /// The before() function: a response to answer with, or nothing.
  using before_function = std::function<std::optional<response>(request&)>;
  /// The after() function.
  using after_function = std::function<void(const request&, response&)>;

  /// Runs `before` before the route and `after` after it.
  explicit hooks(before_function before, after_function after = {})
      : before_(std::move(before)), after_(std::move(after)) {}
  /// Runs `after` only.
  explicit hooks(after_function after) : after_(std::move(after)) {}

  std::optional<response> before(request& req) override {
    return before_ ? before_(req) : std::nullopt;
  }
  void after(const request& req, response& res) override {
    if (after_) after_(req, res);
  }

 private:
  before_function before_;
  after_function after_;
};

}  // namespace cluster
