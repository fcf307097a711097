// What the admin endpoint answers: its page (/, admin_page.hpp), /livez and
// /readyz from the master's health verdict, /metrics, /status and
// /status?format=text over a snapshot of the cluster. Apart from the master
// so that the admin fuzzer (fuzz/admin_fuzzer.cpp) drives this very routing
// through the connection code without a running cluster.
#pragma once

#include <cluster/detail/admin_page.hpp>
#include <cluster/detail/service_health.hpp>
#include <cluster/detail/status_report.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>

#include <string_view>

namespace cluster::detail {

/// A probe's answer: 200 "ok", or 503 with the reason. Never cached: a
/// balancer must see the verdict of the moment.
inline response probe_answer(const probe_verdict& v) {
  auto r = v.ok ? response::text("ok\n") : response::text(v.reason + "\n", 503);
  r.set("Cache-Control", "no-store");
  return r;
}

/// The admin endpoint's answer to `req`; `snapshot()` returns the
/// cluster_status to render and is called only by a route that shows one;
/// `health()` returns the service_health, called only by the probes (it
/// reads no /proc file: a balancer may probe every few hundred ms).
template <class Snapshot, class Health>
response admin_answer(const request& req, Snapshot&& snapshot, Health&& health) {
  if (req.method() != "GET" && req.method() != "HEAD") {
    auto r = response::text("only GET and HEAD are served here\n", 405);
    r.set("Allow", "GET, HEAD");
    return r;
  }
  auto path = req.path();
  if (path == "/") return admin_page_response();
  if (path == "/livez") return probe_answer(health().live);
  if (path == "/readyz") return probe_answer(health().ready);
  if (path == "/metrics")
    return response::with(200, render_prometheus(snapshot()), "text/plain; version=0.0.4; charset=utf-8");
  if (path == "/status") {
    if (req.query().find("format=text") != std::string_view::npos) return response::text(render_table(snapshot()));
    return response::json(render_json(snapshot()));
  }
  return response::text("not found: try / (a page), /livez, /readyz, /metrics, /status or /status?format=text\n", 404);
}

}  // namespace cluster::detail
