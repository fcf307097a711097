// What an accept loop does when accept(2) fails: which errors are about one
// connection (go on at once) and which mean the process is out of a resource
// (pause accepting, longer each time, as nginx does on EMFILE), and when to
// say so in the log without writing a line per failure.
#pragma once

#include <cluster/detail/asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>

#include <cerrno>

namespace cluster::detail {

class accept_backoff {
 public:
  using clock = std::chrono::steady_clock;
  /// First pause after a resource error, and the longest.
  static constexpr std::chrono::milliseconds first_pause{20};
  static constexpr std::chrono::milliseconds max_pause{1000};
  /// At most one log line per this interval while failures go on.
  static constexpr std::chrono::seconds log_interval{10};

  /// The decision for one failed accept.
  struct decision {
    std::chrono::milliseconds pause{0};  ///< 0: try again at once
    std::string log;                     ///< empty: nothing to log now
  };

  /// True for errors of the listening process (descriptors, memory), after
  /// which an immediate retry fails again and would spin on a readable socket.
  static bool exhausted(const std::error_code& ec) noexcept {
    if (ec.category() != asio::error::get_system_category() && ec.category() != std::system_category())
      return false;
    switch (ec.value()) {
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: return true;
      default: return false;
    }
  }

  /// Call after each failed accept.
  decision failed(const std::error_code& ec, clock::time_point now = clock::now()) {
    decision d;
    if (!exhausted(ec)) {
      // ECONNABORTED and the like concern one connection that is already
      // gone: the next one in the queue is unaffected.
      ++transient_;
      return d;
    }
    if (failures_ == 0) first_failure_ = now;
    ++failures_;
    pause_ = failures_ == 1 ? first_pause : std::min(max_pause, pause_ * 2);
    d.pause = pause_;
    if (failures_ == 1 || now - last_log_ >= log_interval) {
      d.log = "accept failed: " + ec.message() + "; pausing accepts for " + std::to_string(pause_.count()) +
              " ms" + (failures_ > 1 ? " (" + std::to_string(failures_) + " failures so far)" : "");
      last_log_ = now;
    }
    return d;
  }

  /// Call after each successful accept; returns a line to log when it ends a
  /// run of resource failures, else an empty string.
  std::string succeeded(clock::time_point now = clock::now()) {
    if (failures_ == 0) return {};
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - first_failure_).count();
    std::string line = "accepting again after " + std::to_string(failures_) + " failed accepts over " +
                       std::to_string(ms) + " ms";
    failures_ = 0;
    pause_ = std::chrono::milliseconds(0);
    last_log_ = clock::time_point{};
    return line;
  }

  /// Resource failures in the current run (0 while accepts succeed).
  std::uint64_t failures() const noexcept { return failures_; }
  /// Per-connection failures ignored so far.
  std::uint64_t transient() const noexcept { return transient_; }

 private:
  std::uint64_t failures_ = 0;
  std::uint64_t transient_ = 0;
  std::chrono::milliseconds pause_{0};
  clock::time_point first_failure_{};
  clock::time_point last_log_{};
};

}  // namespace cluster::detail
