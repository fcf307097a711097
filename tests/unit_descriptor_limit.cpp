// Unit tests: raising RLIMIT_NOFILE to what max_connections needs. Each case
// runs in a forked child, which may lower its own limits for good without
// touching the test process.
#include <doctest/doctest.h>

#include <cluster/detail/descriptor_limit.hpp>

#include <fstream>
#include <functional>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cluster::detail;

namespace {

// Runs `body` in a child; true when it returned true there.
bool in_child(const std::function<bool()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body() ? 0 : 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool set_limits(rlim_t soft, rlim_t hard) {
  rlimit l{soft, hard};
  return ::setrlimit(RLIMIT_NOFILE, &l) == 0;
}

// Whether this process has CAP_SYS_RESOURCE in its effective set (bit 24 of
// CapEff in /proc/self/status).
bool may_raise_hard_limit() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("CapEff:")) return (std::stoull(line.substr(7), nullptr, 16) >> 24) & 1;
  return false;
}

rlimit limits() {
  rlimit l{};
  ::getrlimit(RLIMIT_NOFILE, &l);
  return l;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("descriptor limit: what a worker needs is its connections plus a fixed headroom and three per slot") {
    CHECK(descriptors_needed(10'000, 4) == 10'000 + 12 + descriptor_headroom);
    CHECK(descriptors_needed(1, 1) == 1 + 3 + descriptor_headroom);
  }

  TEST_CASE("descriptor limit: the soft limit is raised to the need when the hard limit allows it") {
    CHECK(in_child([] {
      if (!set_limits(256, 4096)) return false;
      auto r = raise_descriptor_limit(3000);
      return r.before == 256 && r.now == 3000 && r.shortfall.empty() && limits().rlim_cur == 3000 &&
             limits().rlim_max == 4096;
    }));
  }

  TEST_CASE("descriptor limit: a limit already high enough is left alone, never lowered") {
    CHECK(in_child([] {
      if (!set_limits(5000, 8000)) return false;
      auto r = raise_descriptor_limit(3000);
      return r.before == 5000 && r.now == 5000 && r.shortfall.empty() && limits().rlim_cur == 5000;
    }));
  }

  TEST_CASE("descriptor limit: with CAP_SYS_RESOURCE (root, usually) the hard limit is raised too") {
    CHECK(in_child([] {
      if (!set_limits(256, 512)) return false;
      auto r = raise_descriptor_limit(3000);
      if (!may_raise_hard_limit()) return r.now == 512 && !r.shortfall.empty();  // e.g. a container without it
      return r.now == 3000 && r.shortfall.empty() && limits().rlim_max == 3000;
    }));
  }

  TEST_CASE("descriptor limit: without the right to raise the hard limit, it goes as far as allowed and says why") {
    CHECK(in_child([] {
      if (!set_limits(256, 512)) return false;
      // A user other than root has no CAP_SYS_RESOURCE.
      if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) return false;
      auto r = raise_descriptor_limit(3000);
      return r.now == 512 && limits().rlim_cur == 512 &&
             r.shortfall ==
                 "max_connections needs 3000 descriptors per process but RLIMIT_NOFILE stays at 512 (hard limit 512): "
                 "a worker cannot hold more than about 448 connections at once; raise the limit (LimitNOFILE=, "
                 "ulimit -Hn) or lower --max-connections";
    }));
  }
}
