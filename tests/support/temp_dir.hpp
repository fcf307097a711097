// A fresh directory under /tmp for one test, removed with its contents when
// the test ends, whatever happened.
#pragma once

#include <filesystem>
#include <string>
#include <system_error>

#include <stdlib.h>

#include "process.hpp"

namespace test_support {

/// A directory /tmp/cluster-<stem>-XXXXXX.
class temp_dir {
 public:
  explicit temp_dir(const std::string& stem = "test") {
    std::string pattern = (std::filesystem::temp_directory_path() / ("cluster-" + stem + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw_errno("mkdtemp");
    path_ = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  const std::filesystem::path& path() const noexcept { return path_; }
  /// The path of `name` inside it.
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace test_support
