// Unit tests: option validation and command-line parsing.
#include <cluster/options.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace {

cluster::options parse(std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return cluster::options::from_args(static_cast<int>(args.size()), args.data());
}

// Runs `f`, expecting an option_error naming `option`; returns its message.
template <class F>
std::string option_error_of(F&& f, const std::string& option) {
  try {
    f();
  } catch (const cluster::option_error& e) {
    CHECK(e.option() == option);
    return e.what();
  }
  FAIL("no option_error for " << option);
  return {};
}

struct env_guard {
  explicit env_guard(const char* n) : name(n) { ::unsetenv(name); }
  ~env_guard() { ::unsetenv(name); }
  const char* name;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("default options are valid") {
    cluster::options o;
    CHECK_NOTHROW(o.validate());
    CHECK(o.effective_workers() == cluster::options::cpu_count());
    CHECK(o.effective_workers() >= 1);
  }

  TEST_CASE("out-of-range options are refused with the option and the range") {
    cluster::options o;
    o.workers = -1;
    auto msg = option_error_of([&] { o.validate(); }, "workers");
    CHECK(msg.find("[0, 1024]") != std::string::npos);
    CHECK(msg.find("-1") != std::string::npos);

    cluster::options p;
    p.port = 65536;
    msg = option_error_of([&] { p.validate(); }, "port");
    CHECK(msg.find("[0, 65535]") != std::string::npos);

    cluster::options t;
    t.idle_timeout = std::chrono::milliseconds(0);
    option_error_of([&] { t.validate(); }, "idle_timeout");

    cluster::options h;
    h.max_header_bytes = 10;
    option_error_of([&] { h.validate(); }, "max_header_bytes");

    cluster::options e;
    e.host = "";
    option_error_of([&] { e.validate(); }, "host");
  }

  TEST_CASE("from_args reads --port, --host, --workers in both spellings") {
    env_guard p("PORT"), w("WORKERS");
    auto o = parse({"--port", "9000", "--host=127.0.0.1", "--workers", "3", "--shutdown-timeout=250"});
    CHECK(o.port == 9000);
    CHECK(o.host == "127.0.0.1");
    CHECK(o.workers == 3);
    CHECK(o.shutdown_timeout == std::chrono::milliseconds(250));
    CHECK_FALSE(o.help);
    CHECK(parse({"--help"}).help);
  }

  TEST_CASE("from_args takes PORT and WORKERS from the environment, flags win") {
    env_guard p("PORT"), w("WORKERS");
    ::setenv("PORT", "7000", 1);
    ::setenv("WORKERS", "5", 1);
    auto o = parse({});
    CHECK(o.port == 7000);
    CHECK(o.workers == 5);
    CHECK(parse({"--port", "7001"}).port == 7001);
    ::setenv("PORT", "abc", 1);
    option_error_of([] { parse({}); }, "PORT");
  }

  TEST_CASE("from_args refuses unknown flags, missing and malformed values") {
    env_guard p("PORT"), w("WORKERS");
    option_error_of([] { parse({"--bogus"}); }, "--bogus");
    option_error_of([] { parse({"--port"}); }, "--port");
    auto msg = option_error_of([] { parse({"--port", "8o"}); }, "--port");
    CHECK(msg.find("'8o'") != std::string::npos);
    option_error_of([] { parse({"--workers", "2000"}); }, "--workers");
    option_error_of([] { parse({"--port", "-1"}); }, "--port");
  }
}
