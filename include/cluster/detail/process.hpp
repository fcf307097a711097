// Process plumbing shared by the master and its workers: signal masks,
// signalfd, exit-status text. Signals are read from a signalfd rather than
// through handlers, so no handler can run in a child between fork() and its
// set-up, and neither process touches Asio's process-wide signal state.
#pragma once

#include <cerrno>
#include <csignal>
#include <cstring>
#include <initializer_list>
#include <string>
#include <system_error>

#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cluster::detail {

/// A signal set built from a list.
inline sigset_t signal_set_of(std::initializer_list<int> signals) noexcept {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}

/// Opens a non-blocking signalfd for `set`; the caller must have blocked it.
inline int open_signalfd(const sigset_t& set) {
  int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cluster: signalfd()");
  return fd;
}

/// Sets a signal's disposition (SIG_IGN or SIG_DFL).
inline void set_disposition(int signo, void (*disposition)(int)) noexcept {
  struct sigaction sa{};
  sa.sa_handler = disposition;
  sigemptyset(&sa.sa_mask);
  ::sigaction(signo, &sa, nullptr);
}

/// "SIGKILL", "SIGSEGV", ... for log lines.
inline std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

/// "exited with code 3" or "was killed by SIGSEGV (core dumped)".
inline std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    std::string s = "was killed by " + signal_name(WTERMSIG(status));
    if (WCOREDUMP(status)) s += " (core dumped)";
    return s;
  }
  return "changed state (" + std::to_string(status) + ")";
}

/// First steps of a freshly forked worker: die with the master, ignore the
/// terminal's job-control and interrupt signals (the master coordinates
/// stops), and block SIGTERM for the worker's own signalfd. Returns false when
/// the master is already gone.
inline bool become_worker_process(pid_t master) noexcept {
  // If the master dies, the kernel kills the worker: no orphans. Checking the
  // parent afterwards closes the race with a master that died before prctl.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != master) return false;
  // Ctrl-C and Ctrl-\ reach the whole foreground process group; only the
  // master acts on them, and it tells the workers what to do.
  for (int s : {SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGPIPE}) set_disposition(s, SIG_IGN);
  for (int s : {SIGCHLD, SIGUSR1, SIGUSR2, SIGWINCH}) set_disposition(s, SIG_DFL);
  sigset_t only_term = signal_set_of({SIGTERM});
  ::sigprocmask(SIG_SETMASK, &only_term, nullptr);
  return true;
}

}  // namespace cluster::detail
