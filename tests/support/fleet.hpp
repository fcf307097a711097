// A fleet for the fleet tests: N hosts, each one cluster (a cluster_process)
// on its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all
// of 127.0.0.0/8 to lo, so they need no setup) with its admin endpoint on
// the same address, run from one copy of the program in the fleet's
// temporary directory (so that a test can install another build over it and
// upgrade the hosts one by one). A host can be stopped, upgraded (SIGUSR2),
// killed (SIGKILL of its master) or frozen (SIGSTOP of all its processes)
// and started again on the same address and ports, where its balancer
// (balancer.hpp) expects it. When the fleet goes, every process of every
// host goes with it, frozen ones included (SIGCONT first), and the new
// masters of upgrades are reaped by PID.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "balancer.hpp"
#include "cluster_process.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace test_support {

/// How the hosts of a fleet run.
struct host_setup {
  program binary = program::lifecycle;       ///< what each host runs (copied into the fleet's directory)
  int workers = 2;                           ///< per host
  std::chrono::milliseconds drain_delay{0};  ///< --drain-delay: serving on after SIGTERM while balancers notice
};

/// One host: a cluster master and its workers on `address`.
class fleet_host {
 public:
  static constexpr auto exit_timeout = 15s;

  /// Starts the host on `address` with ports the kernel picks, ready when
  /// it returns; throws as cluster_process does.
  fleet_host(std::string name, const std::string& address, const std::string& program_file, const host_setup& setup)
      : name_(std::move(name)),
        setup_(setup),
        process_(program_file, setup.workers, arguments(address, 0), {}, {}, listen_at{address, 0}),
        master_(process_.pid()),
        admin_port_(process_.admin_port()) {}

  fleet_host(const fleet_host&) = delete;
  fleet_host& operator=(const fleet_host&) = delete;

  /// Thaws the host if it is frozen, then kills it (cluster_process kills
  /// its process group) and reaps a master adopted after an upgrade.
  ~fleet_host() {
    ::kill(-process_.pid(), SIGCONT);
    if (master_ != process_.pid()) {
      ::kill(-process_.pid(), SIGKILL);
      reap_orphan(master_, 5s);
    }
  }

  /// Its name in the balancers' configurations (app1, app2, ...).
  const std::string& name() const noexcept { return name_; }
  const std::string& address() const noexcept { return process_.host(); }
  std::uint16_t port() const noexcept { return process_.port(); }
  std::uint16_t admin_port() const noexcept { return admin_port_; }
  backend as_backend() const { return {address(), port(), admin_port_}; }
  /// Its master now (a new one after each upgrade).
  pid_t master() const noexcept { return master_; }
  /// Its log, earlier runs and upgrades included.
  std::string log() const { return process_.stderr_text(); }

  /// Sends `signo` to the master.
  void signal(int signo) const { ::kill(master_, signo); }

  /// Waits up to `timeout` for the master to exit and reaps it; its wait
  /// status, if it did. The master is our child until its first upgrade,
  /// then an orphan adopted by this process (the fleet is a subreaper).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    if (master_ == process_.pid()) return process_.wait_exit(timeout);
    return reap_orphan(master_, timeout);
  }

  /// Kills the master with SIGKILL (its workers die with it:
  /// PR_SET_PDEATHSIG), reaps it and waits until no process of the host is
  /// left; true if none is.
  bool kill() {
    ::kill(master_, SIGKILL);
    if (!wait_exit(exit_timeout)) return false;
    return wait_until([&] { return group_members(process_.pid()).empty(); }, exit_timeout);
  }

  /// Starts the host again on the same address and ports; throws as the
  /// constructor does.
  void restart() {
    process_.restart(arguments(address(), admin_port_));
    master_ = process_.pid();
  }

  /// Binary upgrade: SIGUSR2 to the master, then waits for the new master's
  /// ready line and for the old master to exit. Returns the old master's
  /// wait status; throws if the new master is not ready in time.
  std::optional<int> upgrade() {
    ::kill(master_, SIGUSR2);
    auto line = process_.next_stdout_line(exit_timeout);
    const pid_t next = line ? master_in_ready_line(*line) : 0;
    if (next <= 0) throw std::runtime_error(name_ + ": no ready line from a new master after SIGUSR2");
    auto status = wait_exit(exit_timeout);
    master_ = next;
    return status;
  }

  /// SIGSTOP to every process of the host: it hangs, its sockets stay open.
  void freeze() const { ::kill(-process_.pid(), SIGSTOP); }
  /// SIGCONT to every process of the host.
  void thaw() const { ::kill(-process_.pid(), SIGCONT); }

  /// GET `target` on the admin endpoint; its status and body.
  http_response admin_get(const std::string& target) const {
    http_client admin(address(), admin_port_);
    admin.send(get_request(target));
    return admin.read_response();
  }

  /// Requests its workers answered since its master started: the sum of
  /// cluster_requests_total over its slots, from the admin endpoint.
  std::uint64_t requests_served() const {
    std::istringstream metrics(admin_get("/metrics").body);
    std::uint64_t total = 0;
    std::string line;
    for (int i = 0; i < 100'000 && std::getline(metrics, line); ++i) {
      if (!line.starts_with("cluster_requests_total{")) continue;
      total += std::stoull(line.substr(line.rfind(' ') + 1));
    }
    return total;
  }

 private:
  std::vector<std::string> arguments(const std::string& address, std::uint16_t admin_port) const {
    std::vector<std::string> args{"--admin", address + ":" + std::to_string(admin_port)};
    if (setup_.drain_delay.count() > 0)
      args.insert(args.end(), {"--drain-delay", std::to_string(setup_.drain_delay.count())});
    return args;
  }

  std::string name_;
  host_setup setup_;
  cluster_process process_;
  pid_t master_;
  std::uint16_t admin_port_;
};

/// `count` hosts on 127.0.0.2, 127.0.0.3, ..., named app1, app2, ...
class fleet {
 public:
  fleet(int count, const host_setup& setup) : dir_("fleet"), program_file_(dir_ / "app") {
    install(path_of(setup.binary));
    for (int i = 0; i < count; ++i)
      hosts_.push_back(std::make_unique<fleet_host>("app" + std::to_string(i + 1), "127.0.0." + std::to_string(i + 2),
                                                    program_file_, setup));
  }

  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  /// The hosts go in the reverse order of their start: each attached its
  /// log to doctest's stack of contexts.
  ~fleet() {
    while (!hosts_.empty()) hosts_.pop_back();
  }

  std::size_t size() const noexcept { return hosts_.size(); }
  fleet_host& operator[](std::size_t i) { return *hosts_.at(i); }

  /// The hosts as a balancer's configuration names them.
  std::vector<backend> backends() const {
    std::vector<backend> all;
    for (const auto& h : hosts_) all.push_back(h->as_backend());
    return all;
  }

  /// Installs `build` as the hosts' program (install_program): the next
  /// start or upgrade of a host runs it.
  void install(const std::string& build) { install_program(build, program_file_); }

 private:
  subreaper reaper_;  // first: adopts upgraded masters for as long as any host lives
  temp_dir dir_;
  std::string program_file_;
  std::vector<std::unique_ptr<fleet_host>> hosts_;
};

}  // namespace test_support
