// Integration tests of the deploy path of one host: the binary upgrade
// (SIGUSR2) with its pid file and its rollbacks, systemd's notifications
// received on a fake NOTIFY_SOCKET, socket activation through Debian's
// systemd-socket-activate and through a socket this test holds across a
// stop and a start, and a graceful stop that fails no request that reached
// the server. The program is tests/servers/lifecycle.cpp, copied into a
// temporary directory so that a test can install another build over it.
#include <doctest/doctest.h>

#include "support/cluster_process.hpp"
#include "support/free_port.hpp"
#include "support/http_client.hpp"
#include "support/load.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace test_support;
namespace fs = std::filesystem;

namespace {

std::string version_of(std::uint16_t port) {
  http_client c(port);
  c.send(get_request("/version"));
  return c.read_response().body;
}

pid_t pid_in_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  return (in >> pid) ? static_cast<pid_t>(pid) : 0;
}

load_options gets_and_posts() {
  load_options o;
  o.threads = 4;
  o.post_every = 3;
  o.read_timeout = 5s;
  o.max_duration = 40s;
  return o;
}

// After a SIGUSR2 whose new master fails: the rollback is logged, the old
// master serves on under the load, and no request failed or was refused.
void expect_rolled_back_under_load(cluster_process& cluster, load_client& load) {
  REQUIRE(cluster.wait_for_log("binary upgrade rolled back", 10s));
  const auto ok_after = load.ok();
  CHECK(wait_until([&] { return load.ok() >= ok_after + 100; }, 5s));
  const load_result& r = load.stop();
  INFO(r.summary());
  INFO("log:\n" << cluster.stderr_text());
  CHECK(r.failed == 0);
  CHECK(r.refused == 0);
}

// A datagram socket standing in for systemd's notification socket.
class fake_notify_socket {
 public:
  explicit fake_notify_socket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~fake_notify_socket() { ::close(fd_); }
  fake_notify_socket(const fake_notify_socket&) = delete;
  fake_notify_socket& operator=(const fake_notify_socket&) = delete;

  // Every datagram received so far, WATCHDOG=1 and STATUS-only ones counted apart.
  void collect() {
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) return;
      std::string d(buf, static_cast<std::size_t>(n));
      if (d == "WATCHDOG=1")
        ++watchdogs;
      else if (!d.starts_with("STATUS="))
        events.push_back(d);
    }
  }
  bool wait_for(const std::string& prefix, std::chrono::milliseconds timeout) {
    return wait_until(
        [&] {
          collect();
          return std::ranges::any_of(events, [&](const std::string& e) { return e.starts_with(prefix); });
        },
        timeout);
  }

  std::vector<std::string> events;
  int watchdogs = 0;

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

TEST_SUITE("deploy") {
  TEST_CASE("a binary upgrade (SIGUSR2) under GETs and POSTs puts the new build in service and fails no request") {
    subreaper reaper;
    temp_dir dir("deploy");
    const std::string app = dir / "app", pid_path = dir / "app.pid";
    install_program(path_of(program::lifecycle), app);
    cluster_process cluster(app, 2, {"--pid-file", pid_path});
    CHECK(pid_in_file(pid_path) == cluster.pid());
    CHECK(version_of(cluster.port()) == "version 1\n");
    load_client load(cluster.port(), gets_and_posts());
    REQUIRE(wait_until([&] { return load.ok() >= 200; }, 5s));

    install_program(binary_from_env("CLUSTER_LIFECYCLE_V2"), app);
    cluster.signal(SIGUSR2);
    auto line = cluster.next_stdout_line(15s);
    REQUIRE(line);
    const pid_t new_master = master_in_ready_line(*line);
    CHECK(new_master > 0);
    CHECK(new_master != cluster.pid());
    auto old_status = cluster.wait_exit(15s);  // the old master drains and exits
    const auto ok_at_handover = load.ok();
    CHECK(wait_until([&] { return load.ok() >= ok_at_handover + 200; }, 5s));
    const load_result& r = load.stop();
    INFO(r.summary());
    INFO("log:\n" << cluster.stderr_text());

    REQUIRE(old_status);
    CHECK(WIFEXITED(*old_status));
    CHECK(WEXITSTATUS(*old_status) == 0);
    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    CHECK(r.posts_ok > 0);
    for (int i = 0; i < 10; ++i) CHECK(version_of(cluster.port()) == "version 2\n");
    CHECK(pid_in_file(pid_path) == new_master);
    CHECK_FALSE(fs::exists(pid_path + ".oldbin"));
    CHECK(cluster.stderr_text().find("binary upgrade: the new master (pid " + std::to_string(new_master) +
                                     ") is ready") != std::string::npos);
    CHECK(stop_orphan(new_master));
    CHECK_FALSE(fs::exists(pid_path));  // the new master removes its own pid file
    CHECK(group_members(cluster.pid()).empty());  // nothing left behind
  }

  TEST_CASE("/readyz answers 200 on every probe through a binary upgrade: the old master leaves the admin socket") {
    subreaper reaper;
    temp_dir dir("deploy");
    const std::string app = dir / "app";
    install_program(path_of(program::lifecycle), app);
    cluster_process cluster(app, 2, {"--admin", "127.0.0.1:0"});
    const std::uint16_t admin = cluster.admin_port();
    std::atomic<bool> done{false};
    std::atomic<int> probes{0}, not_ready{0};
    std::string first_refusal;
    std::thread prober([&] {
      for (int i = 0; i < 100'000 && !done; ++i) {
        try {
          http_client c(admin, 2s);
          c.send(get_request("/readyz"));
          auto r = c.read_response(2s);
          ++probes;
          if (r.status != 200 && not_ready++ == 0) first_refusal = std::to_string(r.status) + " " + r.body;
        } catch (const std::exception& e) {
          if (not_ready++ == 0) first_refusal = e.what();
        }
      }
    });
    REQUIRE(wait_until([&] { return probes >= 20; }, 5s));
    install_program(binary_from_env("CLUSTER_LIFECYCLE_V2"), app);
    cluster.signal(SIGUSR2);
    auto line = cluster.next_stdout_line(15s);
    const pid_t new_master = line ? master_in_ready_line(*line) : 0;
    auto old_status = cluster.wait_exit(15s);
    const int at_exit = probes;
    CHECK(wait_until([&] { return probes >= at_exit + 20; }, 5s));  // the new master answers on
    done = true;
    prober.join();
    INFO("probes: " << probes << ", first refusal: " << first_refusal);
    CHECK(line);
    CHECK(old_status);
    CHECK(not_ready == 0);
    CHECK(stop_orphan(new_master));
  }

  TEST_CASE("a new build whose master cannot start is rolled back; the old master keeps serving") {
    subreaper reaper;
    temp_dir dir("deploy");
    const std::string app = dir / "app", pid_path = dir / "app.pid";
    install_program(path_of(program::lifecycle), app);
    cluster_process cluster(app, 2, {"--pid-file", pid_path});
    load_client load(cluster.port(), gets_and_posts());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    install_program("/bin/false", app);  // exits 1 at once
    cluster.signal(SIGUSR2);
    expect_rolled_back_under_load(cluster, load);
    CHECK(cluster.stderr_text().find("exited with code 1 before it was ready") != std::string::npos);
    CHECK(version_of(cluster.port()) == "version 1\n");
    CHECK(pid_in_file(pid_path) == cluster.pid());  // PATH.oldbin renamed back
    CHECK_FALSE(fs::exists(pid_path + ".oldbin"));
    CHECK_FALSE(cluster.wait_exit(0ms));
  }

  TEST_CASE("a new build whose workers never become ready is killed at start_timeout; the old one serves on") {
    subreaper reaper;
    temp_dir dir("deploy");
    const std::string app = dir / "app", marker = dir / "fail-start";
    install_program(path_of(program::lifecycle), app);
    cluster_process cluster(app, 2, {"--start-timeout", "1500"}, {"CLUSTER_TEST_FAIL_START_IF_EXISTS=" + marker});
    load_client load(cluster.port(), gets_and_posts());
    REQUIRE(wait_until([&] { return load.ok() >= 100; }, 5s));

    std::ofstream(marker).put('x');  // the new master's workers refuse to start
    install_program(binary_from_env("CLUSTER_LIFECYCLE_V2"), app);
    cluster.signal(SIGUSR2);
    expect_rolled_back_under_load(cluster, load);
    CHECK(version_of(cluster.port()) == "version 1\n");
    // Only the old master and its two workers are left in the group.
    CHECK(wait_until([&] { return group_members(cluster.pid()).size() == 3; }, 5s));
  }

  TEST_CASE("systemd notifications: READY when every slot serves, RELOADING then READY, WATCHDOG, MAINPID, STOPPING") {
    subreaper reaper;
    temp_dir dir("deploy");
    const std::string app = dir / "app", socket_path = dir / "notify";
    install_program(path_of(program::lifecycle), app);
    fake_notify_socket systemd(socket_path);
    cluster_process cluster(app, 2, {}, {"NOTIFY_SOCKET=" + socket_path, "WATCHDOG_USEC=400000"});
    REQUIRE(systemd.wait_for("READY=1", 5s));
    // WATCHDOG=1 every 200 ms (half of WATCHDOG_USEC) while the master's loop runs.
    CHECK(wait_until([&] { systemd.collect(); return systemd.watchdogs >= 3; }, 3s));
    REQUIRE(systemd.events.size() == 1);
    CHECK(systemd.events[0] == "READY=1\nSTATUS=2/2 workers ready, 0 restarts");

    cluster.signal(SIGHUP);
    REQUIRE(cluster.wait_for_log("reload finished", 10s));
    REQUIRE(wait_until([&] { systemd.collect(); return systemd.events.size() >= 3; }, 5s));
    CHECK(systemd.events[1].starts_with("RELOADING=1\nMONOTONIC_USEC="));
    CHECK(systemd.events[2].starts_with("READY=1\nSTATUS=2/2 workers ready"));

    install_program(binary_from_env("CLUSTER_LIFECYCLE_V2"), app);
    cluster.signal(SIGUSR2);
    auto line = cluster.next_stdout_line(15s);
    REQUIRE(line);
    const pid_t new_master = master_in_ready_line(*line);
    REQUIRE(systemd.wait_for("MAINPID=", 10s));
    REQUIRE(cluster.wait_exit(15s));
    CHECK(stop_orphan(new_master));
    systemd.collect();
    INFO("notifications:" << [&] {
      std::string s;
      for (const auto& e : systemd.events) s += "\n  " + e;
      return s;
    }());
    // After the reload: the new master's READY, the old master's MAINPID of
    // it and STOPPING (in the order the two masters sent them), then the new
    // master's STOPPING.
    std::vector<std::string> rest(systemd.events.begin() + 3, systemd.events.end());
    REQUIRE(rest.size() == 4);
    CHECK(rest[0].starts_with("READY=1"));
    CHECK(rest[1] == "MAINPID=" + std::to_string(new_master));
    CHECK(rest[2] == "STOPPING=1\nSTATUS=stopping: binary upgrade");
    CHECK(rest[3] == "STOPPING=1\nSTATUS=stopping: SIGTERM");
  }

  TEST_CASE("socket activation through systemd-socket-activate: the connection that started the service is served") {
    const std::uint16_t port = free_port(), admin_port = free_port();
    const std::string at = "127.0.0.1:" + std::to_string(port), admin_at = "127.0.0.1:" + std::to_string(admin_port);
    // The first connection makes systemd-socket-activate exec the cluster.
    std::optional<http_response> first;
    std::thread client([&] {
      for (int i = 0; i < 200 && !first; ++i) {
        try {
          http_client c(port, 10s);
          c.send(get_request("/version"));
          first = c.read_response(10s);
        } catch (const std::exception&) {
          std::this_thread::sleep_for(10ms);  // not listening yet
        }
      }
    });
    std::optional<cluster_process> cluster;
    try {
      cluster.emplace(path_of(program::lifecycle), 2, std::vector<std::string>{}, std::vector<std::string>{},
                      std::vector<std::string>{"/usr/bin/systemd-socket-activate", "-l", at, "-l", admin_at,
                                               "--fdname=http:admin"});
    } catch (...) {
      client.join();
      throw;
    }
    client.join();
    REQUIRE(first);
    CHECK(first->status == 200);
    CHECK(first->body == "version 1\n");
    CHECK(cluster->port() == port);  // the passed socket, not --port 0
    CHECK(cluster->admin_url() == "http://" + admin_at);
    http_client admin(admin_port);
    admin.send(get_request("/status?format=text"));
    CHECK(admin.read_response().status == 200);
    cluster->signal(SIGTERM);
    auto status = cluster->wait_exit(10s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 0);
  }

  TEST_CASE("with a socket held across a stop and a start (socket activation), no connection is refused or fails") {
    // This test plays the service manager: it holds the listening socket and
    // passes it as descriptor 3 with LISTEN_FDS and LISTEN_PID.
    int held = ::socket(AF_INET, SOCK_STREAM, 0);  // inherited by the clusters, not close-on-exec
    REQUIRE(held >= 0);
    struct closer {
      int fd;
      ~closer() { ::close(fd); }
    } close_held{held};
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(held, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(held, 1024) == 0);
    ::getsockname(held, reinterpret_cast<sockaddr*>(&a), &len);
    const std::uint16_t port = ntohs(a.sin_port);
    const std::vector<std::string> pass_socket = {
        "/bin/sh", "-c",
        "exec 3<&" + std::to_string(held) + "; export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$0\" \"$@\""};

    std::optional<cluster_process> cluster;
    cluster.emplace(path_of(program::lifecycle), 2, std::vector<std::string>{}, std::vector<std::string>{},
                    pass_socket);
    REQUIRE(cluster->port() == port);
    load_client load(port, gets_and_posts());
    REQUIRE(wait_until([&] { return load.ok() >= 200; }, 5s));
    cluster->signal(SIGTERM);
    auto status = cluster->wait_exit(10s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 0);
    const std::string first_log = cluster->stderr_text();
    const auto ok_while_down = load.ok();
    cluster.reset();
    cluster.emplace(path_of(program::lifecycle), 2, std::vector<std::string>{}, std::vector<std::string>{},
                    pass_socket);
    CHECK(wait_until([&] { return load.ok() >= ok_while_down + 200; }, 5s));
    const load_result& r = load.stop();
    INFO(r.summary());
    INFO("first cluster's log:\n" << first_log);
    CHECK(r.failed == 0);
    CHECK(r.refused == 0);
    CHECK(r.connect_errors == 0);
    CHECK(r.posts_ok > 0);
  }

  TEST_CASE("a graceful stop under keep-alive load fails no request that reached the server; later ones are refused") {
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      cluster_process cluster(program::lifecycle, 2);
      load_client load(cluster.port(), gets_and_posts());
      REQUIRE(wait_until([&] { return load.ok() >= 300; }, 5s));
      cluster.signal(SIGTERM);
      auto status = cluster.wait_exit(10s);
      // Clients go on trying for a moment after the listeners are gone.
      const auto refused_at_exit = load.refused();
      CHECK(wait_until([&] { return load.refused() > refused_at_exit + 10; }, 5s));
      const load_result& r = load.stop();
      INFO(r.summary());
      INFO("log:\n" << cluster.stderr_text());
      REQUIRE(status);
      CHECK(WEXITSTATUS(*status) == 0);
      CHECK(r.failed == 0);
      CHECK(r.connect_errors == 0);
    }
  }
}
