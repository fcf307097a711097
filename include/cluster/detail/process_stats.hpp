// What /proc says about a process: its CPU time, memory and descriptors,
// for the admin endpoint's process metrics, its CPU % (rate_sampler.hpp)
// and the master's max_memory check. The one place the library reads /proc about running processes
// (binary_upgrade.hpp reads only its own /proc/self/exe and cmdline).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
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

/// Reads /proc/<pid>/stat and counts /proc/<pid>/fd.
inline process_stats read_process_stats(pid_t pid) {
  process_stats p;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return p;
  // The command name may hold spaces and parentheses: fields follow the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return p;
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 22) return p;
  // Fields from "state" (3) on: utime 14, stime 15, starttime 22, vsize 23, rss 24.
  double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
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

/// A process's user + system CPU seconds, from one read(2) of
/// /proc/<pid>/stat into a stack buffer (the master asks this once a second
/// per worker, so it is kept far cheaper than read_process_stats: no stream,
/// no /proc/stat, no descriptor count); nothing when the process is gone.
inline std::optional<double> process_cpu_seconds(pid_t pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char line[1024];  // a stat line is about 300 bytes; utime and stime come early
  ssize_t n = ::read(fd, line, sizeof line - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  line[n] = '\0';
  // The command name may hold spaces and parentheses: fields follow the
  // last ')', one space apart. utime and stime are fields 14 and 15, the
  // 12th and 13th after it.
  char* at = std::strrchr(line, ')');
  for (int field = 3; at && field <= 14; ++field) at = std::strchr(at + 1, ' ');
  if (!at) return std::nullopt;
  char* end = nullptr;
  const unsigned long long utime = std::strtoull(at + 1, &end, 10);
  if (end == at + 1 || *end != ' ') return std::nullopt;
  const unsigned long long stime = std::strtoull(end + 1, &at, 10);
  if (at == end + 1) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
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
