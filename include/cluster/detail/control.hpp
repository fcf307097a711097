// The process-wide handle behind cluster::reload() and cluster::scale(): the
// one piece of global state, because after fork() each process (master or
// worker) must know which role it plays.
#pragma once

namespace cluster::detail {

/// Lifecycle requests, implemented by the master and by each worker (which
/// forwards them to the master over its control channel).
class control {
 public:
  virtual bool reload() = 0;
  virtual bool scale(int workers) = 0;

 protected:
  ~control() = default;
};

/// The control of the calling process; nullptr outside a running cluster.
inline control*& current_control() noexcept {
  static control* current = nullptr;
  return current;
}

}  // namespace cluster::detail
