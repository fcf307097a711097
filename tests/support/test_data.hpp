// Test data: bodies that are no run of one byte (so that a misplaced or
// repeated piece shows), and files written in one call.
#pragma once

#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace test_support {

/// `n` bytes cycling through 23 letters (a prime, so unlike any power-of-two
/// piece size): a shifted or reordered piece does not compare equal.
inline std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 23);
  return s;
}

/// Writes `content` to `path` (created or truncated); throws when it cannot.
inline void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) throw std::runtime_error("write_file: cannot write " + path);
}

}  // namespace test_support
