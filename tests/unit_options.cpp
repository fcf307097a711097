// Unit tests: option validation and command-line parsing.
#include <cluster/options.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
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

  TEST_CASE("from_args reads the HTTP limits and timeouts") {
    env_guard p("PORT"), w("WORKERS");
    auto o = parse({"--max-target", "64", "--max-header-bytes=512", "--max-headers", "4", "--max-body", "4294967296",
                    "--max-connections", "2", "--header-timeout", "500", "--body-timeout=300", "--idle-timeout", "1",
                    "--write-timeout", "3600000"});
    CHECK(o.max_target == 64);
    CHECK(o.max_header_bytes == 512);
    CHECK(o.max_headers == 4);
    CHECK(o.max_body == (std::uint64_t{1} << 32));
    CHECK(o.max_connections == 2);
    CHECK(o.header_timeout == std::chrono::milliseconds(500));
    CHECK(o.body_timeout == std::chrono::milliseconds(300));
    CHECK(o.idle_timeout == std::chrono::milliseconds(1));
    CHECK(o.write_timeout == std::chrono::hours(1));
    CHECK_NOTHROW(o.validate());
    CHECK(parse({"--max-body", "0"}).max_body == 0);
  }

  TEST_CASE("HTTP limits and timeouts out of validate()'s ranges are refused on the command line too") {
    env_guard p("PORT"), w("WORKERS");
    const std::pair<const char*, const char*> bad[] = {
        {"--max-target", "15"},        {"--max-target", "1048577"},
        {"--max-header-bytes", "255"}, {"--max-header-bytes", "2000000"},
        {"--max-headers", "0"},        {"--max-headers", "10001"},
        {"--max-body", "-1"},          {"--max-body", "4294967297"},
        {"--max-connections", "0"},    {"--max-connections", "1000001"},
        {"--header-timeout", "0"},     {"--body-timeout", "3600001"},
        {"--idle-timeout", "0"},       {"--write-timeout", "0"},
        {"--header-timeout", "1.5"},   {"--max-body", "1e3x"},
    };
    for (auto [flag, value] : bad) {
      CAPTURE(flag);
      CAPTURE(value);
      auto msg = option_error_of([&] { parse({flag, value}); }, flag);
      CHECK(msg.find(std::string("'") + value + "'") != std::string::npos);
    }
  }

  TEST_CASE("usage() lists every HTTP limit and timeout flag") {
    std::string u = cluster::options::usage("prog");
    for (const char* flag : {"--max-target", "--max-header-bytes", "--max-headers", "--max-body", "--max-connections",
                             "--header-timeout", "--body-timeout", "--idle-timeout", "--write-timeout"}) {
      CAPTURE(flag);
      CHECK(u.find(flag) != std::string::npos);
    }
  }

  TEST_CASE("--pid-file takes a file in an existing directory, and refuses anything else naming the option") {
    const char* ok[] = {"prog", "--pid-file", "/tmp/cluster-test.pid"};
    CHECK(cluster::options::from_args(3, ok).pid_file == "/tmp/cluster-test.pid");
    const char* relative[] = {"prog", "--pid-file=cluster-test.pid"};
    CHECK(cluster::options::from_args(2, relative).pid_file == "cluster-test.pid");
    const char* missing_dir[] = {"prog", "--pid-file", "/nonexistent-dir/cluster.pid"};
    auto msg = option_error_of([&] { cluster::options::from_args(3, missing_dir); }, "--pid-file");
    CHECK(msg.find("/nonexistent-dir is not one") != std::string::npos);
    const char* directory[] = {"prog", "--pid-file", "/tmp"};
    option_error_of([&] { cluster::options::from_args(3, directory); }, "--pid-file");
    const char* empty[] = {"prog", "--pid-file="};
    option_error_of([&] { cluster::options::from_args(2, empty); }, "--pid-file");
    cluster::options o;
    o.pid_file = "/nonexistent-dir/x.pid";
    option_error_of([&] { o.validate(); }, "pid_file");
    CHECK(cluster::options::usage("prog").find("--pid-file PATH") != std::string::npos);
  }
}

TEST_SUITE("unit") {
  TEST_CASE("the operator's options: --user, --group, --cpu-affinity, --log-format and --drain-delay") {
    auto o = parse({"--user", "nobody", "--group", "nogroup", "--cpu-affinity", "auto", "--log-format=json",
                    "--drain-delay", "1500"});
    CHECK(o.user == "nobody");
    CHECK(o.group == "nogroup");
    CHECK(o.cpu_affinity == "auto");
    CHECK(o.log_format == "json");
    CHECK(o.drain_delay == std::chrono::milliseconds(1500));
    CHECK_NOTHROW(o.validate());
    CHECK(parse({"--user", "0"}).user == "0");  // a numeric uid
    CHECK(parse({}).log_format == "text");
    CHECK(parse({}).drain_delay.count() == 0);
  }

  TEST_CASE("the operator's options refuse what cannot work, naming the option, before any fork") {
    CHECK(option_error_of([] { parse({"--user", "no-such-user-here"}); }, "--user").find("known to this host") !=
          std::string::npos);
    CHECK(option_error_of([] { parse({"--group", "no-such-group-here"}); }, "--group").find("known to this host") !=
          std::string::npos);
    CHECK(option_error_of([] { parse({"--user", ""}); }, "--user") == "--user: expects a value, got ''");
    CHECK(option_error_of([] { parse({"--cpu-affinity", "fast"}); }, "--cpu-affinity").find("auto or a CPU list") !=
          std::string::npos);
    CHECK(option_error_of([] { parse({"--cpu-affinity", "1023"}); }, "--cpu-affinity")
              .find("may not run on CPU 1023") != std::string::npos);
    option_error_of([] { parse({"--cpu-affinity", "0,"}); }, "--cpu-affinity");
    option_error_of([] { parse({"--cpu-affinity", "-1"}); }, "--cpu-affinity");
    option_error_of([] { parse({"--cpu-affinity", "1-0"}); }, "--cpu-affinity");
    option_error_of([] { parse({"--cpu-affinity", "99999999999"}); }, "--cpu-affinity");
    CHECK(option_error_of([] { parse({"--log-format", "xml"}); }, "--log-format") ==
          "--log-format: expects text or json, got 'xml'");
    option_error_of([] { parse({"--drain-delay", "3600001"}); }, "--drain-delay");
    cluster::options o;
    o.log_format = "";
    option_error_of([&] { o.validate(); }, "log_format");
    o = {};
    o.user = "no-such-user-here";
    option_error_of([&] { o.validate(); }, "user");
    o = {};
    o.cpu_affinity = "auto,";
    option_error_of([&] { o.validate(); }, "cpu_affinity");
    o = {};
    o.host = "";
    option_error_of([&] { o.validate(); }, "host");
  }

  TEST_CASE("--cpu-affinity: auto is every CPU the process may use; a list is taken in order, round robin per slot") {
    const auto allowed = cluster::detail::allowed_cpus();
    REQUIRE_FALSE(allowed.empty());
    auto plan = cluster::detail::parse_cpu_affinity("auto");
    CHECK(plan.cpus == allowed);
    for (int slot = 0; slot < 5; ++slot)
      CHECK(plan.cpu_for(slot) == allowed[static_cast<std::size_t>(slot) % allowed.size()]);
    CHECK(cluster::detail::parse_cpu_affinity("").cpu_for(3) == -1);
    const int c = allowed.front();
    auto list = cluster::detail::parse_cpu_affinity(std::to_string(c) + "," + std::to_string(c) + "-" + std::to_string(c));
    CHECK(list.cpus == std::vector<int>{c, c});
  }

  TEST_CASE("usage() lists the text options with their defaults, and the drain delay") {
    const std::string u = cluster::options::usage("prog");
    for (const char* flag : {"--host ADDR", "--admin HOST:PORT|unix:P", "--pid-file PATH", "--user NAME",
                             "--group NAME", "--cpu-affinity auto|LIST", "--log-format text|json", "--drain-delay N"})
      CHECK_MESSAGE(u.find(flag) != std::string::npos, flag);
    CHECK(u.find("lifecycle log format (default text)") != std::string::npos);
  }
}
