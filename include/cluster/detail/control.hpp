// The role of the calling process (master or worker), behind
// cluster::reload(), cluster::scale(), cluster::upgrade(),
// cluster::this_worker() and cluster::this_master(). This is the one piece of global state: after
// fork() each process must know which role it plays.
#pragma once

namespace cluster {
class worker_context;
class master_context;
}  // namespace cluster

namespace cluster::detail {

/// Lifecycle requests, implemented by the master and by each worker (which
/// forwards them to the master over its control channel).
class control {
 public:
  virtual bool reload() = 0;
  virtual bool scale(int workers) = 0;
  virtual bool upgrade() = 0;

 protected:
  ~control() = default;
};

/// What the calling process is; all null outside a running cluster.
struct process_role {
  control* lifecycle = nullptr;
  worker_context* worker = nullptr;
  master_context* master = nullptr;
};

inline process_role& this_process() noexcept {
  static process_role role;
  return role;
}

/// Plays `role` for the guard's lifetime, then restores the role it replaced
/// (also when the scope is left by an exception). The whole role is set at
/// once: a worker forked from inside the master's scope stops being the
/// master by entering its own.
class role_scope {
 public:
  explicit role_scope(process_role role) noexcept : previous_(this_process()) { this_process() = role; }
  ~role_scope() { this_process() = previous_; }
  role_scope(const role_scope&) = delete;
  role_scope& operator=(const role_scope&) = delete;

 private:
  process_role previous_;
};

}  // namespace cluster::detail
