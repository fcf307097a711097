// The admin endpoint: served by the master's own io_context on its own
// address (TCP or a Unix socket), through the same HTTP connection code,
// parser and limits as the workers.
#pragma once

#include <cluster/detail/accept_backoff.hpp>
#include <cluster/detail/asio.hpp>
#include <cluster/detail/connection.hpp>
#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/options.hpp>

#include <functional>
#include <memory>
#include <string>

#include <cstring>

#include <sys/stat.h>
#include <sys/un.h>

namespace cluster::detail {

/// The admin HTTP server. `Render` answers a request: response(const request&).
class admin_server {
 public:
  using render_fn = std::function<response(const request&)>;

  /// The two server_states must outlive `io`: connections still suspended
  /// when `io` is destroyed unlink themselves from them.
  admin_server(asio::io_context& io, server_state& tcp_state, server_state& local_state, const admin_address& where,
               render_fn render)
      : io_(io), tcp_state_(tcp_state), local_state_(local_state), render_(std::move(render)), tcp_(io), local_(io) {
    if (where.unix_socket) {
      path_ = where.path;
      struct stat st{};
      // A socket left by an earlier run would make bind fail; only a socket
      // is removed, never another kind of file.
      if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path_.c_str());
      asio::local::stream_protocol::endpoint ep(path_);
      local_.open(ep.protocol());
      asio::error_code ec;
      local_.bind(ep, ec);
      if (ec) throw std::system_error(ec, "cluster: cannot listen for admin on unix:" + path_);
      ::chmod(path_.c_str(), 0600);  // the endpoint can reload and scale: owner only
      local_.listen(asio::socket_base::max_listen_connections);
      url_ = "unix:" + path_;
    } else {
      listen_address address = resolve_listen_address(where.host, where.port);
      adopt(open_listener(address, where.port, 64, /*reuseport=*/false), false);
    }
  }

  /// Serves on `fd`, a listening socket (TCP or Unix) the master adopted:
  /// handed over by an old master, or passed by the service manager. A Unix
  /// socket's path is removed at exit only when `owns_path`.
  admin_server(asio::io_context& io, server_state& tcp_state, server_state& local_state, int fd, bool owns_path,
               render_fn render)
      : io_(io), tcp_state_(tcp_state), local_state_(local_state), render_(std::move(render)), tcp_(io), local_(io) {
    adopt(fd, owns_path);
  }

  ~admin_server() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  /// The listening socket, to hand over to a new master.
  int listening_fd() noexcept { return tcp_.is_open() ? tcp_.native_handle() : local_.native_handle(); }

  /// A new master serves the Unix socket's path now: leave it at exit.
  void release_path() noexcept { path_.clear(); }

  /// A new master took the service over (binary upgrade): it answers the
  /// admin endpoint from now on, so stop accepting, leave the path, and
  /// close each open connection after its next answer. A connection is
  /// not closed while it may carry a request this master has not read
  /// yet: a probe accepted just before would then get no answer at all.
  void hand_over() {
    asio::error_code ignored;
    tcp_.close(ignored);
    local_.close(ignored);
    for (server_state* state : {&tcp_state_, &local_state_}) state->draining = true;
    release_path();
  }

  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  /// "http://127.0.0.1:9090" or "unix:/run/app.sock".
  const std::string& url() const noexcept { return url_; }

  void start() {
    if (tcp_.is_open()) asio::co_spawn(io_, accept_loop(tcp_, tcp_state_), asio::detached);
    if (local_.is_open()) asio::co_spawn(io_, accept_loop(local_, local_state_), asio::detached);
  }

  /// In a freshly forked worker: close the master's admin sockets, or a
  /// worker would keep an admin client's connection open after the master
  /// closed it.
  void close_descriptors_in_child() noexcept {
    if (tcp_.is_open()) ::close(tcp_.native_handle());
    if (local_.is_open()) ::close(local_.native_handle());
    close_connections(tcp_state_);
    close_connections(local_state_);
  }

 private:
  void adopt(int fd, bool owns_path) {
    listen_address a = address_of(fd);
    if (a.family() == AF_UNIX) {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&a.storage);
      std::string path(un->sun_path, ::strnlen(un->sun_path, sizeof un->sun_path));
      local_.assign(asio::local::stream_protocol(), fd);
      url_ = "unix:" + path;
      if (owns_path) path_ = path;
    } else {
      tcp_.assign(a.family() == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd);
      url_ = "http://" + a.to_string(bound_port(fd));
    }
  }

  static void close_connections(server_state& state) noexcept {
    state.connections.for_each([](open_connection& c) { ::close(c.native_handle()); });
  }

  template <class Acceptor>
  asio::awaitable<void> accept_loop(Acceptor& acceptor, server_state& state) {
    accept_backoff backoff;
    asio::steady_timer pause(io_);
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        // Out of descriptors: the master must not spin on its readable
        // admin socket (it supervises); pause, longer each time.
        auto d = backoff.failed(ec);
        if (!d.log.empty()) log_line("master", "admin " + d.log);
        if (d.pause.count() != 0) {
          pause.expires_after(d.pause);
          co_await pause.async_wait(use_tuple);
        }
        continue;
      }
      if (backoff.failures() != 0) log_line("master", "admin " + backoff.succeeded());
      using connection_type = basic_connection<std::decay_t<decltype(socket)>>;
      auto c = connection_type::open(std::move(socket), state);
      asio::co_spawn(io_, connection_type::serve(std::move(c), render_), asio::detached);
    }
  }

  asio::io_context& io_;
  server_state& tcp_state_;  // one per listener
  server_state& local_state_;
  render_fn render_;
  asio::ip::tcp::acceptor tcp_;
  asio::local::stream_protocol::acceptor local_;
  std::string path_;
  std::string url_;
};

}  // namespace cluster::detail
