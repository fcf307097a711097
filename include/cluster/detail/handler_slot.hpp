// Memory for a pending asynchronous operation inside the object that starts
// it. Asio allocates each operation (the handler and its bookkeeping) from
// the handler's associated allocator; by default from the thread's heap,
// where thousands of long waits (an idle connection's timer and read
// readiness) would sit between the short-lived allocations of busy
// connections and keep their pages from going back to the kernel. A slot
// puts the operation inside the connection instead: no allocation, and
// nothing left in the heap when the connection parks.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace cluster::detail {

/// Room for one operation of up to `Size` bytes at a time; a second one,
/// or a larger one, falls back to the heap (correct, just not in place).
template <std::size_t Size>
class handler_slot {
 public:
  handler_slot() = default;
  handler_slot(const handler_slot&) = delete;
  handler_slot& operator=(const handler_slot&) = delete;

  void* allocate(std::size_t n) {
    if (!used_ && n <= Size) {
      used_ = true;
      return storage_;
    }
    return ::operator new(n);
  }

  void deallocate(void* p) noexcept {
    if (p == static_cast<void*>(storage_))
      used_ = false;
    else
      ::operator delete(p);
  }

 private:
  alignas(std::max_align_t) unsigned char storage_[Size];
  bool used_ = false;
};

/// A standard allocator over a handler_slot, for asio::associated_allocator.
template <class T, std::size_t Size>
class slot_allocator {
 public:
  using value_type = T;
  template <class U>
  struct rebind {  // spelled out: allocator_traits cannot rebind a non-type parameter
    using other = slot_allocator<U, Size>;
  };

  explicit slot_allocator(handler_slot<Size>& slot) noexcept : slot_(&slot) {}
  template <class U>
  slot_allocator(const slot_allocator<U, Size>& other) noexcept : slot_(other.slot_) {}

  T* allocate(std::size_t n) { return static_cast<T*>(slot_->allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { slot_->deallocate(p); }

  template <class U>
  bool operator==(const slot_allocator<U, Size>& other) const noexcept {
    return slot_ == other.slot_;
  }

 private:
  template <class, std::size_t>
  friend class slot_allocator;
  handler_slot<Size>* slot_;
};

/// `handler`, whose operation Asio places in `slot`.
template <class Handler, std::size_t Size>
class slotted_handler {
 public:
  using allocator_type = slot_allocator<void, Size>;

  slotted_handler(handler_slot<Size>& slot, Handler handler) : handler_(std::move(handler)), slot_(&slot) {}

  allocator_type get_allocator() const noexcept { return allocator_type(*slot_); }

  template <class... Args>
  void operator()(Args&&... args) {
    handler_(std::forward<Args>(args)...);
  }

 private:
  Handler handler_;
  handler_slot<Size>* slot_;
};

/// Wraps `handler` so that its operation is placed in `slot`.
template <std::size_t Size, class Handler>
slotted_handler<Handler, Size> in_slot(handler_slot<Size>& slot, Handler handler) {
  return {slot, std::move(handler)};
}

}  // namespace cluster::detail
