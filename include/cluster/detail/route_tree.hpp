// Route patterns ("/users/:id/posts", "/files/*path") checked at
// registration, kept in a tree of path segments, and matched against a
// request's decoded segments: a literal segment before a parameter before
// a wildcard, the first route (in that order) that answers the method wins.
#pragma once

#include <cluster/detail/route_methods.hpp>
#include <cluster/detail/route_path.hpp>
#include <cluster/request.hpp>
#include <cluster/route.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cluster::detail {

/// One segment of a route pattern.
struct pattern_segment {
  enum class kind { literal, param, wildcard };
  kind type = kind::literal;
  std::string text;  ///< the literal, or the parameter's name ("*" for a bare wildcard)
};

/// Splits and checks `pattern`; throws std::invalid_argument naming the
/// pattern and what is wrong with it.
inline std::vector<pattern_segment> parse_pattern(std::string_view pattern) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("cluster::router: bad route pattern \"" + std::string(pattern) + "\": " + why);
  };
  if (!pattern.starts_with('/')) fail("it must start with '/'");
  std::vector<pattern_segment> segments;
  std::size_t params = 0;
  std::string_view rest = pattern.substr(1);
  for (;;) {
    std::size_t slash = rest.find('/');
    std::string_view piece = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    pattern_segment s;
    if (piece.starts_with(':') || piece.starts_with('*')) {
      std::string_view name = piece.substr(1);
      const bool wildcard = piece.starts_with('*');
      if (!wildcard && name.empty()) fail("a parameter needs a name (\":id\")");
      if (!std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
          }))
        fail("parameter names are letters, digits and '_' (\"" + std::string(piece) + "\")");
      if (wildcard && !last) fail("a wildcard must be the last segment");
      s.type = wildcard ? pattern_segment::kind::wildcard : pattern_segment::kind::param;
      s.text = wildcard && name.empty() ? "*" : std::string(name);
      for (const pattern_segment& earlier : segments)
        if (earlier.type != pattern_segment::kind::literal && earlier.text == s.text)
          fail("parameter \"" + s.text + "\" appears twice");
      if (++params > max_route_params)
        fail("more than " + std::to_string(max_route_params) + " parameters");
    } else {
      if (piece.empty() && !last) fail("empty segment (\"//\")");
      if (piece == "." || piece == "..") fail("dot segments never reach a route (they are removed from paths)");
      if (piece.find_first_of("?#%") != std::string_view::npos)
        fail("write literal segments decoded, without '?', '#' or '%'");
      s.text = std::string(piece);
    }
    segments.push_back(std::move(s));
    if (segments.size() > max_path_segments) fail("more than " + std::to_string(max_path_segments) + " segments");
    if (last) break;
    rest.remove_prefix(slash + 1);
  }
  return segments;
}

/// The routes of a router, by path segment.
class route_tree {
 public:
  /// What a match found: the route and its parameter values in pattern order.
  struct match {
    const route* found = nullptr;
    std::array<std::string_view, max_route_params> values{};
    std::size_t count = 0;
  };

  /// Adds `r` at the place `segments` (its pattern, parsed) names; throws
  /// std::invalid_argument when a route for the same method is there
  /// already (same pattern, or one differing only in parameter names).
  void insert(route& r, const std::vector<pattern_segment>& segments) {
    node* at = &root_;
    for (const pattern_segment& s : segments) {
      switch (s.type) {
        case pattern_segment::kind::literal: at = &at->literal_child(s.text); break;
        case pattern_segment::kind::param:
          if (!at->param) at->param = std::make_unique<node>();
          at = at->param.get();
          break;
        case pattern_segment::kind::wildcard: break;
      }
    }
    auto& list = segments.back().type == pattern_segment::kind::wildcard ? at->wildcards : at->ends;
    for (const route* other : list)
      if (other->bit_ == r.bit_)
        throw std::invalid_argument("cluster::router: route " + r.method_ + " \"" + r.pattern_ +
                                    "\" conflicts with " + other->method_ + " \"" + other->pattern_ + "\"");
    list.push_back(&r);
    methods_ |= r.bit_ == 0 ? all_methods : r.bit_;
  }

  /// The route that answers `method` (its bit: 0 for a method no route
  /// names) on `path`, or none.
  match find(const path_segments& path, method_set method) const {
    match m;
    find_at(root_, 0, path, method, m);
    return m;
  }

  /// Every method some route answers on `path` (GET brings HEAD); empty
  /// when no route has that path.
  method_set allowed(const path_segments& path) const {
    method_set set = 0;
    allowed_at(root_, 0, path, set);
    if (set & method_get) set |= method_head;
    return set;
  }

  /// Every method some route answers, anywhere ("OPTIONS *").
  method_set methods() const noexcept {
    return methods_ & method_get ? static_cast<method_set>(methods_ | method_head) : methods_;
  }

 private:
  static constexpr method_set all_methods = (1u << route_method_names.size()) - 1;

  struct node {
    std::vector<std::pair<std::string, std::unique_ptr<node>>> literals;  // in shortlex order (before())
    std::unique_ptr<node> param;
    std::vector<const route*> ends;       // routes whose pattern ends here
    std::vector<const route*> wildcards;  // routes whose pattern ends in a wildcard here

    // Shortlex order: most comparisons end at the lengths, without memcmp.
    static bool before(std::string_view a, std::string_view b) noexcept {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    }
    node& literal_child(const std::string& text) {
      auto it = std::lower_bound(literals.begin(), literals.end(), text,
                                 [](const auto& entry, const std::string& t) { return before(entry.first, t); });
      if (it == literals.end() || it->first != text) it = literals.insert(it, {text, std::make_unique<node>()});
      return *it->second;
    }
    const node* find_literal(std::string_view text) const noexcept {
      auto it = std::lower_bound(literals.begin(), literals.end(), text,
                                 [](const auto& entry, std::string_view t) { return before(entry.first, t); });
      return it != literals.end() && std::string_view(it->first) == text ? it->second.get() : nullptr;
    }
  };

  // The route of `routes` for `method`: its own, else GET's for HEAD (RFC
  // 9110 §9.3.2: HEAD is GET without the body), else one for any method.
  static const route* pick(const std::vector<const route*>& routes, method_set method) noexcept {
    const route* get = nullptr;
    const route* any = nullptr;
    for (const route* r : routes) {
      if (method != 0 && r->bit_ == method) return r;
      if (r->bit_ == method_get) get = r;
      if (r->bit_ == 0) any = r;
    }
    return method == method_head && get ? get : any;
  }

  static bool find_at(const node& n, std::size_t i, const path_segments& path, method_set method, match& m) {
    if (i == path.count) {
      m.found = pick(n.ends, method);
      return m.found != nullptr;
    }
    if (const node* child = n.find_literal(path[i]); child && find_at(*child, i + 1, path, method, m))
      return true;
    if (n.param && !path[i].empty()) {
      m.values[m.count++] = path[i];
      if (find_at(*n.param, i + 1, path, method, m)) return true;
      --m.count;
    }
    if (const route* r = pick(n.wildcards, method)) {
      m.values[m.count++] = path.rest(i);
      m.found = r;
      return true;
    }
    return false;
  }

  static void allowed_at(const node& n, std::size_t i, const path_segments& path, method_set& set) {
    auto add = [&set](const std::vector<const route*>& routes) {
      for (const route* r : routes) set |= r->bit_ == 0 ? all_methods : r->bit_;
    };
    if (i == path.count) {
      add(n.ends);
      return;
    }
    if (const node* child = n.find_literal(path[i])) allowed_at(*child, i + 1, path, set);
    if (n.param && !path[i].empty()) allowed_at(*n.param, i + 1, path, set);
    add(n.wildcards);
  }

  node root_;
  method_set methods_ = 0;
};

}  // namespace cluster::detail
