// Unit tests: where the slots' sockets come from (bound, handed over by an
// old master, or one shared socket passed by systemd) and what a graceful
// stop and a worker's fork do with them.
#include <doctest/doctest.h>

#include <cluster/detail/slot_sockets.hpp>

#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace cluster::detail;

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

int listening_socket(bool reuseport, int port = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (reuseport) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  return fd;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("slot sockets: handed-over sockets serve the first slots in order; later slots bind beside them") {
    int first = listening_socket(true);
    int second = listening_socket(true, bound_port(first));
    slot_sockets sockets;
    sockets.adopt({first, second}, 16);
    CHECK(sockets.port() == bound_port(first));
    CHECK(sockets.open() == first);
    CHECK(sockets.open() == second);
    int third = sockets.open();  // a new SO_REUSEPORT socket on the same port
    CHECK(third != first);
    CHECK(third != second);
    CHECK(bound_port(third) == bound_port(first));
    slot_table table;
    for (int fd : {first, second, third}) table.add_slot(fd);
    CHECK(sockets.for_handover(table) == std::vector<int>{first, second, third});
    CHECK(sockets.release_for_stop());  // a stop that owns its sockets closes them
    CHECK_FALSE(is_open(first));
    CHECK_FALSE(is_open(third));
  }

  TEST_CASE("slot sockets: sockets handed over beyond the configured slots are closed") {
    int first = listening_socket(true);
    int extra = listening_socket(true, bound_port(first));
    slot_sockets sockets;
    sockets.adopt({first, extra}, 16);
    CHECK(sockets.open() == first);
    CHECK(sockets.close_unused_adopted() == 1);
    CHECK_FALSE(is_open(extra));
    CHECK(is_open(first));
  }

  TEST_CASE("slot sockets: one passed socket is shared by every slot and survives a fork, a removal and a stop") {
    int passed = listening_socket(false);
    slot_sockets sockets;
    sockets.share(passed);
    slot_table table;
    for (int i = 0; i < 3; ++i) table.add_slot(sockets.open());
    for (const slot_record& s : table.slots()) CHECK(s.listen_fd == passed);
    sockets.close_in_child(table, 1);  // a worker keeps its own (the same) socket
    CHECK(is_open(passed));
    CHECK(sockets.for_handover(table) == std::vector<int>{passed});
    CHECK_FALSE(sockets.release_for_stop());  // systemd keeps it, and its queue
    CHECK(is_open(passed));
  }

  TEST_CASE("slot sockets: a handed-over socket without SO_REUSEPORT was a shared one and stays shared") {
    int passed = listening_socket(false);
    slot_sockets sockets;
    sockets.adopt({passed}, 16);
    CHECK(sockets.open() == passed);
    CHECK(sockets.open() == passed);
    CHECK_FALSE(sockets.release_for_stop());
    CHECK(is_open(passed));
  }
}
