// A connection's input bytes: one heap buffer that the socket reads into and
// the parser reads from, holding the message in progress contiguous so that a
// request's views stay valid, compacted and grown up to a limit. It knows
// offsets, not HTTP: the parser says what of the message must be kept.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace cluster::detail {

/// The input side's storage. Offsets are from the start of the buffer:
///
///     0 ... message_start() ... parsed() ... end() ... capacity()
///           [ message in progress ][ read, not yet parsed ][ free ]
///
/// Invariant: message_start() <= parsed() <= end() <= capacity() <= limit,
/// and, while compacting, message_start() <= keep_end <= parsed(). Bytes
/// before message_start() belong to answered messages and may be dropped;
/// bytes of the message in progress up to keep_end are views a request may
/// hold and move only to the front, as one block. Once refused (the parser
/// stopped inside a message, whose offsets then no longer describe it) the
/// buffer is never compacted, grown or read into again.
class input_buffer {
 public:
  /// Bytes allocated at the first read (a typical request's header block
  /// fits, as in nginx's 1k client_header_buffer_size).
  static constexpr std::size_t initial_capacity = 2048;
  /// Smallest free space offered to a read (below the limit).
  static constexpr std::size_t min_read = 1024;
  /// What the buffer grows to while a body is read whole (nginx's
  /// client_body_buffer_size is 16k on 64-bit systems), if the limit allows.
  static constexpr std::size_t body_capacity = 16 * 1024;

  /// `limit`: the most bytes the buffer may ever hold.
  explicit input_buffer(std::size_t limit) noexcept : limit_(limit) {}

  input_buffer(const input_buffer&) = delete;
  input_buffer& operator=(const input_buffer&) = delete;

  /// Writable free space after end(): at least min_read bytes unless the
  /// buffer is at its limit. Compacts first when the free space is short,
  /// keeping the message in progress up to `keep_end` and the unparsed
  /// bytes; grows (doubling, up to the limit) when that is not enough, or to
  /// body_capacity when `body` (a body is read whole). Never after refuse().
  std::span<char> read_space(std::size_t keep_end, bool body) {
    assert(!refused_);
    if (!data_) {
      capacity_ = std::min(initial_capacity, limit_);
      data_ = std::make_unique_for_overwrite<char[]>(capacity_);
    }
    if (capacity_ - end_ < min_read) compact(keep_end);
    if (capacity_ - end_ < min_read && capacity_ < limit_)
      grow(std::min(capacity_ * 2, limit_));
    else if (body && capacity_ < body_limit())
      grow(body_limit());  // read a body in larger pieces
    return {data_.get() + end_, capacity_ - end_};
  }

  /// Records that `n` bytes were written into read_space().
  void commit(std::size_t n) noexcept {
    end_ += n;
    assert(invariants_hold());
  }

  /// Start of the buffer (null before the first read_space()).
  const char* data() const noexcept { return data_.get(); }
  /// First byte of the message in progress.
  std::size_t message_start() const noexcept { return message_start_; }
  /// End of the bytes the parser has consumed.
  std::size_t parsed() const noexcept { return parsed_; }
  /// End of the bytes read.
  std::size_t end() const noexcept { return end_; }
  /// Bytes allocated.
  std::size_t capacity() const noexcept { return capacity_; }
  /// The most bytes the buffer may hold.
  std::size_t limit() const noexcept { return limit_; }

  /// The bytes of the message in progress read so far.
  std::string_view message() const noexcept {
    return data_ ? std::string_view(data_.get() + message_start_, end_ - message_start_) : std::string_view{};
  }

  /// True when no byte of a message in progress is buffered.
  bool empty() const noexcept { return message_start_ == end_; }

  /// Records how far the parser got: `at` in [message_start(), end()].
  void parsed_to(std::size_t at) noexcept {
    parsed_ = at;
    assert(invariants_hold());
  }

  /// The message in progress is done: the next one starts at parsed(). When
  /// nothing is pending the buffer rewinds to its start, for free.
  void next_message() noexcept {
    message_start_ = parsed_;
    if (message_start_ == end_) message_start_ = parsed_ = end_ = 0;
  }

  /// Moves the message in progress (everything from message_start()) to the
  /// front and makes room for `wanted` bytes in all (capped by the limit), so
  /// that what follows is read behind it without moving it again.
  void keep_message_in_place(std::size_t wanted) {
    assert(!refused_);
    if (message_start_ != 0) {
      std::memmove(data_.get(), data_.get() + message_start_, end_ - message_start_);
      parsed_ -= message_start_;
      end_ -= message_start_;
      message_start_ = 0;
    }
    if (capacity_ < wanted) grow(std::min(std::max(wanted, capacity_ * 2), limit_));
  }

  /// The input was refused: from now on the offsets are left as they are.
  void refuse() noexcept { refused_ = true; }
  /// True after refuse().
  bool refused() const noexcept { return refused_; }

  /// The invariant stated above (keep_end aside).
  bool invariants_hold() const noexcept {
    return message_start_ <= parsed_ && parsed_ <= end_ && end_ <= capacity_ && capacity_ <= limit_;
  }

 private:
  std::size_t body_limit() const noexcept { return std::min(limit_, body_capacity); }

  // Drops answered messages and the bytes of the message in progress between
  // keep_end and parsed() (body bytes already delivered), moving the rest to
  // the front: [message_start, keep_end) then [parsed, end).
  void compact(std::size_t keep_end) noexcept {
    assert(message_start_ <= keep_end && keep_end <= parsed_ && invariants_hold());
    std::size_t keep = keep_end - message_start_;
    if (message_start_ != 0 && keep != 0) std::memmove(data_.get(), data_.get() + message_start_, keep);
    std::size_t pending = end_ - parsed_;
    if (pending != 0 && parsed_ != keep) std::memmove(data_.get() + keep, data_.get() + parsed_, pending);
    message_start_ = 0;
    parsed_ = keep;
    end_ = keep + pending;
  }

  void grow(std::size_t capacity) {
    // No zeroing: every byte is written before it is read.
    auto bigger = std::make_unique_for_overwrite<char[]>(capacity);
    if (end_ != 0) std::memcpy(bigger.get(), data_.get(), end_);
    data_ = std::move(bigger);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> data_;
  std::size_t limit_;
  std::size_t capacity_ = 0;
  std::size_t message_start_ = 0;
  std::size_t parsed_ = 0;
  std::size_t end_ = 0;
  bool refused_ = false;
};

}  // namespace cluster::detail
