// A new worker's shedding of the master's io_uring rings (builds with
// -Dio_uring=enabled). fork() copies the master's ring descriptor and its
// MAP_SHARED ring mappings into the child: the worker never uses them (it
// builds an io_context, and so a ring, of its own), but they would keep the
// master's ring pinned in every worker and count its pages (about 1.6 MiB
// for Asio's 16,384 entries) in each worker's RSS. With epoll there is
// nothing to shed: the worker simply never touches the master's epoll fd.
#pragma once

#if defined(ASIO_HAS_IO_URING)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace cluster::detail {

#if defined(ASIO_HAS_IO_URING)
/// How /proc names a ring, in a mapping's path and a descriptor's link.
inline constexpr std::string_view ring_name = "anon_inode:[io_uring]";

/// In a child right after fork(), before it builds its own io_context:
/// unmaps every io_uring mapping and closes every io_uring descriptor, all
/// of which are the parent's. Best effort: what /proc does not show stays.
inline void drop_inherited_rings() noexcept {
  if (std::FILE* maps = std::fopen("/proc/self/maps", "re")) {
    // Collected first: unmapping while reading would change the file.
    struct range {
      unsigned long begin, end;
    };
    range found[16];
    int count = 0;
    char line[512];
    while (count < 16 && std::fgets(line, sizeof line, maps)) {
      std::string_view text(line);
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
      if (!text.ends_with(ring_name)) continue;
      unsigned long begin = 0, end = 0;
      if (std::sscanf(line, "%lx-%lx", &begin, &end) == 2 && end > begin) found[count++] = {begin, end};
    }
    std::fclose(maps);
    for (int i = 0; i < count; ++i)
      ::munmap(reinterpret_cast<void*>(found[i].begin), found[i].end - found[i].begin);
  }
  if (DIR* fds = ::opendir("/proc/self/fd")) {
    int own = ::dirfd(fds);
    int to_close[16];
    int count = 0;
    while (dirent* entry = ::readdir(fds)) {
      char target[64];
      ssize_t n = ::readlinkat(own, entry->d_name, target, sizeof target);
      int fd = std::atoi(entry->d_name);
      if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == ring_name && fd != own && count < 16)
        to_close[count++] = fd;
    }
    ::closedir(fds);
    for (int i = 0; i < count; ++i) ::close(to_close[i]);
  }
}
#else
/// Without io_uring there is no ring to shed.
inline void drop_inherited_rings() noexcept {}
#endif

}  // namespace cluster::detail
