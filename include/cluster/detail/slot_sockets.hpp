// The slots' listening sockets, held by the master until it stops (bound
// here, handed over by an old master, or one passed by systemd), and
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

  /// Takes over listening sockets an old master handed over (binary upgrade),
  /// the first slots' in order; slots opened later bind beside them on the
  /// same address and port.
  void adopt(const std::vector<int>& fds, int backlog) {
    int reuseport = 0;
    socklen_t len = sizeof reuseport;
    ::getsockopt(fds.front(), SOL_SOCKET, SO_REUSEPORT, &reuseport, &len);
    if (!reuseport) {
      // The old master shared one socket systemd passed: so does this one.
      share(fds.front());
      return;
    }
    address_ = address_of(fds.front());
    port_ = bound_port(fds.front());
    backlog_ = backlog;
    adopted_.assign(fds.rbegin(), fds.rend());
  }

  /// Shares one socket passed by the service manager (socket activation)
  /// among every slot: the kernel's one accept queue, no steering.
  void share(int fd) {
    address_ = address_of(fd);
    port_ = bound_port(fd);
    shared_ = fd;
    fds_.push_back(fd);
  }

  const listen_address& address() const noexcept { return address_; }
  int port() const noexcept { return port_; }

  /// A socket for a new slot: an adopted one while any is left, the shared
  /// one, or a new one. Throws std::system_error naming the address.
  int open() {
    if (shared_ >= 0) return shared_;
    if (!adopted_.empty()) {
      fds_.push_back(adopted_.back());
      adopted_.pop_back();
      return fds_.back();
    }
    return fds_.emplace_back(open_listener(address_, port_, backlog_));
  }

  /// Adopted sockets no slot took (the old master had more slots): closed,
  /// as the old master's copies will be when it exits.
  std::size_t close_unused_adopted() {
    std::size_t n = adopted_.size();
    for (int fd : adopted_) ::close(fd);
    adopted_.clear();
    return n;
  }

  /// Drops the table's removed slots and closes their sockets.
  void close_removed(slot_table& table) {
    for (int fd : table.pop_removed())
      if (fd != shared_ && std::erase(fds_, fd) != 0) ::close(fd);
  }

  /// A graceful stop that owns its sockets closes the master's copies first:
  /// each worker then takes what is queued on its slot and closes the last
  /// copy, so the kernel refuses new connections instead of queueing ones no
  /// one will accept. Returns false (nothing closed) for a shared socket: the
  /// service manager keeps it, and its queue, for the next start.
  bool release_for_stop() {
    if (shared_ >= 0) return false;
    for (int fd : fds_) ::close(fd);
    fds_.clear();
    return true;
  }

  /// The slots' sockets in slot order, for a new master (binary upgrade).
  std::vector<int> for_handover(const slot_table& table) const {
    if (shared_ >= 0) return {shared_};
    std::vector<int> out;
    for (const slot_record& s : table.slots())
      if (s.active()) out.push_back(s.listen_fd);
    return out;
  }

  /// In a worker just forked for `slot`: closes every other slot's socket.
  void close_in_child(const slot_table& table, int slot) noexcept {
    const slot_record* own = table.slot(slot);
    for (const slot_record& s : table.slots())
      if (s.index != slot && (!own || s.listen_fd != own->listen_fd)) ::close(s.listen_fd);
  }

  /// Sends new connections to the slots that serve (slot_table::steering_targets).
  /// Called after every change that may alter that set, it costs a
  /// setsockopt only when it does; a kernel that refuses is reported once.
  void steer(const slot_table& table) {
    if (table.slots().empty() || shared_ >= 0) return;
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
  std::vector<int> fds_;      // open and owned: closed with this object
  std::vector<int> adopted_;  // handed over, not yet given to a slot (last first)
  int shared_ = -1;           // the one socket every slot shares (socket activation)
  std::vector<int> steered_;  // the slots new connections go to
  bool warned_ = false;
};

}  // namespace cluster::detail
