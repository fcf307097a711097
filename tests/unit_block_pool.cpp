// Unit tests: the fixed-size block pool that holds a server's connections,
// and the handler slot that holds a connection's pending wait.
#include <cluster/detail/block_pool.hpp>
#include <cluster/detail/handler_slot.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

using cluster::detail::block_pool;
using cluster::detail::handler_slot;

TEST_SUITE("unit") {
  TEST_CASE("block pool: distinct aligned blocks, reused once freed, other sizes from the heap") {
    block_pool pool;
    std::vector<void*> blocks;
    std::set<void*> distinct;
    for (std::size_t i = 0; i < 3 * block_pool::chunk_blocks + 5; ++i) {
      void* p = pool.allocate(200);
      CHECK(reinterpret_cast<std::uintptr_t>(p) % alignof(std::max_align_t) == 0);
      std::memset(p, static_cast<int>(i), 200);  // each block is writable in full (ASan checks the bounds)
      blocks.push_back(p);
      distinct.insert(p);
    }
    CHECK(distinct.size() == blocks.size());
    void* last = blocks.back();
    pool.deallocate(last, 200);
    CHECK(pool.allocate(200) == last);  // the block just freed is the next one given
    void* other = pool.allocate(300);   // another size: plain heap memory
    std::memset(other, 0, 300);
    pool.deallocate(other, 300);
    for (void* p : blocks) pool.deallocate(p, 200);
    // Everything free: the pool is reusable from scratch.
    std::vector<void*> again;
    for (std::size_t i = 0; i < 2 * block_pool::chunk_blocks; ++i) again.push_back(pool.allocate(200));
    for (void* p : again) pool.deallocate(p, 200);
  }

  TEST_CASE("block pool: std::allocate_shared places object and control block in one pool block") {
    block_pool pool;
    struct thing {
      int value;
    };
    auto a = std::allocate_shared<thing>(cluster::detail::pool_allocator<thing>(pool), thing{7});
    auto b = std::allocate_shared<thing>(cluster::detail::pool_allocator<thing>(pool), thing{8});
    CHECK(a->value == 7);
    CHECK(b->value == 8);
    a.reset();
    auto c = std::allocate_shared<thing>(cluster::detail::pool_allocator<thing>(pool), thing{9});
    CHECK(c->value == 9);
  }

  TEST_CASE("handler slot: one operation in place, a second or a larger one from the heap") {
    handler_slot<64> slot;
    void* first = slot.allocate(64);
    void* second = slot.allocate(16);  // the slot is taken
    void* large = nullptr;
    CHECK(first != second);
    slot.deallocate(second);
    slot.deallocate(first);
    CHECK(slot.allocate(32) == first);  // free again: in place
    large = slot.allocate(65);
    CHECK(large != first);
    slot.deallocate(large);
    slot.deallocate(first);
  }
}
