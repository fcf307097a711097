// Unit tests: the admin endpoint's renderers over a fabricated snapshot. The
// JSON must parse (checked by a strict little RFC 8259 reader, odd strings
// and absent latencies as null included) and carry the rates; the
// Prometheus text must follow exposition format 0.0.4 (HELP and TYPE before
// each family's samples, cumulative histogram buckets ending at +Inf =
// count) and add no rate; the table has an aligned row per slot.
#include <doctest/doctest.h>

#include <cluster/detail/status_report.hpp>

#include <cctype>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

using namespace cluster::detail;

namespace {

// A strict JSON reader that only says whether `text` is one valid value.
class json_checker {
 public:
  explicit json_checker(std::string_view text) : s_(text) {}

  bool valid() {
    skip();
    if (!value()) return false;
    skip();
    return i_ == s_.size();
  }

 private:
  bool value() {
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return string();
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number();
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return true;
      }
    return false;
  }

  bool object() {
    ++i_;
    skip();
    if (eat('}')) return true;
    do {
      skip();
      if (!string()) return false;
      skip();
      if (!eat(':')) return false;
      skip();
      if (!value()) return false;
      skip();
    } while (eat(','));
    return eat('}');
  }

  bool array() {
    ++i_;
    skip();
    if (eat(']')) return true;
    do {
      skip();
      if (!value()) return false;
      skip();
    } while (eat(','));
    return eat(']');
  }

  bool string() {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // control characters must be escaped
      if (c != '\\') continue;
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      if (e == 'u') {
        for (int k = 0; k < 4; ++k)
          if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_++]))) return false;
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }

  bool number() {
    std::size_t start = i_;
    eat('-');
    if (!digits()) return false;
    if (s_[start + (s_[start] == '-')] == '0' && i_ - start > 1u + (s_[start] == '-')) return false;  // no leading 0
    if (eat('.') && !digits()) return false;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }

  bool digits() {
    std::size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    return i_ > start;
  }

  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

bool valid_json(std::string_view text) { return json_checker(text).valid(); }

cluster_status fabricated() {
  cluster_status st;
  st.master_pid = 4242;
  st.master_uptime_seconds = 12.5;
  st.state = "running";
  st.workers = 2;
  st.master = {.cpu_seconds = 0.25, .rss_bytes = 3 << 20, .vsize_bytes = 9 << 20, .start_time = 1.7e9,
               .open_fds = 12, .found = true};
  st.rates.interval_seconds = 1.25;
  st.rates.master_cpu_percent = 1.5;
  st.rates.requests_per_second = 40;
  st.rates.durations_per_second[0] = 32;
  st.rates.durations_per_second[3] = 8;
  st.rates.p50_seconds = 0.0003125;
  st.rates.p99_seconds = 0.0049;
  slot_status ready;
  ready.slot = 0;
  ready.pid = 4243;
  ready.state = "ready";
  ready.uptime_seconds = 12;
  ready.restarts = 1;
  ready.totals.requests = 7;
  ready.totals.responses[1] = 6;
  ready.totals.responses[4] = 1;
  ready.totals.duration_count[0] = 5;
  ready.totals.duration_count[3] = 2;
  ready.totals.duration_sum_us = 4000;
  ready.open_connections = 3;
  ready.loop_lag_seconds = 0.0001;
  ready.process = {.cpu_seconds = 1, .rss_bytes = 2 << 20, .vsize_bytes = 8 << 20, .start_time = 1.7e9,
                   .open_fds = 9, .found = true};
  ready.rates = {.slot = 0, .requests_per_second = 40, .cpu_percent = 12.5};
  slot_status backing_off;
  backing_off.slot = 1;
  backing_off.state = "backoff";
  backing_off.backoff = true;
  backing_off.next_attempt_seconds = 0.75;
  backing_off.consecutive_failures = 3;
  backing_off.boot_failures = 2;
  st.slots = {ready, backing_off};
  return st;
}

// The value of the sample `name{labels}` in Prometheus text, or "" when absent.
std::string sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(series + " ")) return line.substr(series.size() + 1);
  return {};
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("status report: the JSON parses and carries the master and every slot") {
    std::string json = render_json(fabricated());
    CHECK(valid_json(json));
    CHECK(json.starts_with(
        "{\"master\":{\"pid\":4242,\"uptime_seconds\":12.5,\"state\":\"running\",\"workers\":2,\"rss_bytes\":3145728,"));
    CHECK(json.find("{\"slot\":0,\"pid\":4243,\"state\":\"ready\",") != std::string::npos);
    CHECK(json.find("{\"slot\":1,\"pid\":-1,\"state\":\"backoff\",") != std::string::npos);
    CHECK(json.find("\"backoff\":true,\"next_attempt_seconds\":0.75,\"consecutive_failures\":3,\"boot_failures\":2") !=
          std::string::npos);
    CHECK(json.ends_with("]}\n"));
  }

  TEST_CASE("status report: the JSON carries the rates of the last interval, per slot and for the cluster") {
    std::string json = render_json(fabricated());
    CHECK(valid_json(json));
    CHECK(json.find("\"cpu_seconds\":0.25,\"cpu_percent\":1.5},\"rates\":{\"interval_seconds\":1.25,"
                    "\"requests_per_second\":40,\"latency_p50_seconds\":0.0003125,\"latency_p99_seconds\":0.0049,"
                    "\"duration_bounds_seconds\":[0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10],"
                    "\"durations_per_second\":[32,0,0,8,0,0,0,0,0,0,0,0,0,0,0]},\"slots\":[") != std::string::npos);
    CHECK(json.find("\"requests\":7,\"requests_per_second\":40,\"open_connections\":3,") != std::string::npos);
    CHECK(json.find("\"cpu_seconds\":1,\"cpu_percent\":12.5,\"loop_lag_seconds\":0.0001}") != std::string::npos);
    // The backing-off slot: no process, no rates.
    CHECK(json.find("\"requests\":0,\"requests_per_second\":0,") != std::string::npos);
    // Before two samples (or without requests) there is no latency: null, still JSON.
    cluster_status idle = fabricated();
    idle.rates.p50_seconds.reset();
    idle.rates.p99_seconds.reset();
    std::string idle_json = render_json(idle);
    CHECK(valid_json(idle_json));
    CHECK(idle_json.find("\"latency_p50_seconds\":null,\"latency_p99_seconds\":null,") != std::string::npos);
  }

  TEST_CASE("status report: odd strings are escaped so that the JSON still parses") {
    cluster_status st = fabricated();
    st.state = "a \"quoted\" back\\slash\nnew line\ttab\x01 and caf\xc3\xa9";
    st.slots[0].state = "\x1f";
    std::string json = render_json(st);
    CHECK(valid_json(json));
    CHECK(json.find("\"a \\\"quoted\\\" back\\\\slash\\u000anew line\\u0009tab\\u0001 and caf\xc3\xa9\"") !=
          std::string::npos);
    CHECK(json.find("\"\\u001f\"") != std::string::npos);
  }

  TEST_CASE("status report: the JSON of an empty cluster parses") {
    CHECK(valid_json(render_json(cluster_status{})));
  }

  TEST_CASE("status report: the JSON checker itself refuses what is not JSON") {
    CHECK_FALSE(valid_json("{\"a\":1,}"));
    CHECK_FALSE(valid_json("{\"a\":01}"));
    CHECK_FALSE(valid_json("{\"a\":\"x\ny\"}"));
    CHECK_FALSE(valid_json("{\"a\":1} x"));
    CHECK(valid_json("{\"a\":[1,-2.5e3,true,null,\"\\u00e9\"]}"));
  }

  TEST_CASE("status report: Prometheus text gives each family HELP and TYPE before its samples") {
    std::string text = render_prometheus(fabricated());
    std::map<std::string, int> seen;  // 1: HELP, 2: HELP and TYPE
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      REQUIRE_FALSE(line.empty());
      if (line.starts_with("# HELP ")) {
        std::string family = line.substr(7, line.find(' ', 7) - 7);
        CHECK(seen[family] == 0);  // each family once
        seen[family] = 1;
        continue;
      }
      if (line.starts_with("# TYPE ")) {
        std::string family = line.substr(7, line.find(' ', 7) - 7);
        CHECK(seen[family] == 1);
        seen[family] = 2;
        std::string type = line.substr(line.rfind(' ') + 1);
        CHECK((type == "gauge" || type == "counter" || type == "histogram"));
        continue;
      }
      std::string name = line.substr(0, line.find_first_of("{ "));
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        if (name.ends_with(suffix) && !seen.contains(name)) name.erase(name.size() - std::string(suffix).size());
      INFO(line);
      CHECK(seen[name] == 2);
      CHECK(line.find(' ') != std::string::npos);
    }
    CHECK(seen.size() >= 20);
    // Prometheus computes rates from the counters itself: none is exported.
    CHECK(text.find("per_second") == std::string::npos);
    CHECK(text.find("percent") == std::string::npos);
  }

  TEST_CASE("status report: Prometheus samples carry the snapshot's numbers per slot") {
    std::string text = render_prometheus(fabricated());
    CHECK(sample(text, "cluster_workers") == "2");
    CHECK(sample(text, "cluster_slots") == "2");
    CHECK(sample(text, "cluster_requests_total{slot=\"0\"}") == "7");
    CHECK(sample(text, "cluster_responses_total{slot=\"0\",code=\"2xx\"}") == "6");
    CHECK(sample(text, "cluster_responses_total{slot=\"0\",code=\"5xx\"}") == "1");
    CHECK(sample(text, "cluster_worker_restarts_total{slot=\"0\"}") == "1");
    CHECK(sample(text, "cluster_slot_backoff{slot=\"1\"}") == "1");
    CHECK(sample(text, "cluster_slot_next_attempt_seconds{slot=\"1\"}") == "0.75");
    CHECK(sample(text, "cluster_slot_consecutive_failures{slot=\"1\"}") == "3");
    CHECK(sample(text, "cluster_slot_boot_failures{slot=\"1\"}") == "2");
    CHECK(sample(text, "cluster_open_connections{slot=\"0\"}") == "3");
    CHECK(sample(text, "process_open_fds{role=\"master\"}") == "12");
    CHECK(sample(text, "process_open_fds{role=\"worker\",slot=\"0\"}") == "9");
    CHECK(sample(text, "process_open_fds{role=\"worker\",slot=\"1\"}").empty());  // no process: no sample
  }

  TEST_CASE("status report: histogram buckets are cumulative and end at +Inf with the count") {
    std::string text = render_prometheus(fabricated());
    CHECK(sample(text, "cluster_request_duration_seconds_bucket{slot=\"0\",le=\"0.0005\"}") == "5");
    CHECK(sample(text, "cluster_request_duration_seconds_bucket{slot=\"0\",le=\"0.0025\"}") == "5");
    CHECK(sample(text, "cluster_request_duration_seconds_bucket{slot=\"0\",le=\"0.005\"}") == "7");
    CHECK(sample(text, "cluster_request_duration_seconds_bucket{slot=\"0\",le=\"+Inf\"}") == "7");
    CHECK(sample(text, "cluster_request_duration_seconds_count{slot=\"0\"}") == "7");
    CHECK(sample(text, "cluster_request_duration_seconds_sum{slot=\"0\"}") == "0.004");
  }

  TEST_CASE("status report: the table has a header and a row per slot") {
    std::string table = render_table(fabricated());
    CHECK(table.starts_with("master pid 4242  state running  uptime 12s  workers 2  rss 3.0 MiB  cpu 1.5%  "
                            "requests 40.0/s  p50 0.31 ms  p99 4.90 ms\n\n"));
    CHECK(table.find("\n0     4243     ready    ") != std::string::npos);
    CHECK(table.find("   req/s ") != std::string::npos);
    CHECK(table.find(" 40.0 ") != std::string::npos);  // slot 0's requests/s
    CHECK(table.find(" 12.5 ") != std::string::npos);  // and CPU %
    std::istringstream lines(table);
    std::string line, header;
    std::getline(lines, line);
    std::getline(lines, line);
    std::getline(lines, header);
    while (std::getline(lines, line)) CHECK(line.size() == header.size());  // aligned
    CHECK(table.find("\n1     -1       backoff  ") != std::string::npos);
    CHECK(table.find("0.8s") != std::string::npos);  // retry in, for the slot backing off
  }
}
