// bodies: the server of benchmarks/run.py's `sizes` and `bodies` sections
// (issue 15): response bodies of 12 B to 1 MiB, from memory and from files,
// and request bodies read whole.
//   build-bench/benchmarks/bodies --dir DIR --port 8080 --workers 1
//   GET  /mem/{12,4k,64k,1m}    the bytes of DIR/{12,4k,64k,1m}, loaded once at
//                               start, answered as a shared body (never copied)
//   GET  /file/{12,4k,64k,1m}   the same file, opened on every request and sent
//                               with sendfile (response::file)
//   POST /echo-size             the length of the received body, in decimal
// `--dir DIR` is taken out of argv before cluster::run sees the rest. The
// runner writes the four files; nginx serves the same ones.
#include <cluster/cluster.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <optional>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

// The sizes the runner asks for; each is the name of a file in --dir.
constexpr std::array<std::string_view, 4> size_names{"12", "4k", "64k", "1m"};
constexpr std::string_view content_type = "application/octet-stream";

// The whole file at `path`, or std::nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<std::string> out;
  if (::fstat(fd, &st) == 0) {
    std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
      ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    if (got == bytes.size()) out = std::move(bytes);
  }
  ::close(fd);
  return out;
}

// Index of `name` in size_names, or -1.
int size_index(std::string_view name) {
  for (std::size_t i = 0; i < size_names.size(); ++i)
    if (size_names[i] == name) return static_cast<int>(i);
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir = argv[++i];
      continue;
    }
    rest.push_back(argv[i]);
  }
  if (dir.empty()) {
    std::cerr << "bodies: --dir DIR is required (a directory with the files 12, 4k, 64k and 1m)\n";
    return 2;
  }
  // Loaded before the fork: every worker shares these pages.
  std::array<std::shared_ptr<const std::string>, size_names.size()> loaded;
  std::array<std::string, size_names.size()> file_paths;
  for (std::size_t i = 0; i < size_names.size(); ++i) {
    file_paths[i] = dir + "/" + std::string(size_names[i]);
    auto bytes = read_file(file_paths[i]);
    if (!bytes) {
      std::cerr << "bodies: cannot read " << file_paths[i] << ": " << std::strerror(errno) << "\n";
      return 2;
    }
    loaded[i] = std::make_shared<const std::string>(std::move(*bytes));
  }

  auto handler = [&](const cluster::request& req) {
    std::string_view path = req.path();
    if (req.method() == "POST" && path == "/echo-size")
      return cluster::response::text(std::to_string(req.body().size()) + "\n");
    if (req.method() != "GET") return cluster::response::empty(cluster::status::method_not_allowed);
    for (std::string_view prefix : {std::string_view("/mem/"), std::string_view("/file/")}) {
      if (!path.starts_with(prefix)) continue;
      int i = size_index(path.substr(prefix.size()));
      if (i < 0) break;
      auto at = static_cast<std::size_t>(i);
      if (prefix == "/mem/") return cluster::response::shared(loaded[at], content_type);
      return cluster::response::file(file_paths[at], content_type);
    }
    return cluster::response::text("not found\n", cluster::status::not_found);
  };
  return cluster::run(handler, static_cast<int>(rest.size()), rest.data());
}
