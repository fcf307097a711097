// Unit tests of a worker's messaging client (detail::worker_messenger) without
// forking: the messenger sits on one end of a SEQPACKET socketpair with its
// receive loop, and the test plays the master on the other end, reading the
// frames the worker sends and writing the answers it chooses.
#include <doctest/doctest.h>

#include <cluster/detail/worker_messenger.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using cluster::message;
using cluster::message_errc;
using cluster::message_error;
using cluster::detail::message_header;
using cluster::detail::message_kind;

/// How a call made from the worker ended.
struct call_outcome {
  bool done = false;
  std::optional<message> answer;
  std::optional<message_errc> error;
  std::string what;
};

/// Starts `m` as a request from the worker's `messenger`; `out` is filled
/// when it ends.
void start_request(asio::io_context& io, cluster::detail::worker_messenger& messenger, message m,
                   std::chrono::milliseconds timeout, call_outcome& out) {
  asio::co_spawn(io, messenger.request(std::move(m), timeout), [&out](std::exception_ptr e, message answer) {
    out.done = true;
    if (!e) {
      out.answer = std::move(answer);
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const message_error& err) {
      out.error = static_cast<message_errc>(err.code().value());
      out.what = err.what();
    }
  });
}

/// A worker's messenger over a socketpair, and the master's end of it.
class messenger_rig {
 public:
  messenger_rig() {
    REQUIRE(cluster::detail::make_channel(fds_) == 0);
    channel_ = std::make_shared<cluster::detail::channel_endpoint>(io_, fds_[0], 1 << 20);
    messenger_.emplace(io_, *channel_, 3, 64 * 1024);
    // The worker's receive loop, as Worker::read_channel runs it.
    asio::co_spawn(
        io_,
        [this]() -> asio::awaitable<void> {
          well_formed_ = co_await channel_->receive(
              {scratch_.get(), cluster::detail::receive_scratch},
              [this](const message_header& h, std::string_view payload) { return messenger_->dispatch(h, payload); });
          messenger_->channel_lost();
        },
        asio::detached);
  }

  messenger_rig(const messenger_rig&) = delete;
  messenger_rig& operator=(const messenger_rig&) = delete;

  ~messenger_rig() {
    channel_->close();
    io_.restart();
    io_.poll();
    if (master_fd() >= 0) ::close(master_fd());
  }

  cluster::detail::worker_messenger& messenger() { return *messenger_; }
  asio::io_context& io() { return io_; }
  int master_fd() const { return fds_[1]; }

  /// Runs the worker's loop until `done` holds; false when 5 s pass first.
  template <class Done>
  bool run_until(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (int turns = 0; turns < 100'000 && !done(); ++turns) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.restart();
      io_.run_one_for(10ms);
    }
    return done();
  }

  /// Runs the worker's loop until it has sent something, then reads one
  /// packet as the master and returns its messages.
  std::vector<std::pair<message_header, std::string>> master_receives() {
    REQUIRE(run_until([this] {
      pollfd p{master_fd(), POLLIN, 0};
      return ::poll(&p, 1, 0) == 1;
    }));
    std::string packet(cluster::detail::max_packet, '\0');
    ssize_t n = ::recv(master_fd(), packet.data(), packet.size(), MSG_DONTWAIT);
    REQUIRE(n > 0);
    std::vector<std::pair<message_header, std::string>> got;
    REQUIRE(cluster::detail::for_each_message(std::span<const char>(packet.data(), static_cast<std::size_t>(n)),
                                              [&](const message_header& h, std::string_view payload) {
                                                got.emplace_back(h, std::string(payload));
                                                return true;
                                              }));
    return got;
  }

  /// The worker starts a request (`out` is filled when it ends); the master
  /// reads it and returns its correlation id.
  std::uint64_t worker_requests(message m, std::chrono::milliseconds timeout, call_outcome& out) {
    start_request(io_, *messenger_, std::move(m), timeout, out);
    auto sent = master_receives();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].first.kind == static_cast<std::uint16_t>(message_kind::request));
    return sent[0].first.id;
  }

  /// Sends messages to the worker as the master does, in as few packets as fit.
  void master_sends(const std::vector<cluster::detail::message_header>& headers,
                    const std::vector<std::string>& payloads) {
    cluster::detail::outbox out(16 << 20);
    for (std::size_t i = 0; i < headers.size(); ++i) {
      const auto& h = headers[i];
      REQUIRE(out.append(static_cast<message_kind>(h.kind), payloads[i], h.type, h.id, h.flags));
    }
    REQUIRE(out.flush(master_fd()) == 0);
  }

  void master_sends(message_kind kind, std::string payload, std::uint32_t type = 0, std::uint64_t id = 0,
                    std::uint16_t flags = 0) {
    message_header h;
    h.kind = static_cast<std::uint16_t>(kind);
    h.type = type;
    h.id = id;
    h.flags = flags;
    master_sends({h}, {std::move(payload)});
  }

  /// Sends `headers` (with `payloads`) to the worker and then the answer to
  /// a request the worker made first, and runs the worker until that answer
  /// arrives: by then every message sent before it has been dispatched.
  void master_sends_and_syncs(std::vector<message_header> headers, std::vector<std::string> payloads) {
    call_outcome sentinel;
    message_header reply;
    reply.kind = static_cast<std::uint16_t>(message_kind::reply);
    reply.id = worker_requests(message::text("sentinel"), 5s, sentinel);
    headers.push_back(reply);
    payloads.emplace_back();
    master_sends(headers, payloads);
    REQUIRE(run_until([&] { return sentinel.done; }));
    REQUIRE(sentinel.answer);
  }

  /// The master goes away: its end of the channel closes.
  void master_closes() {
    ::close(fds_[1]);
    fds_[1] = -1;
  }

  /// What the worker's receive loop reported when it ended (true: closed
  /// cleanly), or nothing while it runs.
  std::optional<bool> receive_loop_result() const { return well_formed_; }

 private:
  asio::io_context io_{1};
  int fds_[2] = {-1, -1};
  std::shared_ptr<cluster::detail::channel_endpoint> channel_;
  std::unique_ptr<char[]> scratch_ = std::make_unique<char[]>(cluster::detail::receive_scratch);
  std::optional<cluster::detail::worker_messenger> messenger_;
  std::optional<bool> well_formed_;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("worker messenger: a request goes out with a fresh id and its reply answers the caller") {
    messenger_rig rig;
    call_outcome outcome;
    start_request(rig.io(), rig.messenger(), message::text("question", 5), 5s, outcome);
    auto sent = rig.master_receives();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].first.kind == static_cast<std::uint16_t>(message_kind::request));
    CHECK(sent[0].first.type == 5);
    CHECK(sent[0].first.id != 0);
    CHECK(sent[0].second == "question");
    rig.master_sends(message_kind::reply, "answer", 6, sent[0].first.id);
    REQUIRE(rig.run_until([&] { return outcome.done; }));
    REQUIRE(outcome.answer);
    CHECK(outcome.answer->type == 6);
    CHECK(outcome.answer->text() == "answer");
  }

  TEST_CASE("worker messenger: a call that is never answered fails at its deadline") {
    messenger_rig rig;
    call_outcome outcome;
    const auto started = std::chrono::steady_clock::now();
    start_request(rig.io(), rig.messenger(), message::text("anyone?"), 50ms, outcome);
    REQUIRE(rig.run_until([&] { return outcome.done; }));
    CHECK(std::chrono::steady_clock::now() - started >= 50ms);
    CHECK(outcome.error == message_errc::timeout);
  }

  TEST_CASE("worker messenger: a reply to an unknown id is ignored and the pending call still gets its own") {
    messenger_rig rig;
    call_outcome outcome;
    const std::uint64_t id = rig.worker_requests(message::text("q"), 5s, outcome);
    rig.master_sends(message_kind::reply, "stray", 0, id + 1000);
    rig.master_sends(message_kind::reply, "mine", 0, id);
    REQUIRE(rig.run_until([&] { return outcome.done; }));
    REQUIRE(outcome.answer);
    CHECK(outcome.answer->text() == "mine");
    CHECK_FALSE(rig.receive_loop_result().has_value());  // the stray reply was not a fault
  }

  TEST_CASE("worker messenger: an error reply fails the call with remote_error and the master's text") {
    messenger_rig rig;
    call_outcome outcome;
    const std::uint64_t id = rig.worker_requests(message::text("q"), 5s, outcome);
    rig.master_sends(message_kind::reply, "callback threw", 0, id, cluster::detail::flag_error);
    REQUIRE(rig.run_until([&] { return outcome.done; }));
    CHECK(outcome.error == message_errc::remote_error);
    CHECK(outcome.what.find("callback threw") != std::string::npos);
  }

  TEST_CASE("worker messenger: past the inbox limit the oldest unreceived message is dropped") {
    messenger_rig rig;
    std::vector<message_header> headers;
    std::vector<std::string> payloads;
    for (std::uint32_t type = 0; type <= cluster::detail::inbox_limit; ++type) {
      message_header h;
      h.kind = static_cast<std::uint16_t>(message_kind::user);
      h.type = type;
      headers.push_back(h);
      payloads.emplace_back();
    }
    rig.master_sends_and_syncs(std::move(headers), std::move(payloads));

    std::vector<std::uint32_t> received;
    bool receiving = true;
    asio::co_spawn(
        rig.io(),
        [&]() -> asio::awaitable<void> {
          for (std::size_t i = 0; i < cluster::detail::inbox_limit; ++i)
            received.push_back((co_await rig.messenger().receive()).type);
          receiving = false;
        },
        asio::detached);
    REQUIRE(rig.run_until([&] { return !receiving; }));
    REQUIRE(received.size() == cluster::detail::inbox_limit);
    CHECK(received.front() == 1);  // type 0, the oldest, was dropped
    CHECK(received.back() == cluster::detail::inbox_limit);
  }

  TEST_CASE("worker messenger: a lost channel fails pending calls at once, and later calls too") {
    messenger_rig rig;
    call_outcome pending;
    const auto started = std::chrono::steady_clock::now();
    rig.worker_requests(message::text("q"), 60s, pending);
    rig.master_closes();
    REQUIRE(rig.run_until([&] { return pending.done; }));
    CHECK(pending.error == message_errc::closed);
    CHECK(std::chrono::steady_clock::now() - started < 30s);  // not at its deadline
    CHECK(rig.receive_loop_result() == true);                 // a close, not malformed input

    call_outcome later;
    start_request(rig.io(), rig.messenger(), message::text("again"), 60s, later);
    REQUIRE(rig.run_until([&] { return later.done; }));
    CHECK(later.error == message_errc::closed);
  }

  TEST_CASE("worker messenger: messages that came before on_message was set are handed to it first") {
    messenger_rig rig;
    message_header early;
    early.kind = static_cast<std::uint16_t>(message_kind::user);
    early.type = 1;
    rig.master_sends_and_syncs({early}, {"early"});
    std::vector<std::string> seen;
    rig.messenger().on_message([&](const message& m) { seen.emplace_back(m.text()); });
    CHECK(seen == std::vector<std::string>{"early"});
    rig.master_sends(message_kind::user, "late", 2);
    REQUIRE(rig.run_until([&] { return seen.size() == 2; }));
    CHECK(seen.back() == "late");
  }
}
