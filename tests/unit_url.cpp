// Unit tests: percent-decoding (cluster::url_decode), the decoded segments
// a router matches (detail/route_path.hpp), and query fields read through
// the request (request::query_param, query_params).
#include <doctest/doctest.h>

#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"

#include <cluster/detail/route_path.hpp>
#include <cluster/router.hpp>
#include <cluster/url.hpp>

#include <string>
#include <vector>

using namespace test_support;

namespace {

// The decoded segments of `target`, or the verdict's name when it is not ok.
std::vector<std::string> segments_of(std::string_view target) {
  std::string text;
  text.reserve(target.size());
  const char* before = text.data();
  cluster::detail::path_segments s;
  switch (cluster::detail::split_path(target, text, s)) {
    case cluster::detail::path_verdict::ok: break;
    case cluster::detail::path_verdict::asterisk: return {"<asterisk>"};
    case cluster::detail::path_verdict::bad: return {"<bad>"};
    case cluster::detail::path_verdict::too_long: return {"<too long>"};
  }
  CHECK(text.data() == before);  // decoded in place: never reallocated
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.count; ++i) out.emplace_back(s[i]);
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("url_decode: escapes and '+', malformed escapes refused") {
    CHECK(cluster::url_decode("caf%C3%A9") == "caf\xC3\xA9");
    CHECK(cluster::url_decode("a+b%2Bc") == "a+b+c");
    CHECK(cluster::url_decode("a+b%2Bc", cluster::url_plus::space) == "a b+c");
    CHECK(cluster::url_decode("%2f%2F") == "//");
    CHECK(cluster::url_decode("") == "");
    CHECK_FALSE(cluster::url_decode("%").has_value());
    CHECK_FALSE(cluster::url_decode("%4").has_value());
    CHECK_FALSE(cluster::url_decode("%g1").has_value());
    CHECK(cluster::url_decode("%00") == std::string(1, '\0'));
  }

  TEST_CASE("path segments: decoded one by one, dot segments removed, the root never left") {
    CHECK(segments_of("/") == strings{""});
    CHECK(segments_of("/a/b/") == strings{"a", "b", ""});
    CHECK(segments_of("/a%2Fb/c") == strings{"a/b", "c"});
    CHECK(segments_of("/a/./b/../c") == strings{"a", "c"});
    CHECK(segments_of("/../..") == strings{""});
    CHECK(segments_of("/a/..") == strings{""});
    CHECK(segments_of("/a/b/.") == strings{"a", "b", ""});
    CHECK(segments_of("/%2E%2e/x") == strings{"x"});
    CHECK(segments_of("/a//b") == strings{"a", "", "b"});
    CHECK(segments_of("/x?y=/z") == strings{"x"});
    CHECK(segments_of("http://host:8080/p/q") == strings{"p", "q"});
    CHECK(segments_of("http://host") == strings{""});
    CHECK(segments_of("HTTPS://host/a") == strings{"a"});
    CHECK(segments_of("\"://") == strings{"<bad>"});  // a fuzzer finding: no scheme is no absolute-form
    CHECK(segments_of("ftp://host/a") == strings{"<bad>"});
    CHECK(segments_of("*") == strings{"<asterisk>"});
    CHECK(segments_of("/a%zz") == strings{"<bad>"});
    CHECK(segments_of("/a%00") == strings{"<bad>"});
    CHECK(segments_of("relative") == strings{"<bad>"});
    std::string deep;
    for (int i = 0; i < 64; ++i) deep += "/s";
    CHECK(segments_of(deep).size() == 64);
    CHECK(segments_of(deep + "/s") == strings{"<too long>"});
    CHECK(segments_of(deep + "/..").size() == 64);  // 63 segments and the trailing empty one
  }

  TEST_CASE("query: fields decoded, '+' as a space, malformed escapes kept, empty pairs skipped") {
    std::vector<std::pair<std::string, std::string>> seen;
    std::string limit, missing, flag_value, bad;
    bool has_flag = false, has_missing = true;
    auto handler = [&](const cluster::request& req) {
      limit = req.query_param("limit");
      missing = req.query_param("missing");
      has_flag = req.has_query_param("flag");
      has_missing = req.has_query_param("missing");
      flag_value = req.query_param("flag");
      bad = req.query_param("bad");
      for (auto [name, value] : req.query_params()) seen.emplace_back(name, value);
      return cluster::response::text("ok");
    };
    cluster::options opts;
    auto wire = serve_in_memory(handler, opts,
                                {"GET /x?limit=10&&name=Zo%C3%AB+B&flag&bad=%zz%4&a%3Db=c%26d HTTP/1.1\r\nHost: h\r\n\r\n"});
    CHECK(parse_responses(wire.output).finals().size() == 1);
    CHECK(limit == "10");
    CHECK(missing.empty());
    CHECK(has_flag);
    CHECK_FALSE(has_missing);
    CHECK(flag_value.empty());
    CHECK(bad == "%zz%4");
    CHECK(seen == std::vector<std::pair<std::string, std::string>>{
                      {"limit", "10"}, {"name", "Zo\xC3\xAB B"}, {"flag", ""}, {"bad", "%zz%4"}, {"a=b", "c&d"}});
  }

  TEST_CASE("query: the views stay valid beside the route's parameters") {
    cluster::router r;
    std::string seen;
    r.get("/users/:id", [&seen](const cluster::request& req) {
      std::string_view q = req.query_param("q");
      std::string_view id = req.param("id");
      seen = std::string(id) + "|" + std::string(q) + "|" + std::string(req.query_param("q"));
      return cluster::response::text("ok");
    });
    cluster::options opts;
    auto wire = serve_in_memory(r, opts, {"GET /users/a%20b?q=x%20y HTTP/1.1\r\nHost: h\r\n\r\n"});
    CHECK(parse_responses(wire.output).finals().size() == 1);
    CHECK(seen == "a b|x y|x y");
  }
}
