// A response body: bytes the response owns (the default), a shared immutable
// buffer, a view of bytes that outlive the write, or an open file sent with
// sendfile(2). The server writes the last three from where they are, never
// copying them into its output buffer.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

namespace cluster {

/// An open regular file to be sent as a body: its descriptor (owned: closed
/// when the file_part is destroyed, or by close()), its size in bytes and its
/// modification time, both as fstat(2) saw them when it was opened.
class file_part {
 public:
  /// No file.
  file_part() noexcept = default;
  /// Adopts `fd` (closed by this object from now on), of `size` bytes,
  /// modified at `modified` (seconds since the epoch).
  file_part(int fd, std::uint64_t size, std::time_t modified) noexcept : fd_(fd), size_(size), modified_(modified) {}
  file_part(file_part&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), size_(other.size_), modified_(other.modified_) {}
  file_part& operator=(file_part&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
      size_ = other.size_;
      modified_ = other.modified_;
    }
    return *this;
  }
  /// A copy holds a duplicate of the descriptor (sharing its file and
  /// offset, which sendfile and pread leave alone); throws std::system_error
  /// when the process is out of descriptors.
  file_part(const file_part& other) : size_(other.size_), modified_(other.modified_) { fd_ = duplicate(other.fd_); }
  file_part& operator=(const file_part& other) {
    if (this != &other) *this = file_part(other);
    return *this;
  }
  ~file_part() { close(); }

  /// The descriptor, or -1 when there is none.
  int fd() const noexcept { return fd_; }
  /// Bytes in the file when it was opened.
  std::uint64_t size() const noexcept { return size_; }
  /// Modification time when it was opened, in seconds since the epoch.
  std::time_t modified() const noexcept { return modified_; }
  /// Closes the descriptor now (idempotent).
  void close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static int duplicate(int fd) {
    if (fd < 0) return -1;
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw std::system_error(errno, std::generic_category(), "cluster::file_part: dup");
    return copy;
  }

  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::time_t modified_ = 0;
};

/// A response body in one of four kinds. Assigning a std::string or a
/// string literal makes an owned body, so `res.body = "hi"` and
/// `res.body = std::move(s)` work as they did when the body was a string.
class body {
 public:
  /// What the body holds, and so who keeps its bytes alive.
  enum class kind : std::uint8_t {
    owned,   ///< a std::string of its own (moved in: no copy)
    shared,  ///< a std::shared_ptr<const std::string>: kept alive by a reference until written
    view,    ///< bytes the caller keeps alive until the response is written
    file,    ///< an open regular file, sent with sendfile(2)
  };

  /// An empty owned body.
  body() noexcept = default;
  /// An owned body: `text` is moved in (no copy when passed an rvalue).
  body(std::string text) noexcept : store_(std::in_place_index<0>, std::move(text)) {}
  /// An owned body: a copy of the NUL-terminated `text`.
  body(const char* text) : store_(std::in_place_index<0>, text) {}
  /// An owned body: a copy of `text` (for no copy, see from_view()).
  body(std::string_view text) : store_(std::in_place_index<0>, text) {}

  /// A body written from `bytes`, which nobody may modify while it is shared
  /// (the type says const); the response holds a reference until the bytes
  /// are written, so the string lives as long as it is needed. A null pointer
  /// is an empty body.
  static body from_shared(std::shared_ptr<const std::string> bytes) noexcept {
    body b;
    b.store_.emplace<1>(std::move(bytes));
    return b;
  }

  /// A body written straight from `bytes`, which the caller guarantees to
  /// keep alive and unchanged until the response has been written: a string
  /// literal, other static storage, or an object that outlives the server.
  /// Nothing checks this; for anything shorter-lived use from_shared().
  static body from_view(std::string_view bytes) noexcept {
    body b;
    b.store_.emplace<2>(bytes);
    return b;
  }

  /// A body sent from an open file (see response::file(), which opens it).
  static body from_file(file_part file) noexcept {
    body b;
    b.store_.emplace<3>(std::move(file));
    return b;
  }

  /// Which kind of body this is.
  kind which() const noexcept { return static_cast<kind>(store_.index()); }

  /// Length of the body in bytes (for a file: its size when opened).
  std::size_t size() const noexcept {
    if (const file_part* f = file()) return static_cast<std::size_t>(f->size());
    return bytes().size();
  }
  /// True when size() is 0.
  bool empty() const noexcept { return size() == 0; }

  /// The bytes of an owned, shared or view body; empty for a file body,
  /// whose bytes are not in memory.
  std::string_view bytes() const noexcept {
    switch (store_.index()) {
      case 0: return *std::get_if<0>(&store_);
      case 1: {
        const auto& p = *std::get_if<1>(&store_);
        return p ? std::string_view(*p) : std::string_view();
      }
      case 2: return *std::get_if<2>(&store_);
      default: return {};
    }
  }

  /// The string of an owned body (to move it out or to build it in place),
  /// or null for another kind.
  std::string* owned() noexcept { return std::get_if<0>(&store_); }
  /// The file of a file body, or null for another kind.
  const file_part* file() const noexcept { return std::get_if<3>(&store_); }
  /// The file of a file body, or null for another kind.
  file_part* file() noexcept { return std::get_if<3>(&store_); }

  /// Appends `more`; a shared or view body first becomes an owned copy.
  /// Throws std::logic_error on a file body.
  body& operator+=(std::string_view more) {
    if (which() == kind::file) throw std::logic_error("cluster::body: cannot append to a file body");
    if (which() != kind::owned) store_.emplace<0>(bytes());
    std::get_if<0>(&store_)->append(more);
    return *this;
  }
  /// Appends one character; see operator+=(std::string_view).
  body& operator+=(char c) { return *this += std::string_view(&c, 1); }

  /// True when the body's bytes are `text`; a file body equals no text
  /// (its bytes are on disk).
  friend bool operator==(const body& b, std::string_view text) noexcept {
    return b.which() != kind::file && b.bytes() == text;
  }

 private:
  // Index order is kind's order: which() is the index.
  std::variant<std::string, std::shared_ptr<const std::string>, std::string_view, file_part> store_;
};

}  // namespace cluster
