// Unit tests: the one JSON string escaper (json_text.hpp), which must give
// valid JSON for any bytes: /status and the JSON log carry text a client or
// a user's hook may have chosen.
#include <doctest/doctest.h>

#include <cluster/detail/json_text.hpp>

#include <string>

using cluster::detail::json_escaped;
using cluster::detail::utf8_sequence_length;

TEST_SUITE("unit") {
  TEST_CASE("json text: quotes, backslashes and control characters are escaped; printable ASCII passes") {
    CHECK(json_escaped("plain text 123") == "plain text 123");
    CHECK(json_escaped("say \"hi\"\\") == "say \\\"hi\\\"\\\\");
    CHECK(json_escaped(std::string("a\nb\r\tc\0d\x1f\x7f", 10)) == "a\\u000ab\\u000d\\u0009c\\u0000d\\u001f\\u007f");
    CHECK(json_escaped("</script>") == "</script>");  // a JSON string may hold it; HTML escaping is the page's job
  }

  TEST_CASE("json text: valid UTF-8 passes unchanged, so Unicode round-trips") {
    for (const char* s : {"Zo\xc3\xab", "\xe2\x82\xac 5", "\xf0\x9f\x98\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"})
      CHECK(json_escaped(s) == s);
  }

  TEST_CASE("json text: each byte that does not start a valid UTF-8 sequence becomes U+FFFD") {
    CHECK(json_escaped("\xff") == "\\ufffd");
    CHECK(json_escaped("a\x80z") == "a\\ufffdz");                   // a lone continuation byte
    CHECK(json_escaped("\xc3") == "\\ufffd");                       // cut short at the end
    CHECK(json_escaped("\xc3(") == "\\ufffd(");                     // cut short by ASCII
    CHECK(json_escaped("\xc0\xaf") == "\\ufffd\\ufffd");            // overlong '/'
    CHECK(json_escaped("\xe0\x80\xaf") == "\\ufffd\\ufffd\\ufffd"); // overlong, 3 bytes
    CHECK(json_escaped("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd"); // a UTF-16 surrogate
    CHECK(json_escaped("\xf4\x90\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd");  // past U+10FFFF
    CHECK(json_escaped("\xf8\x88\x80\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd");
  }

  TEST_CASE("json text: every byte string of length 1 and 2 gives only printable ASCII or valid UTF-8") {
    for (int a = 0; a < 256; ++a)
      for (int b = -1; b < 256; ++b) {
        std::string in(1, static_cast<char>(a));
        if (b >= 0) in += static_cast<char>(b);
        const std::string out = json_escaped(in);
        for (std::string_view rest = out; !rest.empty();) {
          const unsigned char c = static_cast<unsigned char>(rest.front());
          REQUIRE(c >= 0x20);
          REQUIRE(c != 0x7f);
          std::size_t n = c < 0x80 ? 1 : utf8_sequence_length(rest);
          REQUIRE(n != 0);
          rest.remove_prefix(n);
        }
      }
  }
}
