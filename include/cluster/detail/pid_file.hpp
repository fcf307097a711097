// The master's pid file (--pid-file), nginx's convention: written once the
// master is ready, renamed PATH.oldbin while a binary upgrade hands over to a
// new master (which writes PATH when it is ready), removed at exit only when
// it still names this process.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace cluster::detail {

/// The pid in the file at `path`, or 0 when it is absent or holds no pid.
inline pid_t read_pid_file(const std::string& path) {
  std::ifstream in(path);
  long long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  return static_cast<pid_t>(pid);
}

/// A pid file this process writes and removes. Empty path: does nothing.
class pid_file {
 public:
  pid_file() = default;
  explicit pid_file(std::string path) : path_(std::move(path)) {}
  pid_file(const pid_file&) = delete;
  pid_file& operator=(const pid_file&) = delete;
  ~pid_file() { remove(); }

  /// Writes "PID\n" atomically (a temporary file renamed over PATH), so a
  /// reader never sees a half-written pid. Throws std::runtime_error naming
  /// the path.
  void write(pid_t pid) {
    if (path_.empty()) return;
    const std::string temporary = path_ + ".tmp" + std::to_string(pid);
    const std::string text = std::to_string(pid) + "\n";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int err = errno;
    if (fd >= 0) ::close(fd);
    if (ok && ::rename(temporary.c_str(), path_.c_str()) != 0) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      ::unlink(temporary.c_str());
      throw std::runtime_error("cluster: cannot write the pid file " + path_ + ": " + std::strerror(err));
    }
    written_ = pid;
  }

  /// During a binary upgrade: PATH becomes PATH.oldbin, for the old master.
  void rename_to_oldbin() {
    if (path_.empty() || written_ == 0) return;
    if (::rename(path_.c_str(), oldbin().c_str()) == 0) renamed_ = true;
  }

  /// The upgrade was rolled back: PATH.oldbin becomes PATH again.
  void restore_from_oldbin() {
    if (!renamed_) return;
    if (::rename(oldbin().c_str(), path_.c_str()) == 0) renamed_ = false;
  }

  /// Removes the file if it still names the pid this process wrote (a new
  /// master's file is never removed by the old one).
  void remove() noexcept {
    if (written_ == 0) return;
    try {
      const std::string where = renamed_ ? oldbin() : path_;
      if (read_pid_file(where) == written_) ::unlink(where.c_str());
    } catch (...) {
    }
    written_ = 0;
  }

  const std::string& path() const noexcept { return path_; }

 private:
  std::string oldbin() const { return path_ + ".oldbin"; }

  std::string path_;
  pid_t written_ = 0;
  bool renamed_ = false;
};

}  // namespace cluster::detail
