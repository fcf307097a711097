// The fields of a query string ("a=1&b=x%20y"), decoded, as a range that
// reads them in place: no allocation, whatever the number of fields.
#pragma once

#include <cluster/url.hpp>

#include <cstddef>
#include <iterator>
#include <string_view>

namespace cluster {

/// One field of a query string, percent-decoded ('+' as a space): "b=x%20y"
/// gives name "b" and value "x y"; a field without '=' has an empty value.
struct query_field {
  std::string_view name;
  std::string_view value;
};

namespace detail {

/// How long `raw` is once decoded as a query string piece (malformed escapes
/// kept as they are).
constexpr std::size_t query_decoded_size(std::string_view raw) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < raw.size(); ++i, ++n)
    if (escaped_byte(raw, i) >= 0) i += 2;
  return n;
}

/// The next non-empty '&'-separated piece of `rest`, removed from it; empty
/// when none is left.
constexpr std::string_view next_query_pair(std::string_view& rest) noexcept {
  while (!rest.empty()) {
    std::size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (!pair.empty()) return pair;
  }
  return {};
}

/// Decodes every field of `raw` into `out` (room for raw.size() bytes) as
/// name, value, name, value ... without separators; returns the length.
/// query_fields walks `raw` beside it to find where each piece ends.
constexpr std::size_t decode_query(std::string_view raw, char* out) noexcept {
  std::size_t n = 0;
  for (std::string_view pair = next_query_pair(raw); !pair.empty(); pair = next_query_pair(raw)) {
    std::size_t eq = pair.find('=');
    n += percent_decode(pair.substr(0, eq), out + n, url_plus::space, bad_escape::keep);
    if (eq != std::string_view::npos)
      n += percent_decode(pair.substr(eq + 1), out + n, url_plus::space, bad_escape::keep);
  }
  return n;
}

}  // namespace detail

/// The fields of a query string in the order sent, each decoded (see
/// request::query_params()). Views stay valid as long as the request's do.
class query_fields {
 public:
  /// Reads the fields of `raw` (the query as received) from `decoded` (what
  /// detail::decode_query wrote for it).
  constexpr query_fields(std::string_view raw, std::string_view decoded) noexcept : raw_(raw), decoded_(decoded) {}

  /// A forward iterator over the fields.
  class iterator {
   public:
    using value_type = query_field;
    using difference_type = std::ptrdiff_t;
    using reference = const query_field&;
    using pointer = const query_field*;
    using iterator_category = std::forward_iterator_tag;

    constexpr iterator() noexcept = default;
    constexpr iterator(std::string_view raw, std::string_view decoded) noexcept : rest_(raw), decoded_(decoded) {
      advance();
    }
    constexpr reference operator*() const noexcept { return field_; }
    constexpr pointer operator->() const noexcept { return &field_; }
    constexpr iterator& operator++() noexcept {
      advance();
      return *this;
    }
    constexpr iterator operator++(int) noexcept {
      iterator before = *this;
      advance();
      return before;
    }
    constexpr bool operator==(const iterator& other) const noexcept {
      return done_ == other.done_ && (done_ || rest_.data() == other.rest_.data());
    }

   private:
    constexpr void advance() noexcept {
      std::string_view pair = detail::next_query_pair(rest_);
      if (pair.empty()) {
        done_ = true;
        return;
      }
      std::size_t eq = pair.find('=');
      std::size_t name = detail::query_decoded_size(pair.substr(0, eq));
      std::size_t value = eq == std::string_view::npos ? 0 : detail::query_decoded_size(pair.substr(eq + 1));
      field_ = {decoded_.substr(0, name), decoded_.substr(name, value)};
      done_ = false;
      decoded_.remove_prefix(name + value);
    }

    std::string_view rest_;
    std::string_view decoded_;
    query_field field_;
    bool done_ = true;
  };

  constexpr iterator begin() const noexcept { return {raw_, decoded_}; }
  constexpr iterator end() const noexcept { return {}; }

  /// The value of the first field called `name` (exact, case-sensitive
  /// comparison of decoded names), or an empty view.
  constexpr std::string_view get(std::string_view name) const noexcept {
    for (const query_field& f : *this)
      if (f.name == name) return f.value;
    return {};
  }

  /// True when a field called `name` is present (even with an empty value).
  constexpr bool contains(std::string_view name) const noexcept {
    for (const query_field& f : *this)
      if (f.name == name) return true;
    return false;
  }

 private:
  std::string_view raw_;
  std::string_view decoded_;
};

}  // namespace cluster
