// The options that are not numbers, parsed and checked: the listening
// host, the admin endpoint's address ("HOST:PORT", "[V6]:PORT",
// "unix:PATH"), the pid file's path and the log format (the workers' user
// and CPUs: process_identity.hpp, cpu_affinity.hpp). Each check throws option_error naming the option as the user
// spelled it (field name, or flag).
#pragma once

#include <charconv>
#include <string>
#include <system_error>

#include <sys/stat.h>

#include <cluster/option_error.hpp>

namespace cluster::detail {

/// Throws option_error naming `option` for an empty host.
inline void check_host(const std::string& host, const std::string& option = "host") {
  if (host.empty()) throw option_error(option, "must not be empty (e.g. 0.0.0.0, ::, 127.0.0.1)");
}

/// Throws option_error naming `option` unless `format` is "text" or "json".
inline void check_log_format(const std::string& format, const std::string& option = "log_format") {
  if (format != "text" && format != "json") throw option_error(option, "expects text or json, got '" + format + "'");
}

/// Where the admin endpoint listens, parsed from options::admin.
struct admin_address {
  bool unix_socket = false;
  std::string path;  ///< for a Unix socket
  std::string host;  ///< for TCP
  int port = 0;
};

/// Parses "HOST:PORT", "[V6]:PORT" or "unix:PATH". Throws option_error
/// naming `option`.
inline admin_address parse_admin_address(const std::string& spec, const std::string& option = "admin") {
  auto bad = [&](const std::string& why) {
    return option_error(option, "expects HOST:PORT (port 0..65535, 0 = any free port) or unix:PATH; " + why +
                                    ", got '" + spec + "'");
  };
  admin_address a;
  if (spec.starts_with("unix:")) {
    a.unix_socket = true;
    a.path = spec.substr(5);
    if (a.path.empty() || a.path.size() > 107) throw bad("the path must be 1..107 bytes");
    return a;
  }
  auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) throw bad("no port");
  a.host = spec.substr(0, colon);
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
  std::string port = spec.substr(colon + 1);
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value < 0 || value > 65535)
    throw bad("the port must be 0..65535");
  a.port = value;
  return a;
}

/// Throws option_error naming `option` unless `path` can be a pid file: not
/// empty, not a directory, in a directory that exists.
inline void check_pid_file_path(const std::string& path, const std::string& option = "pid_file") {
  if (path.empty()) throw option_error(option, "expects a file path, got ''");
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw option_error(option, "expects a file in an existing directory; " + dir + " is not one, got '" + path + "'");
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw option_error(option, "expects a file path; '" + path + "' is a directory");
}

}  // namespace cluster::detail
