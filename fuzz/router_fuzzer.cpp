// libFuzzer target: what a router does with a client's request-target before
// any route runs, on arbitrary bytes (llhttp lets only 0x21..0x7e through,
// but the router must not rely on it):
//   1. detail::split_path(): never writes past the room reserved for the
//      target (the storage is never reallocated, so the views stay valid),
//      never yields a "." or ".." segment or one holding NUL, never more
//      than max_path_segments segments, and every segment lies inside the
//      decoded path (or, for a path with nothing to decode, the target);
//   2. route_tree::find() and allowed() over a fixed table of literal,
//      parameter and wildcard routes: a match has one value per parameter
//      name, each a view into the path; a path with a match for GET
//      is allowed GET;
//   3. the query: decode_query() writes no more than it read, and
//      query_fields walks exactly what it wrote;
//   4. cluster::url_decode(): no longer than its input; every byte escaped
//      as %XX decodes back to itself.
// A violated invariant aborts, which libFuzzer reports with the input.
//   fuzz/run router [seconds]
#include <cluster/detail/log_escape.hpp>
#include <cluster/detail/route_path.hpp>
#include <cluster/detail/route_tree.hpp>
#include <cluster/query.hpp>
#include <cluster/router.hpp>
#include <cluster/url.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "router_fuzzer: invariant broken: %s\n", what);
    std::abort();
  }
}

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

// The table: literal, parameter and wildcard routes, sharing prefixes.
struct table {
  cluster::router holder;  // owns the routes the tree points to
  cluster::detail::route_tree tree;

  table() {
    for (const char* p : {"/", "/users", "/users/", "/users/me", "/users/:id", "/users/:id/posts/:post",
                          "/files/*path", "/a/:b/c/*", "/:x/:y", "/%", "/x/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8"}) {
      try {
        cluster::route& r = holder.get(p, [](const cluster::request&) { return cluster::response::text("x"); });
        tree.insert(r, cluster::detail::parse_pattern(p));
      } catch (const std::invalid_argument&) {
        // "/%" is refused, as it must be.
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static table t;
  const std::string_view target(reinterpret_cast<const char*>(data), size);

  // 1. The path.
  std::string text;
  text.reserve(target.size());
  const char* storage = text.data();
  cluster::detail::path_segments path;
  auto verdict = cluster::detail::split_path(target, text, path);
  check(text.data() == storage, "split_path reallocated its storage");
  check(text.size() <= target.size(), "decoded path longer than the target");
  if (verdict == cluster::detail::path_verdict::ok) {
    check(path.count >= 1 && path.count <= cluster::detail::max_path_segments, "segment count");
    for (std::size_t i = 0; i < path.count; ++i) {
      std::string_view s = path[i];
      check(s != "." && s != "..", "a dot segment survived");
      check(s.find('\0') == std::string_view::npos, "NUL in a segment");
      // (An absolute-form target without a path has the root's one empty
      // segment, in a static "/".)
      check(s.empty() || inside(s, text) || inside(s, target), "segment outside the decoded path and the target");
    }
    // 2. Matching.
    for (cluster::detail::method_set m : {cluster::detail::method_get, cluster::detail::method_head,
                                          cluster::detail::method_bit("POST")}) {
      auto found = t.tree.find(path, m);
      if (found.found != nullptr) {
        check(found.count == cluster::detail::route_access::names(*found.found).size(), "parameter count");
        for (std::size_t i = 0; i < found.count; ++i)
          check(found.values[i].empty() || inside(found.values[i], text) || inside(found.values[i], target),
                "value outside the path");
        check((t.tree.allowed(path) & cluster::detail::method_get) != 0, "matched path not allowed GET");
      }
    }
  }

  // 3. The query.
  std::string decoded(target.size(), '\0');
  std::size_t n = cluster::detail::decode_query(target, decoded.data());
  check(n <= target.size(), "decoded query longer than the query");
  std::size_t walked = 0;
  for (const cluster::query_field& f : cluster::query_fields(target, std::string_view(decoded).substr(0, n)))
    walked += f.name.size() + f.value.size();
  check(walked == n, "query fields do not cover the decoded query");

  // 4. url_decode.
  if (auto d = cluster::url_decode(target, cluster::url_plus::space)) check(d->size() <= target.size(), "url_decode grew");
  std::string escaped;
  for (char c : target) {
    escaped += '%';
    escaped += cluster::detail::hex_digits[static_cast<unsigned char>(c) >> 4];
    escaped += cluster::detail::hex_digits[static_cast<unsigned char>(c) & 15];
  }
  check(cluster::url_decode(escaped) == std::string(target), "escaped bytes do not decode back");
  return 0;
}
