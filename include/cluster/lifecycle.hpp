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

/// Puts the program file as it is on disk now into service (as SIGUSR2
/// does): a new master starts with this one's listening sockets, and once
/// every one of its slots has a ready worker this master drains and exits;
/// if it fails or is not ready within start_timeout, this master kills it
/// and keeps serving. Returns false outside a running cluster or when the
/// request cannot be sent (the outcome is in the master's log).
inline bool upgrade() {
  auto* c = detail::this_process().lifecycle;
  return c && c->upgrade();
}

}  // namespace cluster
