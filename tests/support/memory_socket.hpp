// An in-memory stand-in for asio::ip::tcp::socket, so that a connection's
// whole state machine (parse, answer, serialise, stream, linger) runs without
// a network: reads return scripted chunks of input, one chunk (or what fits)
// per read, then end of file; writes are collected, at most `max_write` bytes
// per write to exercise partial writes. Used by the unit tests and the fuzzer.
#pragma once

#include <cluster/detail/connection.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace test_support {

/// What a memory_socket and the test share.
struct memory_wire {
  std::vector<std::string> input;  ///< chunks, one per read; empty chunks are skipped
  std::size_t next = 0;            ///< chunk to read next
  std::size_t offset = 0;          ///< bytes of that chunk already read
  std::string output;              ///< everything written
  std::size_t max_write = std::numeric_limits<std::size_t>::max();
  bool open = true;
  bool write_shut = false;  ///< shutdown(send) was called
  bool closed = false;      ///< close() was called
  std::size_t reads = 0;
  /// Reads that returned no byte (end of input, or a read offered no room);
  /// a connection that keeps reading without progress spins on a real socket.
  std::size_t idle_reads = 0;
  /// Past this many idle reads, reads fail (connection_aborted), so that a
  /// spinning connection ends and the test sees idle_reads.
  std::size_t max_idle_reads = 1000;
  std::size_t writes = 0;
  std::size_t sync_writes = 0;  ///< write_some() calls, would_block ones included
};

class memory_socket {
 public:
  using executor_type = asio::io_context::executor_type;

  memory_socket(asio::io_context& io, std::shared_ptr<memory_wire> wire)
      : executor_(io.get_executor()), wire_(std::move(wire)) {}

  executor_type get_executor() const noexcept { return executor_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          asio::error_code ec;
          std::size_t n = 0;
          memory_wire& w = *wire_;
          ++w.reads;
          while (w.next < w.input.size() && w.offset == w.input[w.next].size()) ++w.next, w.offset = 0;
          if (!w.open) {
            ec = asio::error::bad_descriptor;
          } else if (w.next < w.input.size()) {
            const std::string& chunk = w.input[w.next];
            n = asio::buffer_copy(b, asio::buffer(chunk.data() + w.offset, chunk.size() - w.offset));
            w.offset += n;
          } else {
            ec = asio::error::eof;
          }
          if (n == 0 && ++w.idle_reads > w.max_idle_reads) ec = asio::error::connection_aborted;
          asio::post(executor_, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          asio::error_code ec;
          std::size_t n = 0;
          memory_wire& w = *wire_;
          ++w.writes;
          if (!w.open || w.write_shut) {
            ec = asio::error::broken_pipe;
          } else {
            n = std::min(asio::buffer_size(b), w.max_write);
            std::size_t at = w.output.size();
            w.output.resize(at + n);
            asio::buffer_copy(asio::buffer(w.output.data() + at, n), b);
          }
          asio::post(executor_, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
        },
        token, buffers);
  }

  /// The non-blocking write a connection tries before an asynchronous one:
  /// takes what fits in max_write, and every other call (odd-numbered ones)
  /// reports would_block, so both paths get exercised.
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& b, asio::error_code& ec) {
    memory_wire& w = *wire_;
    ec = {};
    if (!w.open || w.write_shut) {
      ec = asio::error::broken_pipe;
      return 0;
    }
    if (w.sync_writes++ % 2 == 1) {
      ec = asio::error::would_block;
      return 0;
    }
    ++w.writes;
    std::size_t n = std::min(asio::buffer_size(b), w.max_write);
    std::size_t at = w.output.size();
    w.output.resize(at + n);
    asio::buffer_copy(asio::buffer(w.output.data() + at, n), b);
    return n;
  }
  void non_blocking(bool, asio::error_code& ec) { ec = {}; }

  void shutdown(asio::socket_base::shutdown_type, asio::error_code& ec) {
    ec = {};
    wire_->write_shut = true;
  }
  void cancel(asio::error_code& ec) { ec = {}; }  // every operation completes at once
  void close(asio::error_code& ec) {
    ec = {};
    wire_->open = false;
    wire_->closed = true;
  }
  bool is_open() const noexcept { return wire_->open; }

 private:
  executor_type executor_;
  std::shared_ptr<memory_wire> wire_;
};

/// Serves `input` (one chunk per read) on one in-memory connection with
/// `handler` until the connection closes, on `io` (which must not be running
/// anything else); returns the wire, with what the server wrote.
template <class Handler>
memory_wire serve_in_memory(asio::io_context& io, Handler& handler, const cluster::options& opts,
                            std::vector<std::string> input,
                            std::size_t max_write = std::numeric_limits<std::size_t>::max()) {
  using connection = cluster::detail::basic_connection<memory_socket>;
  cluster::detail::server_state state(opts);
  auto wire = std::make_shared<memory_wire>();
  wire->input = std::move(input);
  wire->max_write = max_write;
  auto c = connection::open(memory_socket(io, wire), state);
  asio::co_spawn(io, connection::serve(std::move(c), handler), asio::detached);
  io.restart();
  io.run();
  return std::move(*wire);
}

/// serve_in_memory() on an io_context of its own.
template <class Handler>
memory_wire serve_in_memory(Handler& handler, const cluster::options& opts, std::vector<std::string> input,
                            std::size_t max_write = std::numeric_limits<std::size_t>::max()) {
  asio::io_context io(1);
  return serve_in_memory(io, handler, opts, std::move(input), max_write);
}

}  // namespace test_support
