// cluster_messaging: cluster's side of the messaging benchmark run by
// benchmarks/run.py (issue 6); the Node.js side is node_messaging.js, whose
// method this program mirrors step for step so the figures compare.
//
//   build-bench/benchmarks/cluster_messaging --seconds 3
//
// A master with one worker (127.0.0.1, port 0) measures, for about --seconds
// each:
// 1. round trips: the worker asks the master (this_worker().request, answered
//    by options::on_request, which echoes the message) and waits for the answer
//    before asking again; the worker times them (clock read every 64 round
//    trips, as Node does);
// 2. one-way messages: the worker sends small messages to the master
//    (this_worker().send) as fast as the channel takes them, yielding to its
//    event loop after every 1000th so the burst leaves (Node waits for the send
//    callback of every 1000th); the master (options::on_message) times from the
//    first message it receives to the last.
// Every message carries the JSON text Node's would ({"t":"rt","i":N}), so the
// payload sizes are the same; the kind travels in the type tag.
// The master prints one JSON line on stdout with the keys of node_messaging.js
// (peer, round_trips, round_trip_seconds, round_trips_per_s, round_trip_us,
// one_way_messages, one_way_sent, one_way_seconds, one_way_per_s) and then
// stops itself (SIGTERM to itself: the cluster's graceful stop), exiting 0 once
// the worker is gone.
//
// How the worker gets going: a worker runs coroutines from its HTTP handler,
// so a thread of the master reads the master's ready line (stdout is a pipe to
// it; the JSON goes to the real stdout), sends one `GET /bench` to the
// announced port, and the handler spawns the benchmark on the worker's loop.
// Bounded everywhere: every request has a timeout, the client thread polls
// with deadlines, and an alarm in the master ends everything (the worker dies
// with its master: PR_SET_PDEATHSIG) after 2 * seconds + 30 s, as Node's
// watchdog does.
#include <cluster/cluster.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Type tags of this program's messages (node_messaging.js's `t`).
enum tag : std::uint32_t {
  tag_rt = 1,       // worker -> master request, echoed by on_request
  tag_rt_done = 2,  // worker -> master: round trips counted
  tag_start_ow = 3, // master -> worker: begin the one-way phase
  tag_ow = 4,       // worker -> master: one-way, counted at the master
  tag_ow_done = 5,  // worker -> master: one-way phase over
  tag_failed = 6,   // worker -> master: the benchmark failed (text)
};

struct rt_done {
  std::uint64_t n = 0;
  double seconds = 0;
};

struct ow_done {
  std::uint64_t n = 0;
};

double seconds_since(clock_type::time_point t0, clock_type::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

// The JSON text Node's message would carry: {"t":"rt","i":N}.
std::string node_like(std::string_view t, std::uint64_t i) {
  char buf[64];
  char* p = buf;
  for (char c : std::string_view("{\"t\":\"")) *p++ = c;
  for (char c : t) *p++ = c;
  for (char c : std::string_view("\",\"i\":")) *p++ = c;
  p = std::to_chars(p, buf + sizeof buf - 1, i).ptr;
  *p++ = '}';
  return std::string(buf, p);
}

double seconds_arg = 3;
int real_stdout = -1;  // the JSON goes here; fd 1 is the pipe the ready line goes to
int ready_pipe = -1;   // read end, in the master's client thread

// --- master state -------------------------------------------------------------
struct master_state {
  rt_done rt{};
  bool rt_seen = false;
  std::uint64_t ow_count = 0;
  clock_type::time_point ow_first{};
  clock_type::time_point ow_last{};
  bool printed = false;
  bool failed = false;
} master;

// --- worker side --------------------------------------------------------------
bool bench_started = false;

asio::awaitable<void> bench() {
  auto& w = cluster::this_worker();
  try {
    // 1. Round trips.
    std::uint64_t n = 0;
    auto start = clock_type::now();
    auto deadline = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds_arg));
    for (;;) {
      cluster::message answer = co_await w.request(cluster::message::text(node_like("rt", n), tag_rt), 5s);
      if (answer.type != tag_rt) throw std::runtime_error("unexpected answer type " + std::to_string(answer.type));
      ++n;
      // Check the clock every 64 round trips to keep it out of the loop cost.
      if ((n & 63) == 0 && clock_type::now() >= deadline) break;
    }
    co_await w.send(cluster::message::of(rt_done{n, seconds_since(start, clock_type::now())}, tag_rt_done));

    // Wait for the master's go.
    for (;;) {
      cluster::message m = co_await w.receive();
      if (m.type == tag_start_ow) break;
    }

    // 2. One-way messages, in bursts of 1000; after each burst the coroutine
    // yields to the event loop, where the burst leaves (Node: the send
    // callback of every 1000th message). send() waits for room if the master
    // lags, so the worker's queue stays bounded (1 MiB).
    auto ex = co_await asio::this_coro::executor;
    std::uint64_t sent = 0;
    deadline = clock_type::now() +
               std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds_arg));
    for (;;) {
      for (int k = 0; k < 1000; ++k) co_await w.send(cluster::message::text(node_like("ow", sent++), tag_ow));
      co_await asio::post(ex, asio::use_awaitable);
      if (clock_type::now() >= deadline) break;
    }
    co_await w.send(cluster::message::of(ow_done{sent}, tag_ow_done));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_messaging: worker: %s\n", e.what());
    (void)w.try_send(cluster::message::text(e.what(), tag_failed));
  }
}

asio::awaitable<cluster::response> handle(cluster::request& req) {
  if (req.path() == "/bench" && !bench_started) {
    bench_started = true;
    asio::co_spawn(co_await asio::this_coro::executor, bench(), asio::detached);
    co_return cluster::response::text("started\n");
  }
  co_return cluster::response::text("cluster_messaging: GET /bench starts the benchmark once\n", 404);
}

// --- master side --------------------------------------------------------------
void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

void stop_master() { ::kill(::getpid(), SIGTERM); }  // the cluster's graceful stop

void on_message(int slot, const cluster::message& m) {
  switch (m.type) {
    case tag_ow: {
      auto now = clock_type::now();
      if (master.ow_count == 0) master.ow_first = now;
      ++master.ow_count;
      master.ow_last = now;
      break;
    }
    case tag_rt_done: {
      master.rt = m.as<rt_done>();
      master.rt_seen = true;
      if (auto ec = cluster::this_master().send(slot, cluster::message::text("{\"t\":\"start-ow\"}", tag_start_ow))) {
        std::fprintf(stderr, "cluster_messaging: cannot start the one-way phase: %s\n", ec.message().c_str());
        master.failed = true;
        stop_master();
      }
      break;
    }
    case tag_ow_done: {
      // Everything the worker sent arrived before this (one channel, in order).
      auto done = m.as<ow_done>();
      double rt_s = master.rt.seconds;
      double ow_s = seconds_since(master.ow_first, master.ow_last);
      double rt_n = static_cast<double>(master.rt.n);
      char line[1024];
      std::snprintf(line, sizeof line,
                    "{\"peer\":\"cluster\",\"round_trips\":%llu,\"round_trip_seconds\":%.9f,"
                    "\"round_trips_per_s\":%.3f,\"round_trip_us\":%.4f,\"one_way_messages\":%llu,"
                    "\"one_way_sent\":%llu,\"one_way_seconds\":%.9f,\"one_way_per_s\":%.3f,"
                    "\"payload_bytes\":%zu}\n",
                    static_cast<unsigned long long>(master.rt.n), rt_s, rt_n / rt_s, rt_s / rt_n * 1e6,
                    static_cast<unsigned long long>(master.ow_count), static_cast<unsigned long long>(done.n), ow_s,
                    static_cast<double>(master.ow_count - 1) / ow_s, node_like("ow", 0).size());
      write_all(real_stdout, line);
      master.printed = true;
      stop_master();
      break;
    }
    case tag_failed:
      std::fprintf(stderr, "cluster_messaging: the worker failed: %.*s\n", static_cast<int>(m.data.size()),
                   m.data.data());
      master.failed = true;
      stop_master();
      break;
    default: break;
  }
}

// The master's client thread: reads the ready line from the pipe fd 1 points
// to, then sends GET /bench to the announced port. Every wait is bounded.
std::atomic<bool> client_stop{false};

bool read_ready_line(std::string& line, clock_type::time_point deadline) {
  char c;
  while (clock_type::now() < deadline && !client_stop.load()) {
    pollfd p{ready_pipe, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    ssize_t n = ::read(ready_pipe, &c, 1);
    if (n <= 0) return false;
    if (c == '\n') return true;
    line += c;
  }
  return false;
}

void client() {
  std::string line;
  if (!read_ready_line(line, clock_type::now() + 30s)) {
    if (!client_stop.load()) {
      std::fprintf(stderr, "cluster_messaging: no ready line from the master within 30 s\n");
      stop_master();
    }
    return;
  }
  std::fprintf(stderr, "%s\n", line.c_str());  // the ready line, for the log
  auto at = line.find("http://127.0.0.1:");
  int port = 0;
  if (at != std::string::npos) {
    const char* p = line.c_str() + at + std::strlen("http://127.0.0.1:");
    std::from_chars(p, line.c_str() + line.size(), port);
  }
  int fd = port > 0 ? ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  if (ok) {
    std::string_view req = "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ok = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  }
  std::string answer;
  auto deadline = clock_type::now() + 10s;
  while (ok && clock_type::now() < deadline && !client_stop.load()) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    char buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  if (fd >= 0) ::close(fd);
  if (!answer.starts_with("HTTP/1.1 200")) {
    std::fprintf(stderr, "cluster_messaging: GET /bench on port %d failed: %s\n", port,
                 answer.empty() ? std::strerror(errno) : answer.c_str());
    stop_master();
  }
}

// The watchdog, as Node's: the worker dies with the master (PR_SET_PDEATHSIG).
void on_alarm(int) {
  static const char text[] = "cluster_messaging: timed out\n";
  [[maybe_unused]] auto r = ::write(2, text, sizeof text - 1);
  ::_exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--seconds" && i + 1 < argc) {
      seconds_arg = std::strtod(argv[++i], nullptr);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  if (!(seconds_arg > 0 && seconds_arg <= 60)) {
    std::fprintf(stderr, "--seconds must be in (0, 60]\n");
    return 2;
  }

  // fd 1 becomes a pipe to the client thread (the master's ready line); the
  // JSON goes to the real stdout.
  int p[2];
  std::fflush(stdout);
  real_stdout = ::dup(1);
  if (real_stdout < 0 || ::pipe2(p, O_CLOEXEC) != 0 || ::dup2(p[1], 1) < 0) {
    std::perror("cluster_messaging: stdout set-up");
    return 1;
  }
  ::close(p[1]);
  ready_pipe = p[0];

  struct sigaction sa{};
  sa.sa_handler = on_alarm;
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(static_cast<unsigned>(seconds_arg * 2 + 30));  // not inherited by the worker

  // The client thread blocks every signal: the master's signals (SIGCHLD,
  // SIGTERM...) must reach its signalfd, and SIGALRM the main thread.
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &previous);
  std::thread client_thread(client);
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  cluster::options o;
  o.workers = 1;
  o.host = "127.0.0.1";
  o.port = 0;
  o.on_message = on_message;
  o.on_request = [](int, const cluster::message& m) { return m; };  // echo, as Node's primary does
  o.on_worker_start = [](int) {
    // The worker has no use for the master's descriptors (nor threads: only
    // the forking thread exists in a child).
    ::close(real_stdout);
    ::close(ready_pipe);
  };
  int rc = 1;
  try {
    rc = cluster::run(handle, std::move(o));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_messaging: %s\n", e.what());
  }
  client_stop = true;
  client_thread.join();
  ::alarm(0);
  if (!master.printed || master.failed) return 1;
  return rc;
}
