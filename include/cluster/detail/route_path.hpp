// The path a router matches: the request-target's path, percent-decoded
// once, segment by segment (so an encoded '/' stays inside its segment),
// with its dot segments removed (RFC 3986 §5.2.4: ".." never climbs above
// the root), written into the request's routing storage.
#pragma once

#include <cluster/url.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace cluster::detail {

/// Most segments a routed path may have ("/a/b/c" has three); a longer path
/// is answered 414.
inline constexpr std::size_t max_path_segments = 64;

/// How splitting a request-target into segments went.
enum class path_verdict {
  ok,        ///< the segments are set
  asterisk,  ///< the target is "*" (asterisk-form, RFC 9112 §3.2.4: OPTIONS *)
  bad,       ///< a malformed escape, an escaped NUL, or no path: 400
  too_long,  ///< more than max_path_segments segments: 414
};

/// The decoded segments of a path: "/users/42/" has "users", "42" and ""
/// (the empty last segment is the trailing slash). Views into the text the
/// path was decoded into.
struct path_segments {
  /// One segment; trivial, so that the array is not initialised per request.
  struct span {
    const char* data;
    std::size_t size;
  };
  std::array<span, max_path_segments> items;  // the first `count` are set
  std::size_t count = 0;

  /// Segment `i` (< count).
  std::string_view operator[](std::size_t i) const noexcept { return {items[i].data, items[i].size}; }
  /// The decoded path from segment `i` to the end ("42/" for i = 1 above);
  /// what a trailing wildcard matches.
  std::string_view rest(std::size_t i) const noexcept {
    if (i >= count) return {};
    const char* begin = items[i].data;
    const char* end = items[count - 1].data + items[count - 1].size;
    return {begin, static_cast<std::size_t>(end - begin)};
  }
};

/// The path part of `target`: origin-form as is; absolute-form
/// ("http://host/p?q", RFC 9112 §3.2.2; http or https) without scheme and
/// authority (a static "/" when it has no path); empty for anything else. (Loops by hand: the
/// library's find_first_of calls memchr once per character.)
constexpr std::string_view target_path(std::string_view target) noexcept {
  std::size_t end = 0;
  while (end < target.size() && target[end] != '?' && target[end] != '#') ++end;
  std::string_view path = target.substr(0, end);
  if (path.starts_with('/')) return path;
  std::size_t scheme = path.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view name = path.substr(0, scheme);
  auto equal_nocase = [name](std::string_view lower) {
    if (name.size() != lower.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i)
      if ((name[i] | 0x20) != lower[i]) return false;
    return true;
  };
  if (!equal_nocase("http") && !equal_nocase("https")) return {};
  std::size_t slash = path.find('/', scheme + 3);
  return slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
}

/// Splits `raw` (a path, starting with '/') into `segments`, views into
/// it, in one pass; false when it has something to decode, a dot segment
/// or a NUL (split_path's decoding pass handles those), or more than
/// max_path_segments segments.
constexpr bool split_plain(std::string_view raw, path_segments& segments) noexcept {
  std::size_t count = 0;
  std::size_t start = 1;
  for (std::size_t i = 1;; ++i) {
    if (i == raw.size() || raw[i] == '/') {
      if (count == max_path_segments) return false;
      segments.items[count++] = {raw.data() + start, i - start};
      if (i == raw.size()) break;
      start = i + 1;
    } else if (raw[i] == '%' || raw[i] == '\0' || (raw[i] == '.' && i == start)) {
      return false;
    }
  }
  segments.count = count;
  return true;
}

/// Decodes the path of `target` into `out` (its capacity already at least
/// target.size(): nothing here reallocates) and sets `segments` to views
/// into it; a path with nothing to decode and no dot segment (the usual
/// one) is not copied: the segments are views into `target`.
inline path_verdict split_path(std::string_view target, std::string& out, path_segments& segments) {
  segments.count = 0;
  if (target == "*") return path_verdict::asterisk;
  std::string_view raw = target_path(target);
  if (raw.empty()) return path_verdict::bad;
  if (split_plain(raw, segments)) return path_verdict::ok;
  segments.count = 0;
  const std::size_t base = out.size();
  // Segment bounds are kept as offsets into `out` until every byte is
  // written; the views are made at the end. (Not initialised: only the
  // first `count` are ever read.)
  std::array<std::size_t, max_path_segments> starts;
  std::array<std::size_t, max_path_segments> sizes;
  std::size_t count = 0;
  // Where the next segment goes: after the last one kept and a '/'. A
  // removed dot segment (or the one ".." removes) is written over, so the
  // decoded path stays contiguous.
  auto next_start = [&] { return count > 0 ? starts[count - 1] + sizes[count - 1] + 1 : base; };
  auto keep = [&](std::size_t start, std::size_t n) {
    if (count == max_path_segments) return false;
    if (count > 0) out[start - 1] = '/';
    starts[count] = start;
    sizes[count++] = n;
    return true;
  };
  out.resize(base + raw.size());
  raw.remove_prefix(1);  // the leading '/'
  for (;;) {
    const std::size_t slash = raw.find('/');
    const bool last = slash == std::string_view::npos;
    const std::size_t start = next_start();
    const std::size_t n = percent_decode(raw.substr(0, slash), out.data() + start, url_plus::literal, bad_escape::refuse);
    if (n == std::string_view::npos) return path_verdict::bad;
    const std::string_view decoded(out.data() + start, n);
    if (decoded.find('\0') != std::string_view::npos) return path_verdict::bad;
    if (decoded == "." || decoded == "..") {
      if (decoded == ".." && count > 0) --count;
      // "/a/.." and "/a/." name a directory: they end in an empty segment.
      if (last && !keep(next_start(), 0)) return path_verdict::too_long;
    } else if (!keep(start, n)) {
      return path_verdict::too_long;
    }
    if (last) break;
    raw.remove_prefix(slash + 1);
  }
  out.resize(count > 0 ? starts[count - 1] + sizes[count - 1] : base);
  for (std::size_t i = 0; i < count; ++i) segments.items[i] = {out.data() + starts[i], sizes[i]};
  segments.count = count;
  return path_verdict::ok;
}

}  // namespace cluster::detail
