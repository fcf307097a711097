// Rates for the admin endpoint's /status and its page: requests per second,
// CPU % and the latency percentiles of the last interval, computed from two
// samples of the cluster's counters that the master takes a second apart
// (rate_sampler.hpp). Pure arithmetic over the two samples, so that what a
// restart between them means is decided here, in one tested place: a rate
// is never negative and never mixes counters of two processes.
#pragma once

#include <cluster/detail/shared_region.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <sys/types.h>

namespace cluster::detail {

/// One slot's counters at one moment.
struct slot_sample {
  int slot = 0;
  pid_t pid = -1;                                           ///< its current worker, -1 for none
  std::uint64_t requests = 0;                               ///< answered by all its generations (slot_status::totals)
  std::array<std::uint64_t, duration_buckets> durations{};  ///< histogram bucket counts, all generations
  std::optional<double> cpu_seconds{};                      ///< of `pid`; none without a process
};

/// The cluster's counters at one moment.
struct cluster_sample {
  std::chrono::steady_clock::time_point at{};  ///< the epoch: no sample taken
  std::optional<double> master_cpu_seconds{};
  std::vector<slot_sample> slots;
};

/// One slot's rates over an interval.
struct slot_rates {
  int slot = 0;
  double requests_per_second = 0;
  double cpu_percent = 0;  ///< of one core: 100 is one core busy all the interval
};

/// The cluster's rates over an interval.
struct cluster_rates {
  double interval_seconds = 0;  ///< 0 until two samples were taken: every rate is then 0
  double master_cpu_percent = 0;
  double requests_per_second = 0;  ///< every slot's
  /// Requests per second answered within each duration_bounds_us bucket
  /// (not cumulative; the last one past the last bound), every slot's.
  std::array<double, duration_buckets> durations_per_second{};
  std::optional<double> p50_seconds{};  ///< none without a request in the interval
  std::optional<double> p99_seconds{};
};

/// Everything rates_between() measures.
struct measured_rates {
  cluster_rates cluster;
  std::vector<slot_rates> slots;  ///< the slots of the later sample, in its order

  /// The rates of slot `index`; zeros for a slot not measured.
  slot_rates of_slot(int index) const {
    for (const slot_rates& s : slots)
      if (s.slot == index) return s;
    return {.slot = index};
  }
};

/// How far a counter moved: 0 when it went back, for then it was reset
/// within the interval and what it counted before the reset is unknown.
constexpr std::uint64_t counter_delta(std::uint64_t before, std::uint64_t after) noexcept {
  return after >= before ? after - before : 0;
}

/// The `q`-quantile (0 < q < 1) of the durations counted in `counts`
/// (buckets bounded by duration_bounds_us, the last one unbounded), in
/// seconds: interpolated linearly inside the bucket it falls in, as
/// Prometheus's histogram_quantile() does, and the last finite bound when it
/// falls past it. None when `counts` holds nothing.
inline std::optional<double> duration_quantile(double q, const std::array<double, duration_buckets>& counts) {
  double total = 0;
  for (double c : counts) total += c;
  if (total <= 0) return std::nullopt;
  const double rank = q * total;
  double below = 0;
  // The last bucket has no upper end to interpolate to: it is not walked.
  for (std::size_t b = 0; b + 1 < duration_buckets; ++b) {
    if (counts[b] > 0 && below + counts[b] >= rank) {
      const double lower = b == 0 ? 0.0 : static_cast<double>(duration_bounds_us[b - 1]);
      const double upper = static_cast<double>(duration_bounds_us[b]);
      return (lower + (upper - lower) * (rank - below) / counts[b]) / 1e6;
    }
    below += counts[b];
  }
  return static_cast<double>(duration_bounds_us[std::size(duration_bounds_us) - 1]) / 1e6;
}

/// The rates between two samples of the same cluster. All zero when
/// `before` was never taken (the first sample) or is not earlier than
/// `after`. Per slot: requests from its counters over all generations (a
/// worker that died between the samples was folded into them, so its
/// requests still count); CPU only when the same process is current in both
/// samples (a new process's CPU time cannot be split over the interval: 0
/// until the next one); a slot missing from `before` (just added) gets 0.
inline measured_rates rates_between(const cluster_sample& before, const cluster_sample& after) {
  measured_rates out;
  const double seconds = std::chrono::duration<double>(after.at - before.at).count();
  const bool measured = before.at != std::chrono::steady_clock::time_point{} && seconds > 0;
  auto percent = [&](const std::optional<double>& a, const std::optional<double>& b) {
    return a && b && *b >= *a ? (*b - *a) / seconds * 100 : 0.0;
  };
  if (measured) {
    out.cluster.interval_seconds = seconds;
    out.cluster.master_cpu_percent = percent(before.master_cpu_seconds, after.master_cpu_seconds);
  }
  std::array<double, duration_buckets> counts{};
  for (const slot_sample& now : after.slots) {
    slot_rates r{.slot = now.slot};
    const slot_sample* then = nullptr;
    for (const slot_sample& s : before.slots)
      if (s.slot == now.slot) then = &s;
    if (measured && then) {
      r.requests_per_second = static_cast<double>(counter_delta(then->requests, now.requests)) / seconds;
      if (then->pid == now.pid && now.pid > 0) r.cpu_percent = percent(then->cpu_seconds, now.cpu_seconds);
      for (std::size_t b = 0; b < duration_buckets; ++b)
        counts[b] += static_cast<double>(counter_delta(then->durations[b], now.durations[b]));
      out.cluster.requests_per_second += r.requests_per_second;
    }
    out.slots.push_back(r);
  }
  if (measured) {
    for (std::size_t b = 0; b < duration_buckets; ++b) out.cluster.durations_per_second[b] = counts[b] / seconds;
    out.cluster.p50_seconds = duration_quantile(0.5, counts);
    out.cluster.p99_seconds = duration_quantile(0.99, counts);
  }
  return out;
}

}  // namespace cluster::detail
