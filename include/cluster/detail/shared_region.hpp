// Shared memory between the master and its workers: one anonymous
// MAP_SHARED region made by the master before the first fork, inherited by
// every worker and every respawn. Each worker process writes only its own
// cell, with relaxed atomics; the master reads them. No system call is made
// to update a cell.
#pragma once

#include <array>
#include <atomic>
#include <iterator>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <system_error>
#include <vector>

#include <sys/mman.h>

namespace cluster::detail {

/// Upper bounds, in microseconds, of the request-duration histogram buckets
/// (the last bucket, +Inf, is implicit).
inline constexpr std::int64_t duration_bounds_us[] = {500,     1'000,   2'500,   5'000,     10'000,    25'000,
                                                      50'000,  100'000, 250'000, 500'000,   1'000'000, 2'500'000,
                                                      5'000'000, 10'000'000};
inline constexpr std::size_t duration_buckets = std::size(duration_bounds_us) + 1;

/// What one worker process publishes about itself. Written only by that
/// process (single writer: bump() needs no locked instruction), read by the
/// master. Counters start at 0 for each process; the master adds a finished
/// process's counters to its slot's totals.
struct alignas(64) worker_cell {
  /// steady_clock (CLOCK_MONOTONIC, the same in every process) time of the
  /// event loop's last tick, in nanoseconds; 0 before the first.
  std::atomic<std::int64_t> heartbeat_ns{0};
  /// How late the last tick ran, in microseconds: the event-loop lag.
  std::atomic<std::int64_t> loop_lag_us{0};
  /// Requests answered by this process.
  std::atomic<std::uint64_t> requests{0};
  /// Responses by status class: [0] 1xx ... [4] 5xx.
  std::atomic<std::uint64_t> responses[5] = {};
  /// Request durations, from the complete request to its response queued.
  std::atomic<std::uint64_t> duration_count[duration_buckets] = {};
  std::atomic<std::uint64_t> duration_sum_us{0};
  /// Bytes read from and written to clients.
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  /// Connections accepted, and open now.
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::int64_t> open_connections{0};

  void reset() noexcept {
    auto zero = [](auto& a) { a.store(0, std::memory_order_relaxed); };
    zero(heartbeat_ns), zero(loop_lag_us), zero(requests), zero(duration_sum_us), zero(bytes_in), zero(bytes_out);
    zero(connections), zero(open_connections);
    for (auto& c : responses) zero(c);
    for (auto& c : duration_count) zero(c);
  }

  /// Single-writer increment: a plain load and store, no locked instruction.
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  /// Records one answered request.
  void record(int status, std::int64_t duration_us) noexcept {
    bump(requests);
    int cls = status / 100 - 1;
    if (cls >= 0 && cls < 5) bump(responses[cls]);
    std::size_t b = 0;
    while (b < std::size(duration_bounds_us) && duration_us > duration_bounds_us[b]) ++b;
    bump(duration_count[b]);
    bump(duration_sum_us, static_cast<std::uint64_t>(duration_us < 0 ? 0 : duration_us));
  }
};
/// A plain sum of worker cells: a slot's totals over all its processes.
struct cell_totals {
  std::uint64_t requests = 0;
  std::uint64_t responses[5] = {};
  std::uint64_t duration_count[duration_buckets] = {};
  std::uint64_t duration_sum_us = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t connections = 0;

  void add(const worker_cell& c) noexcept {
    auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    requests += get(c.requests);
    for (std::size_t i = 0; i < 5; ++i) responses[i] += get(c.responses[i]);
    for (std::size_t i = 0; i < duration_buckets; ++i) duration_count[i] += get(c.duration_count[i]);
    duration_sum_us += get(c.duration_sum_us);
    bytes_in += get(c.bytes_in);
    bytes_out += get(c.bytes_out);
    connections += get(c.connections);
  }

  void add(const cell_totals& o) noexcept {
    requests += o.requests;
    for (std::size_t i = 0; i < 5; ++i) responses[i] += o.responses[i];
    for (std::size_t i = 0; i < duration_buckets; ++i) duration_count[i] += o.duration_count[i];
    duration_sum_us += o.duration_sum_us;
    bytes_in += o.bytes_in;
    bytes_out += o.bytes_out;
    connections += o.connections;
  }
};

static_assert(std::atomic<std::int64_t>::is_always_lock_free, "shared counters must be lock-free");

/// Monotonic time in nanoseconds, comparable across the cluster's processes.
inline std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The region of worker cells, and which of them live processes use.
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
  /// The index of a cell of this region.
  std::size_t index_of(const worker_cell* c) const noexcept { return static_cast<std::size_t>(c - cells_); }

  /// A cell for a new process, zeroed. More processes than cells can only
  /// mean many stuck drains: the last cell is then shared rather than a
  /// worker refused.
  std::size_t take() noexcept {
    std::size_t c;
    if (!free_.empty()) {
      c = free_.back();
      free_.pop_back();
    } else {
      c = next_ < count_ ? next_++ : count_ - 1;
    }
    cells_[c].reset();
    return c;
  }

  /// Gives back the cell of a process that exited.
  void give(std::size_t c) { free_.push_back(c); }

 private:
  std::vector<std::size_t> free_;
  std::size_t next_ = 0;
  std::size_t count_;
  std::size_t bytes_;
  worker_cell* cells_ = nullptr;
};

}  // namespace cluster::detail
