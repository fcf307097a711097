// The slots' listening sockets, held by the master for its whole life, and
// the steering of new connections between them: a classic BPF program
// attached to the SO_REUSEPORT group maps (hash % n) to the socket of one of
// n target slots, so a retiring slot or one without a ready worker gets
// nothing new while what is already queued on it waits for its worker.
// Sockets of active slots stay open while the master runs, so slot i keeps
// index i in the kernel's reuseport group.
#pragma once

#include <cluster/detail/listener.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/slot_table.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cluster::detail {

/// The reuseport program sending connection hash h to slot targets[h % n].
/// For targets 0..n-1 it is the plain (hash % n); otherwise a jump table of
/// 2 instructions per target, within BPF_MAXINSNS for max_slots.
inline std::vector<sock_filter> steering_program(const std::vector<int>& targets) {
  std::vector<sock_filter> code{
      {BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<__u32>(SKF_AD_OFF + SKF_AD_RXHASH)},
      {BPF_ALU | BPF_MOD | BPF_K, 0, 0, static_cast<__u32>(targets.size())},
  };
  bool identity = true;
  for (std::size_t k = 0; k < targets.size(); ++k) identity = identity && targets[k] == static_cast<int>(k);
  if (identity) {
    code.push_back({BPF_RET | BPF_A, 0, 0, 0});
    return code;
  }
  for (std::size_t k = 0; k < targets.size(); ++k) {
    code.push_back({BPF_JMP | BPF_JEQ | BPF_K, 0, 1, static_cast<__u32>(k)});
    code.push_back({BPF_RET | BPF_K, 0, 0, static_cast<__u32>(targets[k])});
  }
  code.push_back({BPF_RET | BPF_K, 0, 0, static_cast<__u32>(targets.front())});
  return code;
}

/// The slots' sockets: one SO_REUSEPORT socket per slot on one address.
class slot_sockets {
 public:
  slot_sockets() = default;
  slot_sockets(const slot_sockets&) = delete;
  slot_sockets& operator=(const slot_sockets&) = delete;
  ~slot_sockets() {
    for (int fd : fds_) ::close(fd);
  }

  /// Sockets are opened on `address`, port `port` (claimed already), with `backlog`.
  void bind(const listen_address& address, int port, int backlog) {
    address_ = address;
    port_ = port;
    backlog_ = backlog;
  }

  const listen_address& address() const noexcept { return address_; }
  int port() const noexcept { return port_; }

  /// Opens a slot's socket. Throws std::system_error naming the address.
  int open() { return fds_.emplace_back(open_listener(address_, port_, backlog_)); }

  /// Drops the table's removed slots and closes their sockets.
  void close_removed(slot_table& table) {
    for (int fd : table.pop_removed()) {
      std::erase(fds_, fd);
      ::close(fd);
    }
  }

  /// In a worker just forked for `slot`: closes every other slot's socket.
  void close_in_child(const slot_table& table, int slot) noexcept {
    for (const slot_record& s : table.slots())
      if (s.index != slot) ::close(s.listen_fd);
  }

  /// Sends new connections to the slots that serve (slot_table::steering_targets).
  /// Called after every change that may alter that set, it costs a
  /// setsockopt only when it does; a kernel that refuses is reported once.
  void steer(const slot_table& table) {
    if (table.slots().empty()) return;
    std::vector<int> targets = table.steering_targets();
    if (targets.empty() || targets == steered_) return;
    steered_ = targets;
    std::vector<sock_filter> code = steering_program(targets);
    sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    if (::setsockopt(table.slots().front().listen_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0 &&
        !warned_) {
      warned_ = true;
      log_line("master", std::string("cannot steer connections between slots (") + std::strerror(errno) +
                             "); removing a slot may reset connections queued on it");
    }
  }

 private:
  listen_address address_;
  int port_ = 0;
  int backlog_ = 0;
  std::vector<int> fds_;
  std::vector<int> steered_;  // the slots new connections go to
  bool warned_ = false;
};

}  // namespace cluster::detail
