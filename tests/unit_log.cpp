// Unit tests: lifecycle log lines in both styles, captured from stderr.
#include <doctest/doctest.h>

#include <cluster/detail/log.hpp>

#include "support/json_checker.hpp"

#include <algorithm>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace {

// What log_line writes to stderr in `style`.
std::string logged(cluster::detail::log_style style, std::string_view role, std::string_view message) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_NONBLOCK) == 0);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(fds[1], STDERR_FILENO);
  const auto before = cluster::detail::process_log_style();
  cluster::detail::process_log_style() = style;
  cluster::detail::log_line(role, message);
  cluster::detail::process_log_style() = before;
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  return out;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("log: a text line has the time, the pid, the role and the message") {
    const std::string line = logged(cluster::detail::log_style::text, "master", "worker 0 ready");
    CHECK(line.size() > 24);
    CHECK(line[10] == 'T');
    CHECK(line.find("Z cluster[" + std::to_string(::getpid()) + "] master: worker 0 ready\n") == 23);
  }

  TEST_CASE("log: a JSON line stays one valid object whatever the message holds") {
    const std::string hostile = std::string("quote \" backslash \\ newline\nnul ", 32) + std::string("\0 \xff\xc3(", 5);
    const std::string line = logged(cluster::detail::log_style::json, "worker 3", hostile);
    REQUIRE(line.ends_with("}\n"));
    CHECK(std::ranges::count(line, '\n') == 1);
    CHECK(test_support::valid_json(line.substr(0, line.size() - 1)));
    CHECK(line.find("\"pid\":" + std::to_string(::getpid()) + ",\"role\":\"worker 3\",\"message\":\"quote \\\" "
                    "backslash \\\\ newline\\u000anul \\u0000 \\ufffd\\ufffd(\"}") != std::string::npos);
  }
}
