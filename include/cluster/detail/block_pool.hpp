// Fixed-size blocks for a server's connections, carved from chunks of many.
// An idle connection must cost little memory, and memory the kernel can
// take back: allocated one by one from the heap, each connection's few
// hundred long-lived bytes would sit between the short-lived buffers and
// coroutine frames of its busy periods, and the holes those leave (smaller
// than a page) could never be returned. Packed together in chunks, the
// long-lived blocks leave the rest of the heap free in large runs; a chunk
// whose blocks are all free is released.
#pragma once

#include <cassert>
#include <cstddef>
#include <new>

namespace cluster::detail {

/// Blocks of one size (the first asked for; other sizes come from the
/// heap). Single-threaded, like the server that owns it.
class block_pool {
 public:
  /// Blocks per chunk.
  static constexpr std::size_t chunk_blocks = 64;

  block_pool() = default;
  block_pool(const block_pool&) = delete;
  block_pool& operator=(const block_pool&) = delete;

  ~block_pool() {
    // Every block is back by now (the server outlives its connections); a
    // chunk still in use is left alone rather than freed under its owner.
    for (chunk* c = chunks_; c != nullptr;) {
      chunk* next = c->next;
      if (c->live == 0) ::operator delete(c);
      c = next;
    }
  }

  void* allocate(std::size_t n) {
    if (block_size_ == 0) block_size_ = round_up(n);
    if (round_up(n) != block_size_) return ::operator new(n);
    chunk* c = with_space_;
    if (c == nullptr) c = add_chunk();
    block* b = c->free;
    c->free = b->next_free;
    ++c->live;
    if (c->free == nullptr) unlink_space(c);
    b->owner = c;
    return b->payload();
  }

  void deallocate(void* p, std::size_t n) noexcept {
    if (round_up(n) != block_size_) {
      ::operator delete(p);
      return;
    }
    block* b = block::of(p);
    chunk* c = b->owner;
    bool was_full = c->free == nullptr;
    b->next_free = c->free;
    c->free = b;
    --c->live;
    if (was_full) link_space(c);
    // An empty chunk goes back, unless it is the only one with space (a
    // connection closing and the next opening must not free and allocate a
    // chunk each time).
    if (c->live == 0 && (c->prev_space != nullptr || c->next_space != nullptr)) release(c);
  }

 private:
  struct chunk;
  // A block's header: its chunk while in use, the next free block while free.
  struct block {
    union {
      chunk* owner;
      block* next_free;
    };
    void* payload() noexcept { return reinterpret_cast<unsigned char*>(this) + header; }
    static block* of(void* payload) noexcept {
      return reinterpret_cast<block*>(static_cast<unsigned char*>(payload) - header);
    }
  };
  struct chunk {
    chunk* next = nullptr;  // all chunks
    chunk* prev = nullptr;
    chunk* next_space = nullptr;  // chunks with a free block
    chunk* prev_space = nullptr;
    block* free = nullptr;
    std::size_t live = 0;
  };
  static constexpr std::size_t align = alignof(std::max_align_t);
  static constexpr std::size_t header = (sizeof(block) + align - 1) / align * align;
  static constexpr std::size_t chunk_header = (sizeof(chunk) + align - 1) / align * align;

  static std::size_t round_up(std::size_t n) noexcept { return (n + align - 1) / align * align; }

  chunk* add_chunk() {
    std::size_t stride = header + block_size_;
    void* memory = ::operator new(chunk_header + chunk_blocks * stride);
    chunk* c = ::new (memory) chunk{};
    auto* first = static_cast<unsigned char*>(memory) + chunk_header;
    for (std::size_t i = chunk_blocks; i-- > 0;) {
      block* b = reinterpret_cast<block*>(first + i * stride);
      b->next_free = c->free;
      c->free = b;
    }
    c->next = chunks_;
    if (chunks_ != nullptr) chunks_->prev = c;
    chunks_ = c;
    link_space(c);
    return c;
  }

  void release(chunk* c) noexcept {
    unlink_space(c);
    if (c->prev != nullptr) c->prev->next = c->next;
    if (c->next != nullptr) c->next->prev = c->prev;
    if (chunks_ == c) chunks_ = c->next;
    ::operator delete(c);
  }

  void link_space(chunk* c) noexcept {
    c->prev_space = nullptr;
    c->next_space = with_space_;
    if (with_space_ != nullptr) with_space_->prev_space = c;
    with_space_ = c;
  }

  void unlink_space(chunk* c) noexcept {
    if (c->prev_space != nullptr) c->prev_space->next_space = c->next_space;
    if (c->next_space != nullptr) c->next_space->prev_space = c->prev_space;
    if (with_space_ == c) with_space_ = c->next_space;
    c->prev_space = c->next_space = nullptr;
  }

  std::size_t block_size_ = 0;
  chunk* chunks_ = nullptr;
  chunk* with_space_ = nullptr;
};

/// A standard allocator over a block_pool (for std::allocate_shared).
template <class T>
class pool_allocator {
 public:
  using value_type = T;

  explicit pool_allocator(block_pool& pool) noexcept : pool_(&pool) {}
  template <class U>
  pool_allocator(const pool_allocator<U>& other) noexcept : pool_(other.pool_) {}

  T* allocate(std::size_t n) { return static_cast<T*>(pool_->allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pool_->deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const pool_allocator<U>& other) const noexcept {
    return pool_ == other.pool_;
  }

 private:
  template <class>
  friend class pool_allocator;
  block_pool* pool_;
};

}  // namespace cluster::detail
