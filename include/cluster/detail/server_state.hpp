// What the connections of one server (a worker's, or one of the master's
// admin listeners) share: the options, the Date cache, the registry of open
// connections, whether the server drains, the metrics cell, and the
// interface through which the server's owner hears of them.
#pragma once

#include <cluster/detail/block_pool.hpp>
#include <cluster/detail/date_cache.hpp>
#include <cluster/detail/shared_region.hpp>
#include <cluster/options.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cluster::detail {

/// What the server's owner learns from its connections (the worker: its
/// accept loop waits at the connection limit, a drain waits for the last
/// connection, the request limit asks for a replacement).
class connection_events {
 public:
  /// A connection closed (it is no longer in the registry).
  virtual void on_connection_closed() = 0;
  /// The request limit was reached (once).
  virtual void on_request_limit() = 0;

 protected:
  ~connection_events() = default;
};

/// An open connection, as the server sees it: what the owner does to all of
/// them at once. Not called per request.
class open_connection {
 public:
  /// Finish: close when idle, or after the current response.
  virtual void drain() = 0;
  /// The socket's descriptor (a forked child closes inherited ones).
  virtual int native_handle() noexcept = 0;
  /// The owner's periodic check: a connection that has waited for its next
  /// request since before `idle_before` gives back the memory it needs only
  /// while it works on requests (true when it does).
  virtual bool check_idle(std::chrono::steady_clock::time_point idle_before) noexcept = 0;

 protected:
  ~open_connection() = default;

 private:
  friend class connection_registry;
  open_connection* prev_ = this;
  open_connection* next_ = this;
};

/// The open connections of a server: an intrusive list (no allocation per
/// connection), and its length.
class connection_registry {
 public:
  connection_registry() = default;
  connection_registry(const connection_registry&) = delete;
  connection_registry& operator=(const connection_registry&) = delete;

  /// Connections open now.
  std::size_t size() const noexcept { return size_; }

  void add(open_connection& c) noexcept {
    c.next_ = sentinel_.next_;
    c.prev_ = &sentinel_;
    sentinel_.next_->prev_ = &c;
    sentinel_.next_ = &c;
    ++size_;
  }

  void remove(open_connection& c) noexcept {
    c.prev_->next_ = c.next_;
    c.next_->prev_ = c.prev_;
    c.prev_ = c.next_ = &c;
    --size_;
  }

  /// Calls `f(open_connection&)` for each; `f` may remove the one it is given.
  template <class F>
  void for_each(F&& f) {
    for (open_connection* c = sentinel_.next_; c != &sentinel_;) {
      open_connection* next = c->next_;
      f(*c);
      c = next;
    }
  }

 private:
  struct sentinel final : open_connection {
    void drain() override {}
    int native_handle() noexcept override { return -1; }
    bool check_idle(std::chrono::steady_clock::time_point) noexcept override {
      return false;
    }
  };
  sentinel sentinel_;
  std::size_t size_ = 0;
};

/// What a server's connections share.
struct server_state {
  /// `events` (may be null) hears of closed connections and the request limit.
  explicit server_state(const options& o, connection_events* events = nullptr) : opts(o), events_(events) {}
  server_state(const server_state&) = delete;
  server_state& operator=(const server_state&) = delete;

  const options& opts;
  date_cache dates;
  /// Where the connections themselves live (see block_pool.hpp); declared
  /// before the registry, so that it outlives it.
  block_pool connection_memory;
  connection_registry connections;
  bool draining = false;  ///< finish what is in flight, then close
  /// The service is leaving its balancer (SIGTERM with drain_delay): serve on,
  /// but close each connection after its response, so that a balancer's
  /// pooled connections end cleanly before the stop rather than being cut.
  bool closing = false;
  /// This process's cell in the shared region (requests answered, heartbeat),
  /// or nullptr outside a cluster.
  worker_cell* cell = nullptr;
  /// Requests after which the worker asks to be replaced; 0: never.
  std::uint64_t request_limit = 0;

  /// A connection opened.
  void opened(open_connection& c) noexcept {
    connections.add(c);
    count_connection(+1);
  }

  /// A connection closed; tells the owner.
  void closed(open_connection& c) noexcept {
    connections.remove(c);
    count_connection(-1);
    if (events_) events_->on_connection_closed();
  }

  /// Records an answered request in this process's cell (no system call:
  /// single-writer stores to shared memory).
  void count_request(int status, std::chrono::steady_clock::time_point started) noexcept {
    if (!cell) return;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
    cell->record(status, us.count());
    if (request_limit != 0 && cell->requests.load(std::memory_order_relaxed) == request_limit && events_)
      events_->on_request_limit();
  }

  /// Adds `n` to one of the cell's byte counters.
  void count_bytes(std::atomic<std::uint64_t> worker_cell::*counter, std::size_t n) noexcept {
    if (cell) worker_cell::bump(cell->*counter, n);
  }

 private:
  void count_connection(int delta) noexcept {
    if (!cell) return;
    if (delta > 0) worker_cell::bump(cell->connections);
    cell->open_connections.store(cell->open_connections.load(std::memory_order_relaxed) + delta,
                                 std::memory_order_relaxed);
  }

  connection_events* events_;
};

}  // namespace cluster::detail
