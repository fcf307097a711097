// What the master hands a worker it forks: the plain record both sides use,
// kept apart from the Worker template so the master's Handler-free parts
// need not include the worker's request path.
#pragma once

#include <cstdint>

#include <sys/socket.h>

#include <cluster/detail/shared_region.hpp>

namespace cluster::detail {

/// The descriptors and shared cell of one worker, as the master sets them up.
struct worker_setup {
  int slot = 0;
  int family = AF_INET;
  int listen_fd = -1;
  int channel_fd = -1;
  worker_cell* cell = nullptr;
  std::uint64_t request_limit = 0;  ///< 0: never recycle
};

}  // namespace cluster::detail
