// A test server for messaging tests: every messaging operation of a worker
// and of the master, reachable over HTTP. Responses carry `X-Worker-Pid` and
// `X-Worker-Slot` so a test knows which worker answered.
//   GET /                          "pid <pid> slot <slot>\n"
//   GET /background                what the tasks spawned on this worker's and
//                                  the master's executor() from the start
//                                  hooks recorded
//   GET /request?timeout_ms=N      request to the master -> its answer,
//                                  "pong from master <pid> to slot <slot>"
//   GET /request-slow?timeout_ms=N&delay_ms=D
//                                  the master answers after D ms (default
//                                  1000), then logs "slow answer sent to slot
//                                  S": past the timeout, 504 with the error
//   GET /request-error             the master's on_request throws: 502
//   GET /struct?x=X&y=Y            a struct through message::of / as: the
//                                  master answers {10x, 10y, slot}
//   GET /struct-bad                the master reads a struct of another size
//   GET /send?msg=X[&to=S]         one-way to the master, which records it
//                                  and answers with a send to this slot
//                                  ("echo X"), or forwards it to slot S
//                                  ("from <slot>: X")
//   GET /broadcast?msg=X           this worker broadcasts X (type 3)
//   GET /master-broadcast?msg=X    the master broadcasts X ("master: X")
//   GET /flood?n=N&bytes=B[&mode=await]
//                                  N one-way messages of B bytes in a burst,
//                                  with try_send (or send, which waits for
//                                  room): "ok K full F other O"
//   GET /flood-count               how many of them the master received
//   GET /received                  what this worker got, one line per
//                                  message ("<type> <text>"), in order
//   GET /master-log                the master's on_message log, in order
//   GET /oversized?bytes=N         try_send, send, request and broadcast of N
//                                  bytes (default 65537: the default limit
//                                  + 1): one line each, "<op>: ok" or
//                                  "<op>: <errc> <text>"
//   GET /garbage?kind=K            after answering, writes a malformed
//                                  packet onto this worker's control channel
//                                  (K: text, short, magic, kind, length,
//                                  reply, huge); the master must replace it
//   GET /send-to-dead              the master SIGKILLs the other slot's
//                                  worker and answers what its send to that
//                                  slot returned in on_worker_exit
//   GET /dead-sends                every send the master made from
//                                  on_worker_exit to a slot whose worker had
//                                  just died, one line each
//                                  (and on stderr: "test: dead send <line>;
//                                  slots(): <live slots>")
//   GET /send-to-slot?slot=S[&bytes=N]
//                                  this_master().send to slot S ("direct", or
//                                  N bytes), its result; with N, also what
//                                  this_master().broadcast returned
// Its own flag, before the standard ones: --await-messages (workers receive
// with `co_await this_worker().receive()` instead of an on_message callback).
#include <cluster/cluster.hpp>
// The raw frame header, to write well-formed headers with wrong contents.
#include <cluster/detail/channel.hpp>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

// Type tags of this server's messages.
enum tag : std::uint32_t {
  tag_ping = 1,
  tag_echo = 2,       // master -> worker: the answer to a send
  tag_broadcast = 3,  // a worker's broadcast
  tag_slow = 4,
  tag_throw = 5,
  tag_struct = 6,
  tag_struct_bad = 7,
  tag_log = 8,
  tag_hello = 9,  // worker -> master at start: its pid
  tag_kill_other = 10,
  tag_dead_sends = 11,
  tag_master_broadcast = 12,
  tag_send_to_slot = 13,
  tag_forward = 14,  // worker -> master -> another worker
  tag_note = 15,     // worker -> master: recorded only
  tag_flood = 16,    // worker -> master: counted only
  tag_flood_count = 17,
  tag_background = 18,  // worker -> master: did the master's background task run?
};

struct point {
  std::int32_t x = 0;
  std::int32_t y = 0;
  std::int32_t slot = -1;
};

struct wrong_size {
  char bytes[3] = {};
};

// --- Per-process state (each worker has its own copy after fork) -------------

int my_slot = -1;
bool await_messages = false;
bool receive_loop_started = false;
std::vector<std::string> received;  // in a worker: what the master sent it

// In the master.
std::vector<std::string> master_log;      // on_message, in order
std::map<int, pid_t> worker_pid_by_slot;  // from the workers' hello
std::vector<std::string> dead_sends;      // on_worker_exit sends
std::map<pid_t, std::string> dead_send_by_pid;
std::uint64_t flood_received = 0;
std::string worker_background;  // set by a task spawned on this_worker().executor()
std::string master_background;  // set by a task spawned on this_master().executor()

// A task on an event loop, spawned from a start hook: it starts once the loop
// runs, before anything the loop does later (a request's handler included).
asio::awaitable<void> note_background(std::string& where, std::string text) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);  // really on the loop
  where = std::move(text);
}

std::string query_value(const cluster::request& req, std::string_view key) {
  return std::string(req.query_param(key));
}

long query_long(const cluster::request& req, std::string_view key, long fallback) {
  std::string_view text = req.query_param(key);
  long v = fallback;
  if (!text.empty()) std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

std::string errc_name(const std::error_code& ec) {
  if (ec.category() != cluster::message_category())
    return ec.category().name() + std::string(":") + std::to_string(ec.value());
  switch (static_cast<cluster::message_errc>(ec.value())) {
    case cluster::message_errc::timeout: return "timeout";
    case cluster::message_errc::closed: return "closed";
    case cluster::message_errc::too_large: return "too_large";
    case cluster::message_errc::full: return "full";
    case cluster::message_errc::no_worker: return "no_worker";
    case cluster::message_errc::remote_error: return "remote_error";
    case cluster::message_errc::bad_payload: return "bad_payload";
  }
  return "unknown";
}

std::string describe(const std::error_code& ec) { return ec ? errc_name(ec) + " " + ec.message() : "ok"; }

cluster::response answer(std::string body, int status = 200) {
  auto r = cluster::response::text(std::move(body), status);
  r.set("X-Worker-Pid", std::to_string(::getpid()));
  r.set("X-Worker-Slot", std::to_string(my_slot));
  return r;
}

// This worker's end of its control channel: its only SOCK_SEQPACKET socket.
// Found the way a misbehaving library in the worker could find it.
int find_channel_fd() {
  int found = -1;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    int fd = -1;
    std::string_view name = e->d_name;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
    if (ec != std::errc{} || end != name.data() + name.size() || fd == ::dirfd(d)) continue;
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET) found = fd;
  }
  ::closedir(d);
  return found;
}

// A packet the master must refuse, by kind.
std::string garbage_packet(std::string_view kind) {
  using cluster::detail::message_header;
  auto header_bytes = [](const message_header& h) { return std::string(reinterpret_cast<const char*>(&h), sizeof h); };
  message_header h;
  h.kind = static_cast<std::uint16_t>(cluster::detail::message_kind::user);
  if (kind == "short") return header_bytes(h).substr(0, sizeof h - 4);  // a truncated header
  if (kind == "magic") {
    h.magic = 0xdeadbeef;
    return header_bytes(h);
  }
  if (kind == "kind") {
    h.kind = 999;
    return header_bytes(h);
  }
  if (kind == "length") {  // claims more payload than the packet holds
    h.length = 1000;
    return header_bytes(h) + "only a few bytes";
  }
  if (kind == "reply") {  // well formed, but a master never gets a reply
    h.kind = static_cast<std::uint16_t>(cluster::detail::message_kind::reply);
    return header_bytes(h);
  }
  if (kind == "huge") {  // a packet larger than any the protocol allows
    h.length = static_cast<std::uint32_t>(cluster::detail::max_packet);
    return header_bytes(h) + std::string(cluster::detail::max_packet, 'x');
  }
  return "this is not a control frame";
}

void record(const cluster::message& m) { received.push_back(std::to_string(m.type) + " " + std::string(m.text())); }

asio::awaitable<void> receive_loop() {
  for (int i = 0; i < 1'000'000; ++i) {
    try {
      record(co_await cluster::this_worker().receive());
    } catch (const cluster::message_error& e) {
      received.push_back("receive failed: " + errc_name(e.code()));
      co_return;
    }
  }
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// --- The worker's handler -----------------------------------------------------

asio::awaitable<cluster::response> handle(cluster::request& req) {
  auto& me = cluster::this_worker();
  if (await_messages && !receive_loop_started) {
    receive_loop_started = true;
    asio::co_spawn(co_await asio::this_coro::executor, receive_loop(), asio::detached);
  }
  auto path = req.path();
  std::chrono::milliseconds timeout(query_long(req, "timeout_ms", 1000));
  try {
    if (path == "/background") {
      auto reply = co_await me.request(cluster::message::text("", tag_background), timeout);
      co_return answer("worker: " + worker_background + "\nmaster: " + std::string(reply.text()) + "\n");
    }
    if (path == "/request") {
      auto reply = co_await me.request(cluster::message::text("ping", tag_ping), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/request-slow") {
      long delay = query_long(req, "delay_ms", 1000);
      auto reply = co_await me.request(cluster::message::of(delay, tag_slow), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/request-error") {
      auto reply = co_await me.request(cluster::message::text("throw", tag_throw), timeout);
      co_return answer("unexpected answer: " + std::string(reply.text()));
    }
    if (path == "/struct") {
      point p{static_cast<std::int32_t>(query_long(req, "x", 0)),
              static_cast<std::int32_t>(query_long(req, "y", 0)), my_slot};
      auto reply = co_await me.request(cluster::message::of(p, tag_struct), timeout);
      auto r = reply.as<point>();
      co_return answer(std::to_string(r.x) + " " + std::to_string(r.y) + " " + std::to_string(r.slot) + "\n");
    }
    if (path == "/struct-bad") {
      auto reply = co_await me.request(cluster::message::of(point{1, 2, 3}, tag_struct_bad), timeout);
      co_return answer("unexpected answer: " + std::string(reply.text()));
    }
    if (path == "/send") {
      std::string msg = query_value(req, "msg");
      std::string to = query_value(req, "to");
      if (to.empty())
        co_await me.send(cluster::message::text(msg, tag_echo));
      else
        co_await me.send(cluster::message::text(to + " " + msg, tag_forward));
      co_return answer("sent\n");
    }
    if (path == "/note") {  // try_send, for bursts
      auto ec = me.try_send(cluster::message::text(query_value(req, "msg"), tag_note));
      co_return answer(describe(ec) + "\n", ec ? 503 : 200);
    }
    if (path == "/flood") {
      long n = query_long(req, "n", 1000);
      cluster::message m{tag_flood, std::string(static_cast<std::size_t>(query_long(req, "bytes", 1000)), 'f')};
      long ok = 0, full = 0, other = 0;
      for (long i = 0; i < n; ++i) {
        if (query_value(req, "mode") == "await") {
          co_await me.send(m);  // waits for room: backpressure
          ++ok;
          continue;
        }
        auto ec = me.try_send(m);
        (ec ? ec == cluster::message_errc::full ? full : other : ok)++;
      }
      co_return answer("ok " + std::to_string(ok) + " full " + std::to_string(full) + " other " +
                       std::to_string(other) + "\n");
    }
    if (path == "/flood-count") {
      auto reply = co_await me.request(cluster::message::text("", tag_flood_count), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/broadcast") {
      co_await me.broadcast(cluster::message::text(query_value(req, "msg"), tag_broadcast), timeout);
      co_return answer("broadcast\n");
    }
    if (path == "/master-broadcast") {
      auto reply =
          co_await me.request(cluster::message::text(query_value(req, "msg"), tag_master_broadcast), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/received") co_return answer(join(received));
    if (path == "/master-log") {
      auto reply = co_await me.request(cluster::message::text("", tag_log), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/oversized") {
      long bytes = query_long(req, "bytes", -1);
      std::size_t size = bytes < 0 ? 64 * 1024 + 1 : static_cast<std::size_t>(bytes);
      cluster::message big{tag_note, std::string(size, 'o')};
      std::string out = "try_send: " + describe(me.try_send(big)) + "\n";
      auto attempt = [&](const char* op, auto operation) -> asio::awaitable<void> {
        try {
          co_await operation();
          out += std::string(op) + ": ok\n";
        } catch (const cluster::message_error& e) {
          out += std::string(op) + ": " + errc_name(e.code()) + " " + e.what() + "\n";
        }
      };
      co_await attempt("send", [&] { return me.send(big); });
      co_await attempt("request", [&]() -> asio::awaitable<void> { co_await me.request(big, timeout); });
      co_await attempt("broadcast", [&] { return me.broadcast(big, timeout); });
      co_return answer(out);
    }
    if (path == "/garbage") {
      int fd = find_channel_fd();
      if (fd < 0) co_return answer("no SOCK_SEQPACKET descriptor found\n", 500);
      // After the response is out: the master kills this worker when it reads the packet.
      auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, 100ms);
      timer->async_wait([timer, fd, packet = garbage_packet(query_value(req, "kind"))](const asio::error_code&) {
        if (::send(fd, packet.data(), packet.size(), MSG_NOSIGNAL) < 0)
          std::fprintf(stderr, "test: garbage send failed: %s\n", std::strerror(errno));
      });
      co_return answer("garbage on fd " + std::to_string(fd) + " in 100 ms\n");
    }
    if (path == "/send-to-dead") {
      auto reply = co_await me.request(cluster::message::text("", tag_kill_other), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/dead-sends") {
      auto reply = co_await me.request(cluster::message::text("", tag_dead_sends), timeout);
      co_return answer(std::string(reply.text()));
    }
    if (path == "/send-to-slot") {
      auto reply = co_await me.request(
          cluster::message::text(query_value(req, "slot") + " " + std::to_string(query_long(req, "bytes", 0)),
                                 tag_send_to_slot),
          timeout);
      co_return answer(std::string(reply.text()));
    }
  } catch (const cluster::message_error& e) {
    int status = e.code() == cluster::message_errc::timeout ? 504 : 502;
    co_return answer(errc_name(e.code()) + ": " + e.what() + "\n", status);
  }
  co_return answer("pid " + std::to_string(::getpid()) + " slot " + std::to_string(my_slot) + "\n");
}

// --- The master's callbacks -----------------------------------------------------

void on_message(int slot, const cluster::message& m) {
  if (m.type == tag_flood) {
    ++flood_received;
    return;
  }
  master_log.push_back("slot " + std::to_string(slot) + " type " + std::to_string(m.type) + " " +
                       (m.data.size() > 64 ? std::to_string(m.data.size()) + " bytes" : std::string(m.text())));
  auto& master = cluster::this_master();
  switch (m.type) {
    case tag_hello: worker_pid_by_slot[slot] = static_cast<pid_t>(std::stol(m.data)); break;
    case tag_echo: {
      auto ec = master.send(slot, cluster::message::text("echo " + m.data, tag_echo));
      if (ec) master_log.push_back("echo to slot " + std::to_string(slot) + " failed: " + describe(ec));
      break;
    }
    case tag_forward: {
      auto space = m.data.find(' ');
      int to = std::stoi(m.data.substr(0, space));
      std::string text = space == std::string::npos ? "" : m.data.substr(space + 1);
      auto ec = master.send(to, cluster::message::text("from " + std::to_string(slot) + ": " + text, tag_forward));
      if (ec) master_log.push_back("forward to slot " + std::to_string(to) + " failed: " + describe(ec));
      break;
    }
    default: break;
  }
}

asio::awaitable<cluster::message> on_request(int slot, cluster::message m) {
  auto& master = cluster::this_master();
  switch (m.type) {
    case tag_ping:
      co_return cluster::message::text("pong from master " + std::to_string(::getpid()) + " to slot " +
                                       std::to_string(slot) + "\n");
    case tag_slow: {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(m.as<long>()));
      co_await t.async_wait(asio::use_awaitable);
      master_log.push_back("slow answer sent to slot " + std::to_string(slot));
      co_return cluster::message::text("slow pong\n");
    }
    case tag_throw: throw std::runtime_error("on_request refuses on purpose");
    case tag_struct: {
      auto p = m.as<point>();
      co_return cluster::message::of(point{p.x * 10, p.y * 10, slot}, tag_struct);
    }
    case tag_struct_bad: {
      auto w = m.as<wrong_size>();  // throws bad_payload: a point is 12 bytes
      co_return cluster::message::of(w);
    }
    case tag_log: co_return cluster::message::text(join(master_log));
    case tag_flood_count: co_return cluster::message::text(std::to_string(flood_received) + "\n");
    case tag_background: co_return cluster::message::text(master_background);
    case tag_dead_sends: co_return cluster::message::text(join(dead_sends));
    case tag_master_broadcast: {
      auto n = master.broadcast(cluster::message::text("master: " + m.data, tag_master_broadcast));
      co_return cluster::message::text("queued for " + std::to_string(n) + "\n");
    }
    case tag_send_to_slot: {  // "<slot> <bytes>"
      auto space = m.data.find(' ');
      std::size_t bytes = space == std::string::npos ? 0 : std::stoul(m.data.substr(space + 1));
      cluster::message out{tag_send_to_slot, bytes ? std::string(bytes, 'd') : std::string("direct")};
      auto ec = master.send(std::stoi(m.data.substr(0, space)), out);
      std::string text = "send: " + describe(ec) + "\n";
      if (bytes) text += "broadcast queued for " + std::to_string(master.broadcast(out)) + "\n";
      co_return cluster::message::text(text);
    }
    case tag_kill_other: {
      int other = -1;
      pid_t victim = -1;
      for (auto& [s, pid] : worker_pid_by_slot)
        if (s != slot && pid > 1) other = s, victim = pid;
      if (other < 0) co_return cluster::message::text("no other worker known\n");
      ::kill(victim, SIGKILL);
      // on_worker_exit records the send; wait for it, bounded.
      asio::steady_timer t(co_await asio::this_coro::executor);
      for (int i = 0; i < 600 && !dead_send_by_pid.contains(victim); ++i) {
        t.expires_after(5ms);
        co_await t.async_wait(asio::use_awaitable);
      }
      auto it = dead_send_by_pid.find(victim);
      co_return cluster::message::text(it == dead_send_by_pid.end() ? "pid " + std::to_string(victim) + " not reaped\n"
                                                                    : it->second + "\n");
    }
    default: co_return cluster::message::text("unknown request type " + std::to_string(m.type) + "\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<const char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--await-messages")
      await_messages = true;
    else
      args.push_back(argv[i]);
  }
  cluster::options defaults;
  defaults.on_master_start = [] {
    asio::co_spawn(cluster::this_master().executor(), note_background(master_background, "ran"), asio::detached);
  };
  defaults.on_worker_start = [](int slot) {
    my_slot = slot;
    asio::co_spawn(cluster::this_worker().executor(),
                   note_background(worker_background, "ran in slot " + std::to_string(slot)), asio::detached);
    if (!await_messages) cluster::this_worker().on_message(record);
    auto ec = cluster::this_worker().try_send(cluster::message::text(std::to_string(::getpid()), tag_hello));
    if (ec) std::fprintf(stderr, "test: hello not sent: %s\n", ec.message().c_str());
  };
  defaults.on_message = on_message;
  defaults.on_request = on_request;
  defaults.on_worker_exit = [](const cluster::worker_exit& e) {
    // The worker is gone: a send to its slot must fail now.
    auto ec = cluster::this_master().send(e.slot, cluster::message::text("are you there?", tag_echo));
    std::string line = "slot " + std::to_string(e.slot) + " pid " + std::to_string(e.pid) + ": " + describe(ec);
    dead_sends.push_back(line);
    dead_send_by_pid[e.pid] = line;
    if (auto it = worker_pid_by_slot.find(e.slot); it != worker_pid_by_slot.end() && it->second == e.pid)
      worker_pid_by_slot.erase(it);
    std::string live;
    for (int s : cluster::this_master().slots()) live += " " + std::to_string(s);
    std::fprintf(stderr, "test: dead send %s; slots():%s\n", line.c_str(), live.c_str());
  };
  return cluster::run(handle, static_cast<int>(args.size()), args.data(), std::move(defaults));
}
