// The Content-Type of a file served by response::file() when the handler
// names none: a small table by file name extension, as a static file server
// needs for the common web formats, and application/octet-stream otherwise.
#pragma once

#include <cluster/headers.hpp>

#include <string_view>

namespace cluster::detail {

/// The media type for a file named `path` (its last extension, compared
/// without regard to case); "application/octet-stream" when unknown.
inline std::string_view media_type_for(std::string_view path) noexcept {
  struct entry {
    std::string_view extension;
    std::string_view type;
  };
  static constexpr entry table[] = {
      {"html", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"ico", "image/vnd.microsoft.icon"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
      {"xml", "application/xml"},
  };
  std::string_view name = path.substr(path.find_last_of('/') + 1);  // npos + 1 == 0: the whole path
  std::size_t dot = name.find_last_of('.');
  if (dot != std::string_view::npos && dot != 0) {
    std::string_view extension = name.substr(dot + 1);
    for (const entry& e : table)
      if (iequals(extension, e.extension)) return e.type;
  }
  return "application/octet-stream";
}

}  // namespace cluster::detail
