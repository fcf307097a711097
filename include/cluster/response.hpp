// The response a handler returns.
#pragma once

#include <cluster/body.hpp>
#include <cluster/detail/http_date.hpp>
#include <cluster/detail/media_types.hpp>
#include <cluster/headers.hpp>
#include <cluster/status.hpp>

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace cluster {

/// An HTTP response. The server owns the framing: it adds Date,
/// Content-Length and Connection itself, so handlers set only the status, their
/// own fields and the body. A handler may set "Connection: close" to close the
/// connection after this response.
struct response {
  /// Status code, 100..999 (see cluster::status for names).
  int status = 200;
  /// Fields sent after the server's own (Date, Content-Length, Connection).
  response_headers headers;
  /// The body (see cluster::body for its kinds and their lifetimes); not
  /// sent for HEAD requests or for 1xx, 204 and 304 statuses.
  cluster::body body;

  /// A response with the given status and body and a Content-Type.
  static response with(int status, std::string body, std::string_view content_type) {
    return make(status, std::move(body), content_type, false);
  }

  /// A text/plain (UTF-8) response.
  static response text(std::string body, int status = 200) {
    return make(status, std::move(body), "text/plain; charset=utf-8", true);
  }
  /// A text/plain (UTF-8) response with a named status.
  static response text(std::string body, cluster::status code) {
    return text(std::move(body), static_cast<int>(code));
  }

  /// A text/html (UTF-8) response.
  static response html(std::string body, int status = 200) {
    return make(status, std::move(body), "text/html; charset=utf-8", true);
  }

  /// An application/json response; `body` must already be JSON.
  static response json(std::string body, int status = 200) {
    return make(status, std::move(body), "application/json", true);
  }

  /// A 200 response written straight from `body`, which the response keeps
  /// alive with a reference until it is written (no copy; serving it costs
  /// no allocation). Throws std::invalid_argument for an invalid
  /// `content_type`.
  static response shared(std::shared_ptr<const std::string> body, std::string_view content_type) {
    return make(200, cluster::body::from_shared(std::move(body)), content_type, false);
  }

  /// A 200 response written straight from `body`, which the caller keeps
  /// alive and unchanged until the response is written: a literal or other
  /// static storage, or an object that outlives the server (nothing checks
  /// it; use shared() otherwise). Throws std::invalid_argument for an
  /// invalid `content_type`.
  static response view(std::string_view body, std::string_view content_type) {
    return make(200, cluster::body::from_view(body), content_type, false);
  }

  /// A 200 response sending the regular file at `path` with sendfile(2):
  /// Content-Length is its size and Last-Modified its modification time
  /// (IMF-fixdate, RFC 9110 §8.8.2) as fstat(2) gives them when it is opened
  /// here; Content-Type is `content_type`, or when empty one chosen by the
  /// file's extension (html, css, js, json, png, ...; otherwise
  /// application/octet-stream). A missing file is a 404 response, one that
  /// may not be read or is not a regular file a 403, any other failure to
  /// open it (out of descriptors) a 500; all plain text. The file is opened
  /// as given: a handler mapping request paths to files must refuse ".."
  /// and the like itself. The descriptor is closed once the body is sent or
  /// the response dropped; a file that shrinks while it is sent closes the
  /// connection (the promised length cannot be met). No ranges. Throws
  /// std::invalid_argument for an invalid `content_type`.
  static response file(std::string_view path, std::string_view content_type = {}) {
    char name[PATH_MAX];
    if (path.empty() || path.size() >= sizeof name || path.find('\0') != std::string_view::npos)
      return text("Not Found\n", 404);  // no such name can exist
    std::memcpy(name, path.data(), path.size());
    name[path.size()] = '\0';
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer, stalling
    // the worker; it changes nothing for a regular file.
    int fd = ::open(name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      int error = errno;
      if (error == ENOENT || error == ENOTDIR || error == ENAMETOOLONG || error == ELOOP)
        return text("Not Found\n", 404);
      if (error == EACCES || error == EPERM) return text("Forbidden\n", 403);
      return text("Internal Server Error\n", 500);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return text("Forbidden\n", 403);
    }
    response r = make(200, cluster::body::from_file(file_part(fd, static_cast<std::uint64_t>(st.st_size), st.st_mtime)),
                      content_type.empty() ? detail::media_type_for(path) : content_type, content_type.empty());
    char date[detail::imf_fixdate_length];
    detail::format_imf_fixdate(st.st_mtime, date);
    r.headers.append_known("Last-Modified", std::string_view(date, sizeof date));
    return r;
  }

  /// A response with no body and no Content-Type, e.g. 204 or a redirect.
  static response empty(int status) {
    response r;
    r.status = status;
    return r;
  }
  /// A response with no body, with a named status.
  static response empty(cluster::status code) { return empty(static_cast<int>(code)); }

  /// Sets a header field (replacing earlier ones of that name); chainable.
  /// Throws std::invalid_argument for an invalid name or value.
  response& set(std::string_view name, std::string_view value) {
    headers.set(name, value);
    return *this;
  }

 private:
  // `known`: one of the library's own content types, valid without a check.
  static response make(int status, cluster::body body, std::string_view content_type, bool known) {
    response r;
    r.status = status;
    if (known)
      r.headers.append_known("Content-Type", content_type);
    else
      r.headers.set("Content-Type", content_type);
    r.body = std::move(body);
    return r;
  }
};

}  // namespace cluster
