// Header fields: case-insensitive names (RFC 9110 §5.1), validated values, and
// a response header store that keeps small header sets off the heap.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cluster {

struct response;

/// One header field as received: views into the connection's buffer, valid for
/// the lifetime of the request that holds them.
struct header_field {
  std::string_view name;
  std::string_view value;
};

/// ASCII case-insensitive equality, the comparison RFC 9110 §5.1 requires for
/// field names.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

/// True when `c` may appear in a token (RFC 9110 §5.6.2 tchar).
constexpr bool is_token_char(char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

/// True when `name` is a valid field name: a non-empty token.
constexpr bool is_valid_field_name(std::string_view name) noexcept {
  return !name.empty() && std::all_of(name.begin(), name.end(), is_token_char);
}

/// True when `value` is a valid field value for sending: no CR, LF or NUL
/// (RFC 9110 §5.5), so a value can never split a response.
constexpr bool is_valid_field_value(std::string_view value) noexcept {
  return std::none_of(value.begin(), value.end(),
                      [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

/// The header fields of a response, kept serialised ("Name: value\r\n") in a
/// buffer with inline room for a typical set, so building a response usually
/// touches no heap. Names are compared case-insensitively; order is kept.
class response_headers {
 public:
  /// Bytes kept inline before the store moves to the heap.
  static constexpr std::size_t inline_capacity = 160;

  response_headers() noexcept = default;
  response_headers(const response_headers& other) { assign(other.view(), other.marks_); }
  response_headers(response_headers&& other) noexcept { steal(other); }
  response_headers& operator=(const response_headers& other) {
    if (this != &other) {
      size_ = 0;
      assign(other.view(), other.marks_);
    }
    return *this;
  }
  response_headers& operator=(response_headers&& other) noexcept {
    if (this != &other) {
      heap_.reset();
      data_ = inline_;
      capacity_ = inline_capacity;
      steal(other);
    }
    return *this;
  }
  ~response_headers() = default;

  /// Sets `name` to `value`, replacing every earlier field of that name.
  /// Throws std::invalid_argument for an invalid name or a value holding CR,
  /// LF or NUL.
  response_headers& set(std::string_view name, std::string_view value) {
    check(name, value);
    erase(name);
    append(name, value);
    return *this;
  }

  /// Adds a field without replacing earlier ones of the same name (for fields
  /// such as Set-Cookie that may repeat). Throws like set().
  response_headers& add(std::string_view name, std::string_view value) {
    check(name, value);
    append(name, value);
    return *this;
  }

  /// The value of the first field called `name`, or an empty view.
  std::string_view get(std::string_view name) const noexcept {
    std::string_view found;
    visit([&](std::string_view n, std::string_view v, std::size_t, std::size_t) {
      if (!iequals(n, name)) return false;
      found = v;
      return true;
    });
    return found;
  }

  /// True when a field called `name` is present.
  bool contains(std::string_view name) const noexcept {
    // The fields the server looks for on every response are tracked as they
    // are set, so asking for them costs no scan.
    if (std::uint8_t m = mark_of(name)) return (marks_ & m) != 0;
    bool found = false;
    visit([&](std::string_view n, std::string_view, std::size_t, std::size_t) {
      return found = iequals(n, name);
    });
    return found;
  }

  /// Removes every field called `name`; returns how many were removed.
  std::size_t erase(std::string_view name) noexcept {
    std::size_t removed = 0;
    if (size_ == 0) return 0;
    for (;;) {
      std::size_t begin = 0, end = 0;
      bool found = false;
      visit([&](std::string_view n, std::string_view, std::size_t b, std::size_t e) {
        if (!iequals(n, name)) return false;
        begin = b;
        end = e;
        return found = true;
      });
      if (!found) break;
      std::memmove(data_ + begin, data_ + end, size_ - end);
      size_ -= end - begin;
      ++removed;
    }
    if (removed != 0) marks_ &= static_cast<std::uint8_t>(~mark_of(name));
    return removed;
  }

  /// Calls `f(name, value)` for every field, in order.
  template <class F>
  void for_each(F&& f) const {
    visit([&](std::string_view n, std::string_view v, std::size_t, std::size_t) {
      f(n, v);
      return false;
    });
  }

  /// True when no field is set.
  bool empty() const noexcept { return size_ == 0; }

  /// The serialised fields, each "Name: value\r\n", ready to be written.
  std::string_view view() const noexcept { return {data_, size_}; }

 private:
  friend struct response;

  // Fields with a bit in marks_.
  static constexpr std::uint8_t date_mark = 1, connection_mark = 2;
  static constexpr std::uint8_t mark_of(std::string_view name) noexcept {
    if (name.size() == 4 && iequals(name, "Date")) return date_mark;
    if (name.size() == 10 && iequals(name, "Connection")) return connection_mark;
    return 0;
  }

  // Appends a field the library itself names and values (already valid, and
  // never Date or Connection), skipping the checks of set().
  void append_known(std::string_view name, std::string_view value) { append_bytes(name, value); }

  static void check(std::string_view name, std::string_view value) {
    if (!is_valid_field_name(name))
      throw std::invalid_argument("cluster::response_headers: invalid header name '" +
                                  std::string(name) + "' (must be a non-empty RFC 9110 token)");
    if (!is_valid_field_value(value))
      throw std::invalid_argument("cluster::response_headers: value of header '" +
                                  std::string(name) + "' contains CR, LF or NUL");
    // The server frames every message itself (RFC 9112 §6); a second,
    // disagreeing length would make the response ambiguous.
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding"))
      throw std::invalid_argument("cluster::response_headers: '" + std::string(name) +
                                  "' is set by the server from the body; do not set it");
  }

  // Calls f(name, value, begin, end) per field until it returns true.
  template <class F>
  void visit(F&& f) const {
    std::size_t pos = 0;
    while (pos < size_) {
      std::string_view rest(data_ + pos, size_ - pos);
      std::size_t colon = rest.find(':');
      std::size_t eol = rest.find("\r\n");
      std::string_view name = rest.substr(0, colon);
      std::string_view value = rest.substr(colon + 2, eol - colon - 2);
      if (f(name, value, pos, pos + eol + 2)) return;
      pos += eol + 2;
    }
  }

  void append(std::string_view name, std::string_view value) {
    marks_ |= mark_of(name);
    append_bytes(name, value);
  }

  void append_bytes(std::string_view name, std::string_view value) {
    std::size_t needed = size_ + name.size() + value.size() + 4;
    reserve(needed);
    char* out = data_ + size_;
    std::memcpy(out, name.data(), name.size());
    out += name.size();
    *out++ = ':';
    *out++ = ' ';
    std::memcpy(out, value.data(), value.size());
    out += value.size();
    *out++ = '\r';
    *out++ = '\n';
    size_ = needed;
  }

  void assign(std::string_view bytes, std::uint8_t marks) {
    reserve(bytes.size());
    if (!bytes.empty()) std::memcpy(data_, bytes.data(), bytes.size());
    size_ = bytes.size();
    marks_ = marks;
  }

  void reserve(std::size_t needed) {
    if (needed <= capacity_) return;
    std::size_t cap = std::max(needed, capacity_ * 2);
    auto bigger = std::make_unique<char[]>(cap);
    if (size_ != 0) std::memcpy(bigger.get(), data_, size_);
    heap_ = std::move(bigger);
    data_ = heap_.get();
    capacity_ = cap;
  }

  void steal(response_headers& other) noexcept {
    if (other.heap_) {
      heap_ = std::move(other.heap_);
      data_ = heap_.get();
      capacity_ = other.capacity_;
    } else {
      if (other.size_ != 0) std::memcpy(inline_, other.inline_, other.size_);
    }
    size_ = other.size_;
    marks_ = other.marks_;
    other.data_ = other.inline_;
    other.capacity_ = inline_capacity;
    other.size_ = 0;
    other.marks_ = 0;
  }

  std::unique_ptr<char[]> heap_;
  char* data_ = inline_;
  std::size_t size_ = 0;
  std::size_t capacity_ = inline_capacity;
  std::uint8_t marks_ = 0;  // date_mark, connection_mark: which of them are set
  char inline_[inline_capacity];
};

}  // namespace cluster
