// cluster::shared<T>: one object visible to the master and every worker,
// surviving worker crashes and respawns.
#pragma once

#include <atomic>
#include <cerrno>
#include <concepts>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include <sys/mman.h>

namespace cluster {

namespace detail {
template <class T>
struct is_lock_free_atomic : std::false_type {};
template <class U>
struct is_lock_free_atomic<std::atomic<U>> : std::bool_constant<std::atomic<U>::is_always_lock_free> {};
}  // namespace detail

/// What may live in shared memory between processes: a trivially copyable
/// value (read and written as plain memory; synchronise it yourself) or a
/// lock-free std::atomic (atomic across processes, like across threads).
/// Anything holding pointers to heap memory, locks or a vtable would be
/// wrong in another process.
template <class T>
concept shareable = (std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>) ||
                    detail::is_lock_free_atomic<std::remove_cv_t<T>>::value;

/// One T in an anonymous MAP_SHARED mapping. Create it in main() before
/// cluster::run: every worker (and every respawned worker) inherits the same
/// mapping, so a change made by one process is seen by all, and survives any
/// worker's death.
///
///     cluster::shared<std::atomic<std::uint64_t>> hits;   // in main()
///     hits->fetch_add(1, std::memory_order_relaxed);      // in a handler
template <class T>
class shared {
  static_assert(shareable<T>,
                "cluster::shared<T>: T must be trivially copyable and trivially destructible (plain data, no "
                "pointers to the heap) or a lock-free std::atomic");

 public:
  /// Maps the memory and constructs T from `args`. Throws std::system_error.
  template <class... Args>
  explicit shared(Args&&... args) {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "cluster::shared: mmap");
    object_ = ::new (p) T(std::forward<Args>(args)...);
  }

  ~shared() { ::munmap(object_, sizeof(T)); }

  shared(const shared&) = delete;
  shared& operator=(const shared&) = delete;

  T* get() const noexcept { return object_; }
  T& operator*() const noexcept { return *object_; }
  T* operator->() const noexcept { return object_; }

 private:
  T* object_ = nullptr;
};

}  // namespace cluster
