// One real server connection (the worker's connection type on an asio TCP
// socket, 127.0.0.1, Nagle off as in a worker) served in a thread of its
// own, and a blocking client connected to it: for tests that need a kernel
// socket under the connection (sendfile, allocation counts).
#pragma once

#include <cluster/detail/connection.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>
#include <utility>

namespace test_support {

/// Serves one connection with `handler` (which must outlive it) in a server
/// thread, bounded: the io_context stops after 60 s whatever happens.
/// `on_thread_start` runs first in that thread. `client_rcvbuf`, when not 0,
/// is the client's SO_RCVBUF in bytes, set before it connects (a small one
/// keeps the server's writes blocked until the client reads). `opts` are the
/// server's options (timeouts, limits).
class loopback_server {
 public:
  using tcp = asio::ip::tcp;

  template <class Handler>
  explicit loopback_server(Handler& handler, std::function<void()> on_thread_start = {}, int client_rcvbuf = 0,
                           cluster::options opts = {})
      : opts_(std::move(opts)),
        state_(opts_),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        guard_(io_) {
    // As in cluster::run's processes: a write to a connection the client has
    // closed must fail with EPIPE, not kill the test binary (sendfile cannot
    // pass MSG_NOSIGNAL, and Asio's sends on io_uring do not).
    std::signal(SIGPIPE, SIG_IGN);
    const tcp::endpoint listening = acceptor_.local_endpoint();
    // Every asynchronous operation starts in the server thread: on io_uring
    // an operation's completion work goes to the thread that submitted it,
    // and would interrupt the test thread's blocking reads (EINTR).
    thread_ = std::thread([this, &handler, start = std::move(on_thread_start)] {
      if (start) start();
      guard_.expires_after(std::chrono::seconds(60));
      guard_.async_wait([this](const asio::error_code& ec) {
        if (!ec) io_.stop();
      });
      acceptor_.async_accept([this, &handler](const asio::error_code& ec, tcp::socket socket) {
        if (ec) return;
        asio::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);  // as a worker does
        auto c = cluster::detail::connection::open(std::move(socket), state_);
        asio::co_spawn(io_, cluster::detail::connection::serve(std::move(c), handler), asio::detached);
      });
      io_.run();
    });
    client_.open(tcp::v4());
    if (client_rcvbuf > 0) client_.set_option(asio::socket_base::receive_buffer_size(client_rcvbuf));
    client_.connect(listening);
    client_.set_option(tcp::no_delay(true));
    timeval tv{10, 0};  // a read that waits longer fails the test instead of hanging it
    ::setsockopt(client_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  ~loopback_server() {
    asio::error_code ignored;
    client_.close(ignored);  // the connection sees end of file and ends
    asio::post(io_, [this] {
      guard_.cancel();
      asio::error_code e;
      acceptor_.close(e);
    });
    thread_.join();
  }

  /// The blocking client end (reads time out after 10 s).
  tcp::socket& client() noexcept { return client_; }

 private:
  // The state outlives the io_context: a connection still pending when the
  // guard stopped the loop is destroyed with it, and gives its memory back
  // to the state's pool.
  cluster::options opts_;
  cluster::detail::server_state state_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  asio::steady_timer guard_;
  std::thread thread_;
  asio::io_context client_io_{1};  // the client is blocking, on the test thread
  tcp::socket client_{client_io_};
};

// The test thread's blocking calls on a client socket, made again when
// interrupted. In an io_uring build the kernel runs a ring operation's
// completion work on the thread that submitted it, interrupting whatever
// that thread is blocked in; a test that ran an io_context on this thread
// may leave such work behind it, and a recv on a socket with SO_RCVTIMEO is
// then not restarted but fails with EINTR.

/// read_some, again after EINTR.
inline std::size_t read_some(asio::ip::tcp::socket& socket, asio::mutable_buffer into, asio::error_code& ec) {
  for (;;) {
    std::size_t n = socket.read_some(into, ec);
    if (ec != asio::error::interrupted) return n;
  }
}

/// Writes all of `bytes` (a write interrupted after some bytes went out
/// returns their count; one before any fails with EINTR and is made again).
inline void write_all(asio::ip::tcp::socket& socket, std::string_view bytes, asio::error_code& ec) {
  for (std::size_t written = 0; written < bytes.size();) {
    written += socket.write_some(asio::buffer(bytes.data() + written, bytes.size() - written), ec);
    if (ec && ec != asio::error::interrupted) return;
  }
  ec.clear();
}

}  // namespace test_support
