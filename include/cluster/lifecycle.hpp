// Lifecycle requests a program can make from inside its cluster: from a
// handler in a worker, or from a hook in the master.
#pragma once

#include <cluster/detail/control.hpp>
#include <cluster/detail/limits.hpp>

namespace cluster {

/// Starts a rolling reload (as SIGHUP does): slot by slot, a new worker is
/// started and becomes ready before the old one drains. Returns false when
/// called outside a running cluster, or when the request cannot be sent.
inline bool reload() {
  auto* c = detail::this_process().lifecycle;
  return c && c->reload();
}

/// Sets the number of worker slots (as repeated SIGTTIN/SIGTTOU do), 1..1024.
/// Returns false outside a running cluster, for a count out of range, or when
/// the request cannot be sent.
inline bool scale(int workers) {
  auto* c = detail::this_process().lifecycle;
  return c && workers >= 1 && workers <= detail::max_slots && c->scale(workers);
}

}  // namespace cluster
