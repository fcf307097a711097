// Unit tests: the binary upgrade handover's pieces: the environment that
// carries the listening sockets, its validation, and the spawn that keeps
// exactly those descriptors open across exec.
#include <doctest/doctest.h>

#include <cluster/detail/binary_upgrade.hpp>

#include <stdexcept>
#include <string>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace cluster::detail;

struct listener {
  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
  }
  ~listener() { ::close(fd); }
  int fd = -1;
};

std::string refusal(const char* listeners, const char* admin, const char* ready) {
  try {
    parse_handover(listeners, admin, ready);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("binary upgrade: the handed-over sockets round-trip through the environment, slot order kept") {
    listener a, b, admin;
    const std::string slots = encode_descriptors({b.fd, a.fd});
    CHECK(slots == std::to_string(b.fd) + "," + std::to_string(a.fd));
    const std::string admin_text = std::to_string(admin.fd);
    auto h = parse_handover(slots.c_str(), admin_text.c_str(), "5");
    CHECK(h.slots == std::vector<int>{b.fd, a.fd});
    CHECK(h.admin == admin.fd);
    CHECK(h.ready_fd == 5);
    CHECK(parse_handover(nullptr, nullptr, nullptr).empty());
  }

  TEST_CASE("binary upgrade: a malformed or foreign handover is refused, naming the variable") {
    listener a;
    int p[2];
    REQUIRE(::pipe(p) == 0);
    const std::string not_socket = std::to_string(p[0]);
    CHECK(refusal("", nullptr, nullptr) == "CLUSTER_UPGRADE_LISTENERS: \"\" is not a descriptor number");
    CHECK(refusal("-4", nullptr, nullptr).starts_with("CLUSTER_UPGRADE_LISTENERS: \"-4\""));
    CHECK(refusal(not_socket.c_str(), nullptr, nullptr) ==
          "CLUSTER_UPGRADE_LISTENERS descriptor " + not_socket + " is not a socket");
    const std::string good = std::to_string(a.fd);
    CHECK(refusal((good + ",x").c_str(), nullptr, nullptr) == "CLUSTER_UPGRADE_LISTENERS: \"x\" is not a descriptor number");
    CHECK(refusal(good.c_str(), not_socket.c_str(), nullptr) ==
          "CLUSTER_UPGRADE_ADMIN descriptor " + not_socket + " is not a socket");
    CHECK(refusal(good.c_str(), nullptr, "ready").starts_with("CLUSTER_UPGRADE_READY_FD"));
    ::close(p[0]);
    ::close(p[1]);
  }

  TEST_CASE("binary upgrade: the new program gets the listeners and the ready pipe open, and says ready on it") {
    listener slot;
    int ready[2];
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    program_image image{"/bin/sh",
                        {"sh", "-c",
                         "[ -e /proc/$$/fd/${CLUSTER_UPGRADE_LISTENERS} ] && "
                         "[ -z \"${CLUSTER_UPGRADE_ADMIN-}\" ] && printf R >&${CLUSTER_UPGRADE_READY_FD}"}};
    handed_over pass{{slot.fd}, -1, ready[1]};
    pid_t pid = spawn_upgrade(image, pass);
    REQUIRE(pid > 0);
    ::close(ready[1]);
    pollfd p{ready[0], POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10'000) == 1);
    char c = 0;
    CHECK(::read(ready[0], &c, 1) == 1);
    CHECK(c == upgrade_ready_byte);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    ::close(ready[0]);
  }

  TEST_CASE("binary upgrade: the program image is the running file and its arguments") {
    auto image = program_image::of_this_process();
    CHECK(image.path.ends_with("cluster_tests"));
    REQUIRE_FALSE(image.arguments.empty());
    CHECK(image.arguments[0].ends_with("cluster_tests"));
  }
}
