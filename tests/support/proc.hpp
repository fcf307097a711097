// The tests' one reader of /proc: a process's state, parent, group and CPU
// ticks (/proc/PID/stat), its status fields (/proc/PID/status: memory, ids,
// CPUs), its open-files limit (/proc/PID/limits), its open
// descriptors (/proc/PID/fd), the processes of a parent or a group, and the
// queues of a loopback TCP connection (/proc/net/tcp). Every reader returns
// "nothing" for a process that has gone, which tests race with all the time.
#pragma once

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

namespace test_support {

/// What /proc/<pid>/stat says about a process.
struct process_status {
  char state = 0;  ///< R, S, D, Z, ...
  pid_t ppid = 0;
  pid_t pgrp = 0;                    ///< its process group
  unsigned long long cpu_ticks = 0;  ///< utime + stime, in clock ticks (sysconf(_SC_CLK_TCK) a second)
};

/// The state, parent, group and CPU time of `pid`, or nothing if there is no
/// such process.
inline std::optional<process_status> read_process_status(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(file, stat)) return std::nullopt;
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close_paren + 1));
  process_status st;
  if (!(rest >> st.state >> st.ppid)) return std::nullopt;
  if (!(rest >> st.pgrp)) return st;
  // session tty_nr tpgid flags minflt cminflt majflt cmajflt, then utime stime.
  std::string skipped;
  for (int i = 0; i < 8; ++i) rest >> skipped;
  unsigned long long utime = 0, stime = 0;
  if (rest >> utime >> stime) st.cpu_ticks = utime + stime;
  return st;
}

/// True while `pid` names a process that is not a zombie.
inline bool process_alive(pid_t pid) {
  auto st = read_process_status(pid);
  return st && st->state != 'Z' && st->state != 'X';
}

/// The value of a "<field>:" line of /proc/PID/status (Uid, Cpus_allowed_list),
/// without the blanks around it; empty when the process or the field is not there.
inline std::string status_text(pid_t pid, std::string_view field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  const std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(f, line);)
    if (line.starts_with(prefix)) {
      std::string v = line.substr(prefix.size());
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      return v;
    }
  return {};
}

/// A "<field>: <n> kB" line of /proc/PID/status (VmRSS, VmHWM), in KiB; -1
/// when the process or the field is not there.
inline long status_kib(pid_t pid, std::string_view field) {
  std::string v = status_text(pid, field);
  return v.empty() ? -1 : std::stol(v);
}

/// The soft limit on open files of `pid` (/proc/PID/limits), or -1.
inline long open_files_limit(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(f, line);)
    if (line.starts_with("Max open files")) return std::stol(line.substr(std::string_view("Max open files").size()));
  return -1;
}

/// Open descriptors of `pid` (entries of /proc/PID/fd), or 0 if it is gone.
inline std::size_t count_fds(pid_t pid) {
  std::size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

/// The io_uring rings `pid` can reach: (descriptors, distinct rings mapped),
/// from /proc/PID/fd links and /proc/PID/maps paths "anon_inode:[io_uring]".
inline std::pair<std::size_t, std::size_t> io_uring_rings(pid_t pid) {
  constexpr std::string_view ring = "anon_inode:[io_uring]";
  const std::string dir = "/proc/" + std::to_string(pid);
  std::size_t fds = 0;
  if (DIR* d = ::opendir((dir + "/fd").c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[64];
      ssize_t n = ::readlink((dir + "/fd/" + e->d_name).c_str(), target, sizeof target);
      if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == ring) ++fds;
    }
    ::closedir(d);
  }
  std::set<std::string> inodes;  // one ring is two or three mappings of one inode
  std::ifstream maps(dir + "/maps");
  for (std::string line; std::getline(maps, line);) {
    if (!line.ends_with(ring)) continue;
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode;
    fields >> range >> perms >> offset >> device >> inode;
    inodes.insert(inode);
  }
  return {fds, inodes.size()};
}

/// Every live (not zombie) process for which `keep(status)` holds.
template <class Keep>
std::vector<pid_t> live_processes_where(Keep keep) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (!proc) throw std::system_error(errno, std::generic_category(), "opendir(/proc)");
  while (dirent* entry = ::readdir(proc)) {
    pid_t pid = 0;
    std::string_view name = entry->d_name;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc{} || end != name.data() + name.size()) continue;
    auto st = read_process_status(pid);  // nothing if it exited meanwhile
    if (st && st->state != 'Z' && st->state != 'X' && keep(*st)) found.push_back(pid);
  }
  ::closedir(proc);
  return found;
}

/// Live processes whose parent is `parent`. Zombies are left out: they are
/// dead, only not yet reaped.
inline std::vector<pid_t> children_of(pid_t parent) {
  return live_processes_where([parent](const process_status& st) { return st.ppid == parent; });
}

/// Live processes in process group `group` (zombies left out). A
/// child_process is the leader of its own group and its workers inherit it,
/// so this finds what a cluster left behind, even reparented.
inline std::vector<pid_t> group_members(pid_t group) {
  return live_processes_where([group](const process_status& st) { return st.pgrp == group; });
}

/// The kernel's queues of one side of an IPv4 TCP connection, as
/// /proc/net/tcp shows them.
struct socket_queues {
  unsigned long tx = 0;  ///< bytes not sent yet
  unsigned long rx = 0;  ///< bytes not read yet
};

/// The queues of the socket bound to `local_port` and connected to
/// `remote_port` (IPv4), or nothing if there is no such connection.
inline std::optional<socket_queues> tcp_queues(std::uint16_t local_port, std::uint16_t remote_port) {
  auto port_of = [](const std::string& address) -> int {
    auto colon = address.find(':');
    if (colon == std::string::npos) return -1;
    int port = -1;
    std::from_chars(address.data() + colon + 1, address.data() + address.size(), port, 16);
    return port;
  };
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  for (int i = 0; i < 100'000 && std::getline(table, line); ++i) {
    // "sl local_address rem_address st tx_queue:rx_queue ..."
    std::istringstream fields(line);
    std::string sl, local, remote, state, queues;
    if (!(fields >> sl >> local >> remote >> state >> queues)) continue;
    if (port_of(local) != local_port || port_of(remote) != remote_port) continue;
    auto colon = queues.find(':');
    if (colon == std::string::npos) return std::nullopt;
    socket_queues q;
    std::from_chars(queues.data(), queues.data() + colon, q.tx, 16);
    std::from_chars(queues.data() + colon + 1, queues.data() + queues.size(), q.rx, 16);
    return q;
  }
  return std::nullopt;
}

}  // namespace test_support
