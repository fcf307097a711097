// Integration tests of what an operator sets on a fleet host: the workers'
// user and group, their CPUs, and the descriptor limit the master raises
// for max_connections. CI runs as root, which --user needs.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/http_client.hpp"
#include "support/proc.hpp"
#include "support/process.hpp"

#include <set>
#include <string>

#include <sched.h>
#include <unistd.h>

using namespace test_support;

namespace {

// "Uid: 65534 65534 65534 65534": real, effective, saved and file-system ids.
std::string ids(unsigned id) {
  const std::string n = std::to_string(id);
  return n + "\t" + n + "\t" + n + "\t" + n;
}

bool answers_hello(std::uint16_t port) {
  http_client c(port);
  c.send(get_request());
  return c.read_response().body == "Hello World\n";
}

}  // namespace

TEST_SUITE("deploy") {
  TEST_CASE("--user nobody --group nogroup: workers run as them from the start, the master stays root") {
    REQUIRE(::geteuid() == 0);  // CI runs as root; the option needs it
    cluster_process cluster(program::hello, 2, {"--user", "nobody", "--group", "nogroup"});
    auto workers = cluster.worker_pids();
    REQUIRE(workers.size() == 2);
    for (pid_t w : workers) {
      CAPTURE(w);
      CHECK(status_text(w, "Uid") == ids(65534));
      CHECK(status_text(w, "Gid") == ids(65534));
      CHECK(status_text(w, "Groups") == "65534");
    }
    CHECK(status_text(cluster.pid(), "Uid") == ids(0));
    CHECK(answers_hello(cluster.port()));
    CHECK(cluster.stderr_text().find("workers run as nobody (uid 65534, gid 65534)") != std::string::npos);
    // A respawned worker drops its rights as well.
    ::kill(workers[0], SIGKILL);
    REQUIRE(wait_until([&] { return cluster.workers_ready(2, {workers[0]}); }, 10s));
    for (pid_t w : cluster.worker_pids()) CHECK(status_text(w, "Uid") == ids(65534));
  }

  TEST_CASE("--cpu-affinity auto: each worker is pinned to one CPU of its own while there are enough") {
    cpu_set_t allowed;
    REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    const int cpus = CPU_COUNT(&allowed);
    const int workers = std::min(cpus, 4);
    cluster_process cluster(program::hello, workers, {"--cpu-affinity", "auto"});
    std::set<std::string> pinned;
    for (pid_t w : cluster.worker_pids()) {
      const std::string list = status_text(w, "Cpus_allowed_list");
      CAPTURE(list);
      CHECK(list.find_first_not_of("0123456789") == std::string::npos);  // one CPU, not a range or a list
      pinned.insert(list);
    }
    CHECK(pinned.size() == static_cast<std::size_t>(workers));
    const bool master_pinned = status_text(cluster.pid(), "Cpus_allowed_list").find_first_of(",-") == std::string::npos;
    CHECK((!master_pinned || cpus == 1));  // the master is not pinned
    CHECK(answers_hello(cluster.port()));
  }

  TEST_CASE("the master raises RLIMIT_NOFILE for max_connections, and every worker inherits it") {
    // A soft limit of 256 under a hard one of 8192, as a login shell often has.
    cluster_process cluster(program::hello, 2, {"--max-connections", "3000"}, {},
                            {"/usr/bin/prlimit", "--nofile=256:8192"});
    const long need = 3000 + 3 * 2 + 64;
    CHECK(open_files_limit(cluster.pid()) == need);
    for (pid_t w : cluster.worker_pids()) CHECK(open_files_limit(w) == need);
    CHECK(cluster.stderr_text().find("RLIMIT_NOFILE raised from 256 to " + std::to_string(need) +
                                     " for max_connections=3000") != std::string::npos);
  }

  TEST_CASE("a descriptor limit that cannot be raised far enough is reported, naming the option and the limit") {
    cluster_process cluster(program::hello, 1, {"--max-connections", "3000"}, {}, with_descriptor_limit(256));
    CHECK(cluster.stderr_text().find("error: max_connections needs 3067 descriptors per process but RLIMIT_NOFILE "
                                     "stays at 256 (hard limit 256)") != std::string::npos);
    CHECK(answers_hello(cluster.port()));  // it still serves, as nginx does
  }
}
