// Limits that more than one file must agree on, each defined once: the
// options table validates against them, the master sizes its tables by
// them, the control channel frames by them.
#pragma once

#include <cstddef>

namespace cluster::detail {

/// Most worker slots a cluster can have (options::workers, scale(), SIGTTIN).
inline constexpr int max_slots = 1024;

/// Largest control-channel packet: below Linux's default socket buffer limit
/// (wmem_max), so a packet always fits in the peer's queue when it is empty.
inline constexpr std::size_t max_packet = 160 * 1024;

/// Bytes of the fixed header in front of every control-channel message.
inline constexpr std::size_t message_header_size = 24;

/// Largest payload a single control-channel message can carry (163,816).
inline constexpr std::size_t max_payload = max_packet - message_header_size;

/// Bytes of messages a process keeps queued for one channel before senders
/// get backpressure (try_send fails with `full`, send waits).
inline constexpr std::size_t channel_queue_bytes = 1 << 20;

}  // namespace cluster::detail
