// Shared memory between the master and its workers: one anonymous
// MAP_SHARED region made by the master before the first fork, inherited by
// every worker and every respawn. Each worker process writes only its own
// cell, with relaxed atomics; the master reads them. No system call is made
// to update a cell.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <system_error>

#include <sys/mman.h>

namespace cluster::detail {

/// What one worker process publishes about itself.
struct alignas(64) worker_cell {
  /// steady_clock (CLOCK_MONOTONIC, the same in every process) time of the
  /// event loop's last tick, in nanoseconds; 0 before the first.
  std::atomic<std::int64_t> heartbeat_ns{0};
  /// How late the last tick ran, in microseconds: the event-loop lag.
  std::atomic<std::int64_t> loop_lag_us{0};
  /// Requests answered by this process.
  std::atomic<std::uint64_t> requests{0};

  void reset() noexcept {
    heartbeat_ns.store(0, std::memory_order_relaxed);
    loop_lag_us.store(0, std::memory_order_relaxed);
    requests.store(0, std::memory_order_relaxed);
  }

  /// Single-writer increment: a plain load and store, no locked instruction.
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
};
static_assert(std::atomic<std::int64_t>::is_always_lock_free, "shared counters must be lock-free");

/// Monotonic time in nanoseconds, comparable across the cluster's processes.
inline std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The region of worker cells.
class shared_region {
 public:
  explicit shared_region(std::size_t cells) : count_(cells), bytes_(cells * sizeof(worker_cell)) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "cluster: mmap of the shared region");
    cells_ = static_cast<worker_cell*>(p);
    for (std::size_t i = 0; i < cells; ++i) new (&cells_[i]) worker_cell();
  }
  ~shared_region() { ::munmap(cells_, bytes_); }
  shared_region(const shared_region&) = delete;
  shared_region& operator=(const shared_region&) = delete;

  worker_cell& cell(std::size_t i) noexcept { return cells_[i]; }
  std::size_t size() const noexcept { return count_; }

 private:
  std::size_t count_;
  std::size_t bytes_;
  worker_cell* cells_ = nullptr;
};

}  // namespace cluster::detail
