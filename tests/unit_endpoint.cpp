// Unit tests: cluster::endpoint, the value behind request::peer() and
// request::local(), and what a request without a socket reports.
#include <doctest/doctest.h>

#include <cluster/endpoint.hpp>

#include "support/memory_socket.hpp"

#include <cstring>

#include <sys/un.h>

TEST_SUITE("unit") {
  TEST_CASE("endpoint: IPv4 and IPv6 socket addresses become text, without allocating for the address") {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(54321);
    REQUIRE(::inet_pton(AF_INET, "192.0.2.7", &v4.sin_addr) == 1);
    auto a = cluster::endpoint::from(reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
    CHECK(a.is_v4());
    CHECK(a.port() == 54321);
    CHECK(a.bytes() == std::string_view("\xc0\x00\x02\x07", 4));
    char text[cluster::endpoint::max_text];
    CHECK(a.address(text) == 9);
    CHECK(std::string_view(text) == "192.0.2.7");
    CHECK(a.to_string() == "192.0.2.7:54321");

    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(8080);
    REQUIRE(::inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr) == 1);
    auto b = cluster::endpoint::from(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
    CHECK(b.is_v6());
    CHECK(b.address() == "2001:db8::1");
    CHECK(b.to_string() == "[2001:db8::1]:8080");
    CHECK(b.bytes().size() == 16);
    CHECK_FALSE(a == b);
  }

  TEST_CASE("endpoint: another family, or none, is empty") {
    sockaddr_un u{};
    u.sun_family = AF_UNIX;
    auto e = cluster::endpoint::from(reinterpret_cast<const sockaddr*>(&u), sizeof u);
    CHECK(e.empty());
    CHECK(e.to_string().empty());
    CHECK(e.address().empty());
    CHECK(e.port() == 0);
    CHECK(cluster::endpoint::from(nullptr, 0).empty());
    CHECK(cluster::endpoint::from(reinterpret_cast<const sockaddr*>(&u), 1).empty());  // too short for any family
    CHECK(cluster::endpoint{} == e);
  }

  TEST_CASE("endpoint: a request on a connection without a socket address has empty ends") {
    cluster::endpoint seen_peer, seen_local;
    bool called = false;
    auto handler = [&](const cluster::request& req) {
      called = true;
      seen_peer = req.peer();
      seen_local = req.local();
      return cluster::response::text("ok");
    };
    cluster::options opts;
    test_support::serve_in_memory(handler, opts, {"GET / HTTP/1.1\r\nHost: h\r\n\r\n"});
    CHECK(called);
    CHECK(seen_peer.empty());
    CHECK(seen_local.empty());
  }
}
