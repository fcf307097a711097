// Buffers a worker must write out before it exits. A worker ends with
// _exit(2) (master.hpp: nothing of the master's may run in it), so no
// destructor of an object made in main() runs there: whatever buffers
// output (the access log) registers here, and the worker flushes the list
// once its event loop has stopped.
#pragma once

namespace cluster::detail {

/// An object with output to write out when its worker stops. Registered for
/// its whole lifetime (an intrusive list: no allocation, no owner).
class exit_flush {
 public:
  exit_flush() noexcept : next_(head()) { head() = this; }
  exit_flush(const exit_flush&) = delete;
  exit_flush& operator=(const exit_flush&) = delete;

  /// Writes out what is buffered; must not throw.
  virtual void flush() noexcept = 0;

  /// Flushes every registered object (the worker, once its loop stopped).
  static void flush_all() noexcept {
    for (exit_flush* f = head(); f != nullptr; f = f->next_) f->flush();
  }

 protected:
  ~exit_flush() {
    for (exit_flush** p = &head(); *p != nullptr; p = &(*p)->next_)
      if (*p == this) {
        *p = next_;
        break;
      }
  }

 private:
  // The list's head: state that fork semantics demand (see the file comment).
  static exit_flush*& head() noexcept {
    static exit_flush* first = nullptr;
    return first;
  }

  exit_flush* next_;
};

}  // namespace cluster::detail
