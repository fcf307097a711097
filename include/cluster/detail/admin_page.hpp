// The admin endpoint's page (GET /): the cluster at a glance, like `pm2
// monit`, for a browser pointed at the admin listener. Self-contained: its
// style and script are inline, nothing is loaded from elsewhere, and the
// script reads the relative URL "status" (so /status, or the same path under
// a proxy's prefix) once a second and puts every value into the DOM with
// textContent. The Content-Security-Policy allows exactly these two inline
// blocks, by their SHA-256 hashes, and fetches from the page's own origin.
#pragma once

#include <cluster/detail/sha256.hpp>
#include <cluster/response.hpp>

#include <string>
#include <string_view>

namespace cluster::detail {

namespace admin_page_text {

inline constexpr std::string_view style = R"CSS(
:root{color-scheme:light dark;--ok:#2a7;--bad:#d33;--dim:#888}
body{font:14px system-ui,sans-serif;max-width:62em;margin:1.5em auto;padding:0 1em}
header{display:flex;align-items:baseline;gap:1em}
h1{font-size:1.3em;margin:0}
#link{color:var(--ok)}
.down #link{color:var(--bad);font-weight:bold}
.down main{opacity:.4}
#master{display:flex;flex-wrap:wrap;gap:.5em 2em;margin:1em 0}
#master small,figcaption{display:block;color:var(--dim)}
figcaption small{float:right}
span.a{color:#37c}span.b{color:#e80}
#charts{display:grid;grid-template-columns:1fr 1fr;gap:1em}
figure{margin:0}
svg{width:100%;height:80px;border:1px solid var(--dim)}
polyline{fill:none;stroke-width:1.5;vector-effect:non-scaling-stroke}
.a{stroke:#37c}.b{stroke:#e80}
table{border-collapse:collapse;width:100%;margin:1em 0;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;text-align:right;border-bottom:1px solid #8884}
th:nth-child(2),td.state{text-align:left}
tr[data-state=ready] .state{color:var(--ok)}
tr[data-state=backoff] .state,tr[data-state=down] .state{color:var(--bad)}
)CSS";

inline constexpr std::string_view script = R"JS(
"use strict";
const $ = (id) => document.getElementById(id);
const keep = 60;  // points per chart: one per refresh
const series = { rate: [], p50: [], p99: [] };
const columns = ["slot", "state", "pid", "uptime", "restarts", "rps", "conns", "rss", "cpu", "lag"];
const states = ["starting", "ready", "draining", "backoff", "down", "retiring"];
const none = "\u2013";

const fixed = (v, digits) => Number(v).toFixed(digits);
const mib = (bytes) => fixed(bytes / 1048576, 1) + " MiB";
const ms = (seconds) => (seconds == null ? none : fixed(seconds * 1000, 2) + " ms");
const percent = (p) => fixed(p, 1) + "%";
function duration(seconds) {
  const s = Math.floor(Number(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
const show = (id, text) => { $(id).textContent = text; };

function cells(s) {
  const live = s.pid > 0;
  return {
    slot: s.slot, state: s.state, pid: live ? s.pid : none, uptime: live ? duration(s.uptime_seconds) : none,
    restarts: s.restarts, rps: fixed(s.requests_per_second, 1), conns: s.open_connections,
    rss: live ? mib(s.rss_bytes) : none, cpu: live ? percent(s.cpu_percent) : none,
    lag: live ? ms(s.loop_lag_seconds) : none,
  };
}

function rows(slots) {
  $("slots").replaceChildren(...slots.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.state = states.includes(s.state) ? s.state : "other";
    const values = cells(s);
    for (const c of columns) {
      const td = document.createElement("td");
      td.className = c;
      td.textContent = values[c];
      tr.append(td);
    }
    return tr;
  }));
}

// Each line of `lines` (numbers, newest last) as a polyline of the chart
// `id`, on one scale from 0 to a little above the largest value, shown in
// the element `id`-scale with `unit`.
function draw(id, lines, unit) {
  const w = 300, h = 80;
  const top = Math.max(0, ...lines.flat()) * 1.1 || 1;
  show(id + "-scale", "scale 0 to " + Number(top.toPrecision(2)) + unit);
  $(id).querySelectorAll("polyline").forEach((line, i) => {
    const l = lines[i];
    const at = (v, x) => fixed(w - ((l.length - 1 - x) * w) / (keep - 1), 1) + "," + fixed(h - (v / top) * h, 1);
    line.setAttribute("points", l.map(at).join(" "));
  });
}

function record(name, value) {
  series[name].push(Number(value) || 0);
  if (series[name].length > keep) series[name].shift();
}

function render(st) {
  const m = st.master, r = st.rates;
  show("pid", m.pid);
  show("state", m.state);
  show("uptime", duration(m.uptime_seconds));
  show("workers", m.workers);
  show("mcpu", percent(m.cpu_percent));
  show("mrss", mib(m.rss_bytes));
  show("rps", fixed(r.requests_per_second, 1));
  show("p50", ms(r.latency_p50_seconds));
  show("p99", ms(r.latency_p99_seconds));
  rows(st.slots);
  record("rate", r.requests_per_second);
  record("p50", r.latency_p50_seconds * 1000);
  record("p99", r.latency_p99_seconds * 1000);  // ms; 0 without requests
  draw("rate", [series.rate], "/s");
  draw("latency", [series.p50, series.p99], " ms");
}

async function refresh() {
  try {
    const res = await fetch("status", { cache: "no-store", signal: AbortSignal.timeout(2000) });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    document.body.classList.remove("down");
    show("link", "live, " + new Date().toLocaleTimeString());
  } catch (e) {
    document.body.classList.add("down");
    show("link", "cannot reach /status (" + e.message + ")");
  }
  setTimeout(refresh, 1000);
}
refresh();
)JS";

inline constexpr std::string_view head = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cluster</title>
<link rel="icon" href="data:,">
<style>)HTML";

inline constexpr std::string_view body = R"HTML(</style>
</head>
<body>
<header><h1>cluster</h1><span id="link">connecting to /status</span></header>
<main>
<section id="master">
<div><small>master pid</small><b id="pid"></b></div>
<div><small>state</small><b id="state"></b></div>
<div><small>uptime</small><b id="uptime"></b></div>
<div><small>workers</small><b id="workers"></b></div>
<div><small>master cpu</small><b id="mcpu"></b></div>
<div><small>master rss</small><b id="mrss"></b></div>
</section>
<section id="charts">
<figure><figcaption>requests/s <b id="rps"></b> <small id="rate-scale"></small></figcaption>
<svg id="rate" viewBox="0 0 300 80" preserveAspectRatio="none"><polyline class="a"/></svg></figure>
<figure><figcaption>latency <span class="a">p50</span> <b id="p50"></b> <span class="b">p99</span> <b id="p99"></b>
<small id="latency-scale"></small></figcaption>
<svg id="latency" viewBox="0 0 300 80" preserveAspectRatio="none"><polyline class="a"/><polyline class="b"/></svg></figure>
</section>
<table>
<thead><tr><th>slot<th>state<th>pid<th>uptime<th>restarts<th>req/s<th>conns<th>rss<th>cpu<th>lag</tr></thead>
<tbody id="slots"></tbody>
</table>
</main>
<footer><a href="status">/status</a> &middot; <a href="status?format=text">/status?format=text</a> &middot;
<a href="metrics">/metrics</a></footer>
<script>)HTML";

inline constexpr std::string_view tail = "</script>\n</body>\n</html>\n";

}  // namespace admin_page_text

/// The page's HTML.
inline const std::string& admin_page_html() {
  using namespace admin_page_text;
  static const std::string page =
      std::string(head) + std::string(style) + std::string(body) + std::string(script) + std::string(tail);
  return page;
}

/// A CSP source expression for an inline block: 'sha256-<base64 digest>'.
inline std::string csp_hash(std::string_view block) {
  auto digest = sha256(block);
  return "'sha256-" + base64(digest.data(), digest.size()) + "'";
}

/// The page's Content-Security-Policy: nothing by default; its own inline
/// style and script by hash (an injected block would not run); fetches to
/// its own origin only (status); images only as data: URLs (the empty
/// favicon, so that the browser asks for no /favicon.ico); no <base>, no
/// form, no framing by another page.
inline const std::string& admin_page_policy() {
  static const std::string policy = "default-src 'none'; script-src " + csp_hash(admin_page_text::script) +
                                    "; style-src " + csp_hash(admin_page_text::style) +
                                    "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                                    "frame-ancestors 'none'";
  return policy;
}

/// GET / on the admin endpoint: the page, never cached (it is small, and a
/// cached copy would outlive an upgrade of the master), not to be sniffed
/// as anything but HTML, sending no Referer from its links.
inline response admin_page_response() {
  response r = response::html(admin_page_html());
  r.set("Content-Security-Policy", admin_page_policy());
  r.set("X-Content-Type-Options", "nosniff");
  r.set("Cache-Control", "no-store");
  r.set("Referrer-Policy", "no-referrer");
  return r;
}

}  // namespace cluster::detail
