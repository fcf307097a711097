// A real load balancer in front of a fleet (fleet.hpp) for the fleet tests:
// Debian's HAProxy or nginx, started from the configuration shipped in
// examples/deploy/ (so the shipped files are the tested ones) with its
// placeholders filled in: HAProxy reads its "${NAME}"s from the environment
// itself; nginx's are substituted here, as envsubst would. It listens on a
// free port of 127.0.0.1, keeps its pid file, sockets and temporary files in
// its own temporary directory, attaches its log (errors and state changes)
// to every assertion that fails while it runs, and is killed by PID with its
// workers (its process group) when it goes.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "free_port.hpp"
#include "http_client.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace test_support {

/// The balancers the fleet tests run, from Debian's packages.
enum class balancer_kind {
  haproxy,  ///< /usr/sbin/haproxy, examples/deploy/haproxy.cfg: active checks of /readyz
  nginx,    ///< /usr/sbin/nginx (nginx-light), examples/deploy/nginx.conf: passive checks only
};

inline const char* name_of(balancer_kind kind) { return kind == balancer_kind::haproxy ? "HAProxy" : "nginx"; }

/// One host as a balancer's configuration names it.
struct backend {
  std::string address;  ///< its service address, e.g. 127.0.0.2
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;  ///< its admin endpoint, on the same address
};

/// A running balancer spreading requests over `backends` (the shipped
/// configurations name three: app1, app2, app3).
class balancer_process {
 public:
  static constexpr std::size_t hosts_in_config = 3;
  static constexpr auto start_timeout = 10s;

  /// Writes the configuration, starts the balancer and waits until it
  /// accepts connections (HAProxy: and sees every host UP); throws with its
  /// log if it does not within start_timeout, or if it is not installed.
  balancer_process(balancer_kind kind, const std::vector<backend>& backends)
      : kind_(kind), dir_(kind == balancer_kind::haproxy ? "haproxy" : "nginx"), port_(free_port()) {
    if (backends.size() != hosts_in_config)
      throw std::invalid_argument("the configurations in examples/deploy/ name " + std::to_string(hosts_in_config) +
                                  " hosts");
    std::map<std::string, std::string> values{{"LISTEN", "127.0.0.1:" + std::to_string(port_)},
                                              {"RUN_DIR", dir_.path().string()}};
    for (std::size_t i = 0; i < backends.size(); ++i) {
      const std::string app = "APP" + std::to_string(i + 1);
      values[app] = backends[i].address + ":" + std::to_string(backends[i].port);
      values[app + "_ADMIN_PORT"] = std::to_string(backends[i].admin_port);
    }
    const std::string shipped = binary_from_env("CLUSTER_DEPLOY_EXAMPLES") + "/" + config_name();
    if (kind_ == balancer_kind::haproxy) {
      std::vector<std::string> env;
      for (const auto& [name, value] : values) env.push_back(name + "=" + value);
      child_.emplace(std::vector<std::string>{executable(), "-db", "-f", shipped}, output::capture, output::capture,
                     env);
    } else {
      const std::string config = dir_ / "nginx.conf";
      std::ofstream(config) << substituted(read_file(shipped), values);
      child_.emplace(std::vector<std::string>{executable(), "-e", "stderr", "-p", dir_.path().string(), "-c", config,
                                              "-g", "daemon off;"},
                     output::capture, output::capture);
    }
    const bool ready = wait_until(
        [&] {
          if (child_->wait_exit(0ms)) return false;
          if (!accepts_connections()) return false;
          if (kind_ == balancer_kind::nginx) return true;
          for (std::size_t i = 1; i <= backends.size(); ++i)
            if (server_status("app" + std::to_string(i)) != "UP") return false;
          return true;
        },
        start_timeout, 20ms);
    if (!ready)
      throw std::runtime_error(std::string(name_of(kind_)) + " did not start (every host UP) within " +
                               std::to_string(start_timeout.count()) + " s; its log:\n" + log());
  }

  balancer_process(const balancer_process&) = delete;
  balancer_process& operator=(const balancer_process&) = delete;

  balancer_kind kind() const noexcept { return kind_; }
  /// Where clients connect, on 127.0.0.1.
  std::uint16_t port() const noexcept { return port_; }
  /// What it logged so far: errors, failed requests, hosts going DOWN and UP.
  std::string log() const { return child_ ? child_->stderr_text() : "(not started)"; }

  /// HAProxy's view of host `server` (app1, app2, ...) from its stats
  /// socket: "UP", "DOWN", "UP 1/2" (going down), "DOWN 1/2" (going up),
  /// "MAINT"...; empty if the socket does not answer.
  std::string server_status(const std::string& server) const { return stat_field(server, "status"); }

  /// Requests HAProxy is forwarding to `server` now (its `scur`); -1 if the
  /// socket does not answer.
  long server_sessions(const std::string& server) const {
    const std::string v = stat_field(server, "scur");
    return v.empty() ? -1 : std::stol(v);
  }

  /// Waits up to `timeout` for HAProxy to show `server` in `status`.
  bool wait_server_status(const std::string& server, const std::string& status,
                          std::chrono::milliseconds timeout) const {
    return wait_until([&] { return server_status(server) == status; }, timeout, 10ms);
  }

 private:
  static constexpr auto socket_timeout = 1s;

  const char* config_name() const { return kind_ == balancer_kind::haproxy ? "haproxy.cfg" : "nginx.conf"; }
  const char* executable() const { return kind_ == balancer_kind::haproxy ? "/usr/sbin/haproxy" : "/usr/sbin/nginx"; }

  static std::string read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Every ${NAME} of `text` replaced by its value; throws on one without.
  static std::string substituted(std::string text, const std::map<std::string, std::string>& values) {
    for (std::size_t at = text.find("${"); at != std::string::npos; at = text.find("${", at)) {
      const auto end = text.find('}', at);
      if (end == std::string::npos) throw std::runtime_error("unterminated ${ in the configuration");
      const auto value = values.find(text.substr(at + 2, end - at - 2));
      if (value == values.end()) throw std::runtime_error("no value for " + text.substr(at, end - at + 1));
      text.replace(at, end - at + 1, value->second);
      at += value->second.size();
    }
    return text;
  }

  bool accepts_connections() const {
    try {
      http_client probe(port_, 100ms);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  // One field of `server`'s line in backend "app" of HAProxy's "show stat"
  // CSV, whose first line names the fields ("# pxname,svname,...").
  std::string stat_field(const std::string& server, const std::string& field) const {
    std::istringstream csv(stats_command("show stat\n"));
    std::string header;
    if (!std::getline(csv, header) || !header.starts_with("# ")) return {};
    const auto columns = split(header.substr(2));
    std::size_t column = 0;
    while (column < columns.size() && columns[column] != field) ++column;
    std::string line;
    for (int i = 0; i < 1000 && std::getline(csv, line); ++i) {
      const auto cells = split(line);
      if (cells.size() > column && cells[0] == "app" && cells[1] == server) return cells[column];
    }
    return {};
  }

  static std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> cells;
    std::istringstream in(line);
    for (std::string cell; std::getline(in, cell, ',');) cells.push_back(cell);
    return cells;
  }

  // Sends `command` to HAProxy's stats socket and reads the answer until it
  // closes the connection; empty on any error.
  std::string stats_command(const std::string& command) const {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir_ / "haproxy.sock";
    if (!fd || path.size() >= sizeof addr.sun_path) return {};
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return {};
    if (::send(fd.get(), command.data(), command.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(command.size()))
      return {};
    std::string answer;
    const auto deadline = test_clock::now() + socket_timeout;
    for (int i = 0; i < 10'000; ++i) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - test_clock::now());
      pollfd p{fd.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      char buf[4096];
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n == 0) return answer;
      if (n < 0) return {};
      answer.append(buf, static_cast<std::size_t>(n));
    }
    return {};
  }

  struct log_context {
    const balancer_process* self;
    void operator()(std::ostream* s) const { *s << name_of(self->kind_) << " log:\n" << self->log(); }
  };

  balancer_kind kind_;
  temp_dir dir_;
  std::uint16_t port_;
  std::optional<child_process> child_;  // set once constructed; its destructor kills the group
  doctest::detail::ContextScope<log_context> log_scope_{log_context{this}};  // last: gone first
};

}  // namespace test_support
