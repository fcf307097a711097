// The old master's side of a binary upgrade (SIGUSR2): start the program
// file as a new master holding this master's listening sockets, then wait
// for one of three outcomes: the new master says every slot is ready (hand
// over: this master drains and exits), it exits without saying so, or
// start_timeout passes (roll back: kill it, keep serving).
#pragma once

#include <cluster/detail/asio.hpp>
#include <cluster/detail/binary_upgrade.hpp>
#include <cluster/detail/log.hpp>
#include <cluster/detail/process.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include <csignal>
#include <fcntl.h>
#include <unistd.h>

namespace cluster::detail {

/// What the supervisor hears from an upgrade.
class upgrade_listener {
 public:
  /// `new_master` has every slot ready: hand the service over.
  virtual void upgrade_ready(pid_t new_master) = 0;
  /// The upgrade failed for `why` (the new master is dead or being killed).
  virtual void upgrade_failed(const std::string& why) = 0;

 protected:
  ~upgrade_listener() = default;
};

/// One upgrade at a time: idle → waiting (new master started) → idle again
/// on failure, or handed_over for good.
class upgrade_coordinator {
 public:
  enum class state { idle, waiting, handed_over };

  upgrade_coordinator(asio::io_context& io, std::chrono::milliseconds start_timeout, upgrade_listener& listener)
      : io_(io), start_timeout_(start_timeout), listener_(listener), timer_(io) {}

  state current() const noexcept { return state_; }

  /// Whether `pid` is the new master this one started.
  bool owns(pid_t pid) const noexcept { return state_ != state::idle && pid == child_; }

  /// Starts `image` holding `pass` (the ready pipe is made here). Returns false
  /// with the reason logged when it cannot start.
  bool begin(const program_image& image, handed_over pass) {
    if (state_ != state::idle) return false;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      log_line("master", std::string("binary upgrade: cannot make a pipe: ") + std::strerror(errno));
      return false;
    }
    pass.ready_fd = fds[1];
    pid_t pid = spawn_upgrade(image, pass);
    int err = errno;
    ::close(fds[1]);
    if (pid < 0) {
      ::close(fds[0]);
      log_line("master", std::string("binary upgrade: cannot start ") + image.path + ": " + std::strerror(err));
      return false;
    }
    child_ = pid;
    state_ = state::waiting;
    ++generation_;
    pipe_ = std::make_unique<asio::posix::stream_descriptor>(io_, fds[0]);
    log_line("master", "binary upgrade: started " + image.path + " as pid " + std::to_string(pid) +
                           "; it has " + std::to_string(start_timeout_.count()) + " ms to be ready");
    asio::co_spawn(io_, wait_for_word(generation_), asio::detached);
    timer_.expires_after(start_timeout_);
    timer_.async_wait([this, g = generation_](const asio::error_code& ec) {
      if (!ec && g == generation_ && state_ == state::waiting)
        fail("the new master was not ready within " + std::to_string(start_timeout_.count()) + " ms (start_timeout)");
    });
    return true;
  }

  /// The new master was reaped (SIGCHLD).
  void child_exited(int status) {
    pid_t pid = child_;
    child_ = -1;
    if (state_ == state::waiting)
      fail("the new master (pid " + std::to_string(pid) + ") " + describe_wait_status(status) + " before it was ready");
  }

  /// This master is stopping while an upgrade waits: the new master stops too
  /// (the operator asked for the service to stop).
  void abandon() {
    if (state_ != state::waiting) return;
    log_line("master", "binary upgrade abandoned: stopping the new master (pid " + std::to_string(child_) + ")");
    ::kill(child_, SIGTERM);
    reset();
  }

 private:
  asio::awaitable<void> wait_for_word(std::uint64_t generation) {
    char word = 0;
    auto [ec, n] = co_await pipe_->async_read_some(asio::buffer(&word, 1), use_tuple);
    if (generation != generation_ || state_ != state::waiting) co_return;
    if (!ec && n == 1 && word == upgrade_ready_byte) {
      state_ = state::handed_over;
      timer_.cancel();
      pipe_.reset();
      listener_.upgrade_ready(child_);
    }
    // Otherwise the pipe closed without the word: the new master is exiting,
    // and its exit status (SIGCHLD) says why better than the pipe can; one
    // that closed the pipe and lives on meets the start_timeout.
  }

  void fail(const std::string& why) {
    if (child_ > 0) ::kill(child_, SIGKILL);  // its workers die with it (parent-death signal)
    reset();
    listener_.upgrade_failed(why);
  }

  void reset() {
    state_ = state::idle;
    ++generation_;  // a late word or timer of this attempt is ignored
    timer_.cancel();
    pipe_.reset();
  }

  asio::io_context& io_;
  std::chrono::milliseconds start_timeout_;
  upgrade_listener& listener_;
  asio::steady_timer timer_;
  std::unique_ptr<asio::posix::stream_descriptor> pipe_;
  state state_ = state::idle;
  pid_t child_ = -1;
  std::uint64_t generation_ = 0;
};

}  // namespace cluster::detail
