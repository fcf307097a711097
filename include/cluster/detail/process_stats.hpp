// What /proc says about a process: its CPU time, memory and descriptors,
// for the admin endpoint's process metrics, its CPU % (rate_sampler.hpp)
// and the master's max_memory check. The one place the library reads /proc
// about running processes (binary_upgrade.hpp reads only its own
// /proc/self/exe and cmdline).
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

namespace cluster::detail {

/// A process's resource use, from /proc.
struct process_stats {
  double cpu_seconds = 0;         ///< user + system time
  std::uint64_t rss_bytes = 0;    ///< resident set size
  std::uint64_t vsize_bytes = 0;  ///< virtual memory size
  double start_time = 0;          ///< seconds since the epoch
  int open_fds = 0;
  bool found = false;
};

/// The fields of /proc/<pid>/stat from "state" (field 3) on; empty when the
/// process is gone or the line is malformed.
inline std::vector<std::string> read_stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return {};
  // The command name may hold spaces and parentheses: fields follow the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return {};
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  return f;
}

/// Index in read_stat_fields() of utime (field 14); stime follows it.
inline constexpr std::size_t stat_utime = 11;
/// Fields read_process_stats() needs, up to rss (field 24).
inline constexpr std::size_t stat_fields_needed = 22;

/// User + system CPU seconds from read_stat_fields()'s result.
inline double cpu_seconds_of(const std::vector<std::string>& f) {
  return (std::stod(f[stat_utime]) + std::stod(f[stat_utime + 1])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// A process's user + system CPU seconds from one read of /proc/<pid>/stat
/// (cheaper than read_process_stats: no /proc/stat, no descriptor count);
/// nothing when the process is gone.
inline std::optional<double> process_cpu_seconds(pid_t pid) {
  std::vector<std::string> f = read_stat_fields(pid);
  if (f.size() < stat_fields_needed) return std::nullopt;
  return cpu_seconds_of(f);
}

/// Reads /proc/<pid>/stat and counts /proc/<pid>/fd.
inline process_stats read_process_stats(pid_t pid) {
  process_stats p;
  std::vector<std::string> f = read_stat_fields(pid);
  if (f.size() < stat_fields_needed) return p;
  // Fields from "state" (3) on: utime 14, stime 15, starttime 22, vsize 23, rss 24.
  double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  p.cpu_seconds = cpu_seconds_of(f);
  double boot = 0;
  {
    std::ifstream s("/proc/stat");
    for (std::string line; std::getline(s, line);)
      if (line.starts_with("btime ")) boot = std::stod(line.substr(6));
  }
  p.start_time = boot + std::stod(f[19]) / ticks;
  p.vsize_bytes = std::stoull(f[20]);
  p.rss_bytes = std::stoull(f[21]) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++p.open_fds;
    ::closedir(d);
  }
  p.found = true;
  return p;
}

/// A process's resident set size from /proc/<pid>/statm (cheaper than
/// read_process_stats: one small read); 0 when the process is gone.
inline std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace cluster::detail
