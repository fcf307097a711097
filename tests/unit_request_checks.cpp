// Unit tests: the conformance checks llhttp leaves to us, as pure functions
// (Host, transfer codings, expectations, line ends, the method token).
#include <cluster/detail/request_checks.hpp>

#include <doctest/doctest.h>

#include <string>
#include <string_view>

namespace {

// The Host check as it was written before the table (one branch per
// character class), kept as the reference the table must agree with.
bool reference_valid_host(std::string_view v) {
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  auto is_alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  std::size_t colon = std::string_view::npos;
  if (!v.empty() && v.front() == '[') {
    std::size_t close = v.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (char c : v.substr(1, close - 1))
      if (!(is_hex(c) || c == ':' || c == '.' || c == 'v' || c == 'V')) return false;
    if (close + 1 < v.size() && v[close + 1] != ':') return false;
    colon = close + 1 < v.size() ? close + 1 : std::string_view::npos;
  } else {
    colon = v.find(':');
    std::string_view name = v.substr(0, colon);
    for (std::size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      if (c == '%') {
        if (i + 2 >= name.size() || !is_hex(name[i + 1]) || !is_hex(name[i + 2])) return false;
        i += 2;
        continue;
      }
      bool unreserved = is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
      bool sub_delim = c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' ||
                       c == ';' || c == '=';
      if (!unreserved && !sub_delim) return false;
    }
  }
  if (colon == std::string_view::npos) return true;
  for (char c : v.substr(colon + 1))
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("checks: the Host table accepts and refuses exactly what the per-character rules did") {
    using cluster::detail::valid_host;
    // Every string of up to three bytes over an alphabet that holds each
    // class the grammar tells apart, every byte value alone and in a name
    // and a port, and the usual forms.
    const std::string alphabet = "a9F%:[].v,/@ \x80";
    std::size_t compared = 0;
    auto both = [&](const std::string& s) {
      CHECK_MESSAGE(valid_host(s) == reference_valid_host(s), "Host: \"", s, "\"");
      ++compared;
    };
    both("");
    for (char a : alphabet) {
      both(std::string(1, a));
      for (char b : alphabet) {
        both(std::string{a, b});
        for (char c : alphabet) both(std::string{a, b, c});
      }
    }
    for (int c = 0; c < 256; ++c) {
      char ch = static_cast<char>(c);
      both(std::string(1, ch));
      both("host" + std::string(1, ch) + "name:80");
      both("host:8" + std::string(1, ch));
      both("[::" + std::string(1, ch) + "]:1");
      both("%4" + std::string(1, ch));
    }
    for (const char* s : {"example.com",
                          "example.com:8080",
                          "127.0.0.1:65535",
                          "[::1]",
                          "[::1]:80",
                          "[v1.x]",
                          "a%2Fb",
                          "a%2",
                          "a%zz",
                          "[]",
                          "[:",
                          "[::1]x",
                          "a,b",
                          "user@host",
                          "host/path",
                          ":80",
                          "host:",
                          "host:8a",
                          "[::1]:",
                          "%41%42:1"})
      both(s);
    CHECK(compared > 3000);
  }

  TEST_CASE("checks: transfer codings: chunked last and once is fine, others are 501, misplaced chunked 400") {
    auto refusal = [](std::initializer_list<std::string_view> lines, int minor = 1) {
      cluster::detail::transfer_codings t;
      for (auto l : lines) t.add(l);
      return t.refusal(minor);
    };
    CHECK(refusal({}) == 0);
    CHECK(refusal({"chunked"}) == 0);
    CHECK(refusal({"Chunked"}) == 0);
    CHECK(refusal({" , chunked ,"}) == 0);  // empty list elements are allowed
    CHECK(refusal({"gzip, chunked"}) == 501);
    CHECK(refusal({"gzip", "chunked"}) == 501);
    CHECK(refusal({"chunked"}, 0) == 400);  // HTTP/1.0
    CHECK(refusal({"chunked, gzip"}) == 400);
    CHECK(refusal({"chunked", "chunked"}) == 400);
    CHECK(refusal({"chunked;q=1"}) == 400);
    CHECK(refusal({"gzip"}) == 400);
    CHECK(refusal({""}) == 400);  // present, but no final chunked
  }

  TEST_CASE("checks: 100-continue is the only expectation, and one other makes the request's unsupported") {
    using cluster::detail::add_expectation;
    using cluster::detail::expectation;
    CHECK(add_expectation(expectation::none, "100-continue") == expectation::hundred_continue);
    CHECK(add_expectation(expectation::none, "100-Continue") == expectation::hundred_continue);
    CHECK(add_expectation(expectation::none, "200-ok") == expectation::unsupported);
    CHECK(add_expectation(expectation::hundred_continue, "x") == expectation::unsupported);
    CHECK(add_expectation(expectation::unsupported, "100-continue") == expectation::unsupported);
  }

  TEST_CASE("checks: line ends are CRLF, and a header section ends with an empty CRLF line") {
    std::string_view s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(cluster::detail::follows_crlf(s.data(), 16));
    CHECK_FALSE(cluster::detail::follows_crlf(s.data(), 1));
    std::string_view lf = "GET / HTTP/1.1\nHost: a\r\n\r\n";
    CHECK_FALSE(cluster::detail::follows_crlf(lf.data(), 15));
    CHECK(cluster::detail::ends_header_section(s.data() + 16, s.data() + s.size()));
    std::string_view bare = "Host: a\r\n\n";
    CHECK_FALSE(cluster::detail::ends_header_section(bare.data(), bare.data() + bare.size()));
    std::string_view short_end = "Host: a\r\n\r";
    CHECK_FALSE(cluster::detail::ends_header_section(short_end.data(), short_end.data() + short_end.size()));
  }

  TEST_CASE("checks: a field name is matched case-insensitively against a lower-case name, and only it") {
    using cluster::detail::is_named;
    CHECK(is_named("Host", "host"));
    CHECK(is_named("HOST", "host"));
    CHECK(is_named("Transfer-Encoding", "transfer-encoding"));
    CHECK(is_named("tRANSFER-eNCODING", "transfer-encoding"));
    CHECK_FALSE(is_named("Hosts", "host"));
    CHECK_FALSE(is_named("Hos", "host"));
    CHECK_FALSE(is_named("Post", "host"));
    CHECK_FALSE(is_named("Transfer_Encoding", "transfer-encoding"));  // '_' | 0x20 is DEL, not '-'
    // CR is the one byte that passes for '-' (0x0d | 0x20 == '-'): llhttp
    // never lets one into a field name, which is why the shortcut is exact.
    CHECK(is_named("Transfer\rEncoding", "transfer-encoding"));
    // Every byte but the letter's two cases misses it.
    for (int c = 0; c < 256; ++c) {
      CAPTURE(c);
      const char ch = static_cast<char>(c);
      CHECK(is_named(std::string_view(&ch, 1), "x") == (ch == 'x' || ch == 'X'));
    }
  }

  TEST_CASE("checks: an unknown method token is scanned after empty lines, and limited") {
    using cluster::detail::method_scan;
    std::size_t start = 0, stop = 0;
    CHECK(cluster::detail::scan_method("\r\n\r\nPURGE / HTTP/1.1", start, stop) == method_scan::complete);
    CHECK(start == 4);
    CHECK(stop == 9);
    CHECK(cluster::detail::scan_method("PUR", start, stop) == method_scan::incomplete);
    CHECK(cluster::detail::scan_method(" / HTTP/1.1", start, stop) == method_scan::invalid);
    CHECK(cluster::detail::scan_method("PURGE\t/", start, stop) == method_scan::invalid);
    CHECK(cluster::detail::scan_method(std::string(33, 'A') + " /", start, stop) == method_scan::too_long);
    CHECK(cluster::detail::scan_method(std::string(32, 'A') + " /", start, stop) == method_scan::complete);
  }
}
