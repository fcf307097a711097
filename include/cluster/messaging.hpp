// Messages between the master and its workers, over each worker's control
// channel: one-way sends, requests with a timeout, broadcasts relayed by the
// master. Typed helpers for text and trivially copyable structs.
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/control.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace cluster {

/// Why a messaging operation failed.
enum class message_errc {
  timeout = 1,   ///< no answer within the timeout
  closed,        ///< the channel is closed (the peer died or is stopping)
  too_large,     ///< larger than options::max_message
  full,          ///< the peer's queue is full (it does not keep up)
  no_worker,     ///< no live worker in that slot
  remote_error,  ///< the master's request callback threw
  bad_payload,   ///< message::as<T>() on a payload of another size
};

/// The error category of message_errc.
inline const std::error_category& message_category() noexcept {
  struct category : std::error_category {
    const char* name() const noexcept override { return "cluster.message"; }
    std::string message(int c) const override {
      switch (static_cast<message_errc>(c)) {
        case message_errc::timeout: return "no answer within the timeout";
        case message_errc::closed: return "the control channel is closed";
        case message_errc::too_large: return "message larger than max_message";
        case message_errc::full: return "the receiver's queue is full";
        case message_errc::no_worker: return "no live worker in that slot";
        case message_errc::remote_error: return "the master's request callback failed";
        case message_errc::bad_payload: return "payload size does not match the type";
      }
      return "unknown messaging error";
    }
  };
  static const category c;
  return c;
}

/// Makes message_errc usable as a std::error_code.
inline std::error_code make_error_code(message_errc e) noexcept { return {static_cast<int>(e), message_category()}; }

/// Thrown by the awaitable messaging operations.
class message_error : public std::system_error {
 public:
  explicit message_error(message_errc e, const std::string& what = {})
      : std::system_error(make_error_code(e), what) {}
};

/// A message: a type tag chosen by the application and bytes.
struct message {
  /// Application-defined tag telling receivers what the bytes mean.
  std::uint32_t type = 0;
  /// The payload.
  std::string data;

  /// A message carrying text.
  static message text(std::string_view s, std::uint32_t type = 0) { return {type, std::string(s)}; }

  /// A message carrying the bytes of a trivially copyable value.
  template <class T>
    requires std::is_trivially_copyable_v<T>
  static message of(const T& value, std::uint32_t type = 0) {
    return {type, std::string(reinterpret_cast<const char*>(&value), sizeof(T))};
  }

  /// The payload as text.
  std::string_view text() const noexcept { return data; }

  /// The payload as a T; throws message_error(bad_payload) when its size is
  /// not sizeof(T).
  template <class T>
    requires std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>
  T as() const {
    if (data.size() != sizeof(T))
      throw message_error(message_errc::bad_payload, "message of " + std::to_string(data.size()) +
                                                         " bytes read as a type of " + std::to_string(sizeof(T)));
    T value;
    std::memcpy(&value, data.data(), sizeof(T));
    return value;
  }
};

/// Messaging from inside a worker: see cluster::this_worker().
class worker_context {
 public:
  /// The slot this worker serves.
  virtual int slot() const = 0;
  /// This worker's event loop (single-threaded): where background work of
  /// the worker runs, e.g. from options::on_worker_start:
  /// `asio::co_spawn(cluster::this_worker().executor(), refresh(), asio::detached)`.
  virtual asio::any_io_executor executor() = 0;
  /// Sends `m` to the master without waiting; fails with too_large, full
  /// (the channel is backed up) or closed. Delivered to options::on_message.
  virtual std::error_code try_send(const message& m) = 0;
  /// Sends `m` to the master, waiting while the channel is backed up
  /// (backpressure). Throws message_error.
  virtual asio::awaitable<void> send(message m) = 0;
  /// Asks the master (options::on_request) and waits for its answer. Throws
  /// message_error: timeout, closed, too_large, remote_error.
  virtual asio::awaitable<message> request(message m, std::chrono::milliseconds timeout) = 0;
  /// Sends `m` to every worker, this one included, through the master;
  /// completes once the master has relayed it. Throws message_error.
  virtual asio::awaitable<void> broadcast(message m,
                                          std::chrono::milliseconds timeout = std::chrono::seconds(5)) = 0;
  /// Calls `f` for every message from the master (its sends and relayed
  /// broadcasts), on this worker's event loop. Replaces receive().
  virtual void on_message(std::function<void(const message&)> f) = 0;
  /// Waits for the next message from the master when no on_message callback
  /// is set. Up to 4096 unreceived messages are kept; older ones are dropped
  /// with a log line. Throws message_error(closed) when the master is gone.
  virtual asio::awaitable<message> receive() = 0;

 protected:
  ~worker_context() = default;
};

/// Messaging from the master (in its hooks and callbacks): see
/// cluster::this_master().
class master_context {
 public:
  /// Sends `m` to the worker serving `slot`; fails with no_worker,
  /// too_large or full.
  virtual std::error_code send(int slot, const message& m) = 0;
  /// Sends `m` to every live worker; returns how many it was queued for.
  virtual std::size_t broadcast(const message& m) = 0;
  /// The slots that have a live worker.
  virtual std::vector<int> slots() const = 0;
  /// The master's event loop (single-threaded): where background work of the
  /// master runs, e.g. from options::on_master_start. Never block it: it
  /// supervises the workers.
  virtual asio::any_io_executor executor() = 0;

 protected:
  ~master_context() = default;
};

/// A master callback answering a worker's request: either
/// `message(int slot, const message&)` or a coroutine
/// `asio::awaitable<message>(int slot, message)`.
class request_callback {
 public:
  request_callback() = default;

  template <class F>
    requires std::invocable<F&, int, message> &&
             std::same_as<std::invoke_result_t<F&, int, message>, asio::awaitable<message>>
  request_callback(F f) : call_(std::move(f)) {}  // NOLINT: implicit by design

  template <class F>
    requires(!std::same_as<std::invoke_result_t<F&, int, const message&>, asio::awaitable<message>>) &&
            std::convertible_to<std::invoke_result_t<F&, int, const message&>, message>
  request_callback(F f)  // NOLINT: implicit by design
      : now_(std::move(f)) {}

  explicit operator bool() const noexcept { return static_cast<bool>(now_) || static_cast<bool>(call_); }

  /// Runs the callback.
  asio::awaitable<message> operator()(int slot, message m) const {
    if (now_) return answer_of(now_, slot, std::move(m));
    return call_(slot, std::move(m));
  }

  /// True for a plain function: answer_now() then gives its answer without
  /// a coroutine (the master's fast path).
  bool answers_at_once() const noexcept { return static_cast<bool>(now_); }

  /// Runs a plain-function callback; only when answers_at_once().
  message answer_now(int slot, const message& m) const { return now_(slot, m); }

 private:
  static asio::awaitable<message> answer_of(const std::function<message(int, const message&)>& f, int slot,
                                            message m) {
    co_return f(slot, m);
  }

  std::function<message(int, const message&)> now_;  // a plain function, or
  std::function<asio::awaitable<message>(int, message)> call_;  // a coroutine
};

/// The messaging context of the calling worker process. Throws
/// std::logic_error outside a worker.
inline worker_context& this_worker() {
  if (auto* w = detail::this_process().worker) return *w;
  throw std::logic_error("cluster::this_worker() called outside a worker process");
}

/// The messaging context of the master, for its hooks and callbacks. Throws
/// std::logic_error outside the master.
inline master_context& this_master() {
  if (auto* m = detail::this_process().master) return *m;
  throw std::logic_error("cluster::this_master() called outside the master process");
}

}  // namespace cluster

template <>
struct std::is_error_code_enum<cluster::message_errc> : std::true_type {};
