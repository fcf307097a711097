// cluster::cors: middleware that lets pages from other origins call the
// service (the Fetch standard's CORS protocol): preflights answered, and
// Access-Control-* fields on the responses to allowed origins.
#pragma once

#include <cluster/middleware.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cluster {

/// What a cors middleware allows.
struct cors_options {
  /// Origins allowed to read responses, exactly as browsers send them
  /// ("https://app.example.com"), or {"*"} for any origin.
  std::vector<std::string> origins = {"*"};
  /// Methods a preflight allows (Access-Control-Allow-Methods).
  std::vector<std::string> methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
  /// Request header fields a preflight allows (Access-Control-Allow-Headers).
  std::vector<std::string> headers = {"Content-Type", "Authorization", "X-Request-Id"};
  /// Response header fields the page may read beyond the safelisted ones
  /// (Access-Control-Expose-Headers); none by default.
  std::vector<std::string> expose = {};
  /// Whether the page may send cookies and read the response with them
  /// (Access-Control-Allow-Credentials); needs a list of origins, not "*".
  bool credentials = false;
  /// How long a browser may keep a preflight's answer (Access-Control-Max-Age).
  std::chrono::seconds max_age{600};
};

/// CORS middleware; add it router-wide, so that it also sees the router's
/// own OPTIONS answers. A preflight (OPTIONS with Origin and
/// Access-Control-Request-Method) is answered by the router (204 with
/// Allow, or 404 for a path no route has) or by an OPTIONS route; when its
/// origin is allowed, this adds the allowed methods, headers and max-age.
/// A preflight from another origin gets no CORS field, so the browser
/// refuses the call. Every response to an allowed origin gets
/// Access-Control-Allow-Origin (and -Credentials, -Expose-Headers). With a
/// list of origins, every response says "Vary: Origin", so caches keep one
/// copy per origin.
class cors final : public middleware {
 public:
  /// Throws std::invalid_argument for no origins, "*" with credentials (the
  /// Fetch standard forbids it: list the origins), or a value that cannot
  /// be a field value.
  explicit cors(cors_options opts = {})
      : any_(std::ranges::find(opts.origins, "*") != opts.origins.end()),
        credentials_(opts.credentials),
        origins_(std::move(opts.origins)),
        methods_(join(opts.methods)),
        headers_(join(opts.headers)),
        expose_(join(opts.expose)),
        max_age_(std::to_string(opts.max_age.count())) {
    if (origins_.empty()) throw std::invalid_argument("cluster::cors: no origins (use {\"*\"} for any)");
    if (any_ && credentials_)
      throw std::invalid_argument("cluster::cors: credentials need a list of origins, not \"*\"");
    if (any_ && origins_.size() != 1) throw std::invalid_argument("cluster::cors: \"*\" must be the only origin");
    for (const std::string& o : origins_)
      if (!is_valid_field_value(o) || o.empty()) throw std::invalid_argument("cluster::cors: bad origin \"" + o + "\"");
    for (const std::string* v : {&methods_, &headers_, &expose_})
      if (!is_valid_field_value(*v)) throw std::invalid_argument("cluster::cors: bad value \"" + *v + "\"");
  }

  void after(const request& req, response& res) override {
    if (!any_) res.headers.add("Vary", "Origin");
    std::string_view origin = req.header("Origin");
    if (!allowed(origin)) return;
    res.set("Access-Control-Allow-Origin", any_ ? std::string_view("*") : origin);
    if (credentials_) res.set("Access-Control-Allow-Credentials", "true");
    if (req.method() == "OPTIONS" && req.has_header("Access-Control-Request-Method")) {
      res.set("Access-Control-Allow-Methods", methods_);
      if (!headers_.empty()) res.set("Access-Control-Allow-Headers", headers_);
      res.set("Access-Control-Max-Age", max_age_);
    } else if (!expose_.empty()) {
      res.set("Access-Control-Expose-Headers", expose_);
    }
  }

 private:
  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& s : items) {
      if (!out.empty()) out += ", ";
      out += s;
    }
    return out;
  }

  bool allowed(std::string_view origin) const noexcept {
    if (origin.empty()) return false;
    return any_ || std::ranges::find(origins_, origin) != origins_.end();
  }

  bool any_;
  bool credentials_;
  std::vector<std::string> origins_;
  std::string methods_;
  std::string headers_;
  std::string expose_;
  std::string max_age_;
};

}  // namespace cluster
