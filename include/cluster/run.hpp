// cluster::run: the one call that turns a program into a supervised
// master/worker HTTP service.
#pragma once

#include <cluster/detail/master.hpp>
#include <cluster/handler.hpp>
#include <cluster/options.hpp>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <type_traits>

namespace cluster {

/// Runs `handler` in a master/worker cluster configured by `opts` and returns
/// the master's exit code once it stops (0 after a clean stop). Throws
/// option_error for an invalid option and std::system_error when the
/// listening sockets cannot be opened, both before any worker is forked. When
/// `opts.help` is set, prints the usage and returns 0.
template <class Handler>
int run(Handler&& handler, options opts) {
  using handler_type = std::remove_reference_t<Handler>;
  detail::check_handler<handler_type>();
  if constexpr (cluster::handler<handler_type>) {
    if (opts.help) {
      std::fputs(options::usage(program_invocation_short_name).c_str(), stdout);
      return 0;
    }
    detail::Cluster<handler_type> master(handler, std::move(opts));
    return master.run();
  } else {
    return 1;
  }
}

/// Runs `handler` with `workers` worker processes (0: one per CPU) and every
/// other option at its default.
template <class Handler>
int run(Handler&& handler, int workers) {
  options opts;
  opts.workers = workers;
  return run(std::forward<Handler>(handler), std::move(opts));
}

/// Runs `handler` configured from the command line and environment
/// (options::from_args over `defaults`). Errors are printed to stderr with the
/// option at fault, and return exit code 2 (bad option) or 1 (cannot start).
template <class Handler>
int run(Handler&& handler, int argc, const char* const* argv, options defaults = options()) {
  const char* program = argc > 0 ? argv[0] : "cluster";
  try {
    return run(std::forward<Handler>(handler), options::from_args(argc, argv, std::move(defaults)));
  } catch (const option_error& e) {
    std::fprintf(stderr, "%s: invalid option %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace cluster
