// How the master sets up each worker it is about to fork: the slot's
// listening socket and address family, a free cell of the shared region,
// and the request limit (max_requests plus its random jitter, so that
// workers started together do not all recycle at once).
#pragma once

#include <cluster/detail/shared_region.hpp>
#include <cluster/detail/slot_sockets.hpp>
#include <cluster/detail/slot_table.hpp>
#include <cluster/detail/worker_setup.hpp>
#include <cluster/options.hpp>

#include <cstddef>
#include <random>

namespace cluster::detail {

/// A worker the master is to fork: its set-up, and whether it replaces the
/// slot's current worker (a successor) or fills an empty slot.
struct fork_plan {
  worker_setup setup;
  bool successor = false;
};

/// Makes fork plans from the supervisor's table, sockets and shared region,
/// which must outlive it.
class fork_planner {
 public:
  fork_planner(const options& opts, const slot_table& table, const slot_sockets& sockets, shared_region& cells)
      : opts_(opts), table_(table), sockets_(sockets), cells_(cells) {}

  /// The plan for a worker of slot `index`, which must exist; takes a cell
  /// of the shared region (given back when the worker exits or cannot start).
  fork_plan plan(int index, bool successor) {
    std::size_t cell = cells_.take();
    fork_plan p{.setup = {.slot = index,
                          .family = sockets_.address().family(),
                          .listen_fd = table_.slot(index)->listen_fd,
                          .cell = &cells_.cell(cell)},
                .successor = successor};
    if (opts_.max_requests != 0)
      p.setup.request_limit =
          opts_.max_requests + (opts_.max_requests_jitter ? rng_() % (opts_.max_requests_jitter + 1) : 0);
    return p;
  }

 private:
  const options& opts_;
  const slot_table& table_;
  const slot_sockets& sockets_;
  shared_region& cells_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cluster::detail
