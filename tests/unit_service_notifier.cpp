// Unit tests: the systemd notification datagrams, received on a fake
// NOTIFY_SOCKET (a path in a temporary directory, and an abstract name), as
// systemd would receive them.
#include <doctest/doctest.h>

#include <cluster/detail/service_notifier.hpp>

#include <cstdlib>
#include <string>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using cluster::detail::service_notifier;

// A datagram socket bound where a service manager would listen.
class fake_systemd {
 public:
  explicit fake_systemd(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (abstract) {
      name_ = "@cluster-test-notify-" + std::to_string(::getpid());
    } else {
      char dir[] = "/tmp/cluster-notify-XXXXXX";
      REQUIRE(::mkdtemp(dir) != nullptr);
      dir_ = dir;
      name_ = dir_ + "/notify";
    }
    std::memcpy(a.sun_path, name_.data(), name_.size());
    if (abstract) a.sun_path[0] = '\0';
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size())) == 0);
  }
  ~fake_systemd() {
    ::close(fd_);
    if (!dir_.empty()) {
      ::unlink(name_.c_str());
      ::rmdir(dir_.c_str());
    }
  }
  const std::string& name() const { return name_; }

  // The next datagram, or "(none)" after 5 s.
  std::string next() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return "(none)";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n < 0 ? "(error)" : std::string(buf, static_cast<std::size_t>(n));
  }
  bool idle() {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }

 private:
  int fd_ = -1;
  std::string dir_;
  std::string name_;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("service notifier: each state change is one datagram of KEY=value lines, in order") {
    for (bool abstract : {false, true}) {
      CAPTURE(abstract);
      fake_systemd systemd(abstract);
      service_notifier n(systemd.name(), std::chrono::microseconds(0));
      REQUIRE(n.enabled());
      n.ready("2/2 workers ready");
      n.status("2/2 workers ready, 1 restart");
      n.stopping("stopping");
      n.main_pid(4242);
      n.watchdog();
      CHECK(systemd.next() == "READY=1\nSTATUS=2/2 workers ready");
      CHECK(systemd.next() == "STATUS=2/2 workers ready, 1 restart");
      CHECK(systemd.next() == "STOPPING=1\nSTATUS=stopping");
      CHECK(systemd.next() == "MAINPID=4242");
      CHECK(systemd.next() == "WATCHDOG=1");
      CHECK(systemd.idle());
    }
  }

  TEST_CASE("service notifier: RELOADING=1 carries the monotonic time of the reload (Type=notify-reload)") {
    fake_systemd systemd(false);
    service_notifier n(systemd.name(), std::chrono::microseconds(0));
    timespec before{};
    ::clock_gettime(CLOCK_MONOTONIC, &before);
    n.reloading("reloading");
    timespec after{};
    ::clock_gettime(CLOCK_MONOTONIC, &after);
    std::string d = systemd.next();
    REQUIRE(d.starts_with("RELOADING=1\nMONOTONIC_USEC="));
    auto usec = std::stoll(d.substr(d.find('=', 12) + 1));
    CHECK(usec >= before.tv_sec * 1'000'000LL + before.tv_nsec / 1000);
    CHECK(usec <= after.tv_sec * 1'000'000LL + after.tv_nsec / 1000);
    CHECK(d.ends_with("\nSTATUS=reloading"));
  }

  TEST_CASE("service notifier: from the environment, with the watchdog at half of WATCHDOG_USEC for this pid only") {
    fake_systemd systemd(false);
    ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    ::unsetenv("WATCHDOG_PID");
    {
      auto n = service_notifier::from_environment();
      CHECK(n.enabled());
      CHECK(n.watchdog_interval() == std::chrono::microseconds(1'500'000));
      n.watchdog();
      CHECK(systemd.next() == "WATCHDOG=1");
    }
    ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);  // another process's watchdog
    CHECK(service_notifier::from_environment().watchdog_interval().count() == 0);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    CHECK(service_notifier::from_environment().watchdog_interval() == std::chrono::microseconds(1'500'000));
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    CHECK_FALSE(service_notifier::from_environment().enabled());
  }

  TEST_CASE("service notifier: an unusable NOTIFY_SOCKET disables it instead of failing") {
    service_notifier relative("run/notify", std::chrono::microseconds(0));
    CHECK_FALSE(relative.enabled());
    service_notifier too_long("/" + std::string(200, 'x'), std::chrono::microseconds(0));
    CHECK_FALSE(too_long.enabled());
    service_notifier nobody_listens("/nonexistent-dir/notify", std::chrono::microseconds(0));
    CHECK(nobody_listens.enabled());
    CHECK_FALSE(nobody_listens.send("READY=1"));  // logged once, never thrown
    CHECK_FALSE(nobody_listens.send("READY=1"));
    relative.ready("x");  // a disabled notifier ignores calls
  }
}
