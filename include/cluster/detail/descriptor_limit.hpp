// The descriptor limit (RLIMIT_NOFILE) a cluster needs: each worker may
// hold max_connections client sockets besides its own descriptors, and the
// master one channel and one socket per slot. Raised in the master before
// anything is opened or forked, so every worker inherits it; the usual
// soft limit of 1,024 would otherwise cap a worker far below the default
// max_connections of 10,000.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <string>

namespace cluster::detail {

/// Descriptors a process uses besides client connections: stdio, the
/// listening socket, the channel, epoll, signalfd, timers, the user's files.
inline constexpr std::uint64_t descriptor_headroom = 64;

/// The soft limit each process of a cluster with `workers` slots and
/// `max_connections` per worker needs.
constexpr std::uint64_t descriptors_needed(int max_connections, int workers) noexcept {
  return static_cast<std::uint64_t>(max_connections) + 3 * static_cast<std::uint64_t>(workers) + descriptor_headroom;
}

/// What raise_descriptor_limit did.
struct descriptor_limit {
  std::uint64_t before = 0;  ///< the soft limit found
  std::uint64_t now = 0;     ///< the soft limit set
  std::uint64_t need = 0;
  /// Empty, or why the limit stays below `need`: the line the master logs.
  std::string shortfall;
};

/// Raises the soft RLIMIT_NOFILE to `need` (and the hard one too when the
/// process may: root with CAP_SYS_RESOURCE, up to fs.nr_open). Never lowers
/// either limit.
inline descriptor_limit raise_descriptor_limit(std::uint64_t need) {
  descriptor_limit out;
  out.need = need;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    out.shortfall = "cannot read RLIMIT_NOFILE";
    return out;
  }
  out.before = out.now = lim.rlim_cur;
  if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= need) return out;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
    rlimit wider{need, need};
    if (::setrlimit(RLIMIT_NOFILE, &wider) == 0) {
      out.now = need;
      return out;
    }
  }
  rlimit raised{lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= need ? need : lim.rlim_max, lim.rlim_max};
  if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) out.now = raised.rlim_cur;
  if (out.now < need)
    out.shortfall = "max_connections needs " + std::to_string(need) + " descriptors per process but RLIMIT_NOFILE " +
                    "stays at " + std::to_string(out.now) + " (hard limit " + std::to_string(lim.rlim_max) +
                    "): a worker cannot hold more than about " +
                    std::to_string(out.now > descriptor_headroom ? out.now - descriptor_headroom : 0) + " connections at once" +
                    "; raise the limit (LimitNOFILE=, ulimit -Hn) or lower --max-connections";
  return out;
}

}  // namespace cluster::detail
