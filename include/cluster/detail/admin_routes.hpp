// What the admin endpoint answers: its page (/, admin_page.hpp), /metrics,
// /status and /status?format=text over a snapshot of the cluster. Apart from the master so that the admin
// fuzzer (fuzz/admin_fuzzer.cpp) drives this very routing through the
// connection code without a running cluster.
#pragma once

#include <cluster/detail/admin_page.hpp>
#include <cluster/detail/status_report.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>

#include <string_view>

namespace cluster::detail {

/// The admin endpoint's answer to `req`; `snapshot()` returns the
/// cluster_status to render and is called only by a route that shows one.
template <class Snapshot>
response admin_answer(const request& req, Snapshot&& snapshot) {
  if (req.method() != "GET" && req.method() != "HEAD") {
    auto r = response::text("only GET and HEAD are served here\n", 405);
    r.set("Allow", "GET, HEAD");
    return r;
  }
  auto path = req.path();
  if (path == "/") return admin_page_response();
  if (path == "/metrics")
    return response::with(200, render_prometheus(snapshot()), "text/plain; version=0.0.4; charset=utf-8");
  if (path == "/status") {
    if (req.query().find("format=text") != std::string_view::npos) return response::text(render_table(snapshot()));
    return response::json(render_json(snapshot()));
  }
  return response::text("not found: try / (a page), /metrics, /status or /status?format=text\n", 404);
}

}  // namespace cluster::detail
