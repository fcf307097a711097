// Pinning workers to CPUs (options::cpu_affinity), as nginx's
// worker_cpu_affinity does: "auto" gives slot i the i-th CPU this process
// may run on (round robin when there are more slots than CPUs); a list such
// as "0,2,4-7" gives slot i the i-th CPU of the list, round robin. A pinned
// worker keeps its caches warm and never competes with another worker for
// a CPU; the kernel still spreads connections by SO_REUSEPORT.
#pragma once

#include <cluster/option_error.hpp>

#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include <sched.h>

namespace cluster::detail {

/// The CPUs workers are pinned to, in slot order; empty: not pinned.
struct cpu_plan {
  std::vector<int> cpus;

  /// The CPU of `slot`, or -1 when workers are not pinned.
  int cpu_for(int slot) const noexcept {
    return cpus.empty() ? -1 : cpus[static_cast<std::size_t>(slot) % cpus.size()];
  }
};

/// The CPUs this process may run on, in order.
inline std::vector<int> allowed_cpus() {
  std::vector<int> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

/// Parses "" (not pinned), "auto" or a CPU list ("0,2,4-7"). Throws
/// option_error naming `option` for another text, a CPU past CPU_SETSIZE or
/// one this process may not run on.
inline cpu_plan parse_cpu_affinity(const std::string& spec, const std::string& option = "cpu_affinity") {
  cpu_plan plan;
  if (spec.empty()) return plan;
  const std::vector<int> allowed = allowed_cpus();
  if (spec == "auto") {
    plan.cpus = allowed;
    return plan;
  }
  auto bad = [&](const std::string& why) {
    return option_error(option, "expects auto or a CPU list such as 0,2,4-7 (CPUs 0.." +
                                    std::to_string(CPU_SETSIZE - 1) + "); " + why + ", got '" + spec + "'");
  };
  auto number = [&](std::string_view t) {
    int v = -1;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size() || v < 0 || v >= CPU_SETSIZE)
      throw bad("'" + std::string(t) + "' is not a CPU number");
    return v;
  };
  std::string_view rest = spec;
  while (true) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    const auto dash = item.find('-');
    const int first = number(item.substr(0, dash));
    const int last = dash == std::string_view::npos ? first : number(item.substr(dash + 1));
    if (last < first) throw bad("the range " + std::string(item) + " runs backwards");
    for (int c = first; c <= last; ++c) {
      bool ok = false;
      for (int a : allowed) ok = ok || a == c;
      if (!ok) throw bad("this process may not run on CPU " + std::to_string(c));
      plan.cpus.push_back(c);
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return plan;
}

/// In a new worker: pins the calling process to `cpu` (-1: leaves it).
/// Returns false when the kernel refused.
inline bool pin_to_cpu(int cpu) noexcept {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

}  // namespace cluster::detail
