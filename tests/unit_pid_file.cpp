// Unit tests: the master's pid file and nginx's .oldbin convention during a
// binary upgrade.
#include <doctest/doctest.h>

#include <cluster/detail/pid_file.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using cluster::detail::pid_file;
using cluster::detail::read_pid_file;

struct temp_dir {
  temp_dir() {
    char t[] = "/tmp/cluster-pidfile-XXXXXX";
    REQUIRE(::mkdtemp(t) != nullptr);
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

std::string contents(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("pid file: written whole, and removed at exit while it still names this process") {
    temp_dir dir;
    const fs::path path = dir.path / "cluster.pid";
    {
      pid_file f(path.string());
      f.write(1234);
      CHECK(contents(path) == "1234\n");
      CHECK(read_pid_file(path.string()) == 1234);
      CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);  // no temporary left
    }
    CHECK_FALSE(fs::exists(path));
  }

  TEST_CASE("pid file: another process's file is left alone") {
    temp_dir dir;
    const fs::path path = dir.path / "cluster.pid";
    {
      pid_file f(path.string());
      f.write(1234);
      std::ofstream(path) << "5678\n";  // a new master wrote its own
    }
    CHECK(contents(path) == "5678\n");
  }

  TEST_CASE("pid file: an upgrade renames it PATH.oldbin; the old master removes only its .oldbin") {
    temp_dir dir;
    const fs::path path = dir.path / "cluster.pid";
    const fs::path oldbin = dir.path / "cluster.pid.oldbin";
    {
      pid_file old_master(path.string());
      old_master.write(1234);
      old_master.rename_to_oldbin();
      CHECK_FALSE(fs::exists(path));
      CHECK(contents(oldbin) == "1234\n");
      pid_file new_master(path.string());
      new_master.write(5678);
      old_master.remove();  // the old master exits
      CHECK_FALSE(fs::exists(oldbin));
      CHECK(contents(path) == "5678\n");
    }
    CHECK_FALSE(fs::exists(path));
  }

  TEST_CASE("pid file: a rolled-back upgrade restores PATH") {
    temp_dir dir;
    const fs::path path = dir.path / "cluster.pid";
    pid_file f(path.string());
    f.write(1234);
    f.rename_to_oldbin();
    f.restore_from_oldbin();
    CHECK(contents(path) == "1234\n");
    CHECK_FALSE(fs::exists(dir.path / "cluster.pid.oldbin"));
  }

  TEST_CASE("pid file: an unwritable path is an error naming it; no path writes nothing") {
    temp_dir dir;
    pid_file f((dir.path / "missing" / "cluster.pid").string());
    CHECK_THROWS_WITH_AS(f.write(1), doctest::Contains("cannot write the pid file"), std::runtime_error);
    pid_file none;
    none.write(1);
    CHECK(read_pid_file("") == 0);
  }
}
