// Who a worker runs as (options::user, options::group): resolved in the
// master before anything is forked (so a bad name is an option error, and
// no worker calls into NSS after fork), applied in each new worker before
// it runs any of the user's code. The master keeps its identity: it binds
// nothing after the start, but it re-executes the program file for a binary
// upgrade and writes the pid file, as nginx's master does.
#pragma once

#include <cluster/option_error.hpp>

#include <charconv>
#include <string>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

namespace cluster::detail {

/// The identity a worker takes; `change` false: it keeps the master's.
struct process_identity {
  bool change = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< supplementary groups: the user's, or just `gid`
  std::string user;           ///< for the log
};

namespace identity_detail {

inline bool numeric_id(const std::string& s, unsigned long& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
}

// getpwnam_r/getgrnam_r with a buffer that grows on ERANGE; the entry's
// strings point into `buf`.
template <class Entry, class Lookup>
bool look_up(Lookup lookup, Entry& entry, std::vector<char>& buf) {
  buf.resize(1024);
  for (int tries = 0; tries < 8; ++tries, buf.resize(buf.size() * 4)) {
    Entry* found = nullptr;
    int err = lookup(&entry, buf.data(), buf.size(), &found);
    if (err == ERANGE) continue;
    return err == 0 && found != nullptr;
  }
  return false;
}

}  // namespace identity_detail

/// Resolves `user` (a name or a numeric uid; empty: keep) and `group` (a
/// name or a gid; empty: the user's primary group). Throws option_error
/// naming the option at fault: an unknown user or group, or a change that
/// needs root while the master does not run as root.
inline process_identity resolve_identity(const std::string& user, const std::string& group,
                                         const std::string& user_option = "user",
                                         const std::string& group_option = "group") {
  process_identity id;
  if (user.empty() && group.empty()) return id;
  id.change = true;
  std::vector<char> buf;  // the entries' strings
  id.uid = ::getuid();
  id.gid = ::getgid();
  if (!user.empty()) {
    passwd pw{};
    unsigned long n = 0;
    bool found = identity_detail::numeric_id(user, n)
                     ? identity_detail::look_up(
                           [&](passwd* e, char* b, std::size_t l, passwd** r) {
                             return ::getpwuid_r(static_cast<uid_t>(n), e, b, l, r);
                           },
                           pw, buf)
                     : identity_detail::look_up(
                           [&](passwd* e, char* b, std::size_t l, passwd** r) {
                             return ::getpwnam_r(user.c_str(), e, b, l, r);
                           },
                           pw, buf);
    if (!found) throw option_error(user_option, "expects a user name or uid known to this host, got '" + user + "'");
    id.uid = pw.pw_uid;
    id.gid = pw.pw_gid;
    id.user = pw.pw_name;
    int count = 64;
    id.groups.resize(static_cast<std::size_t>(count));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, id.groups.data(), &count) < 0) {
      id.groups.resize(static_cast<std::size_t>(count));
      ::getgrouplist(pw.pw_name, pw.pw_gid, id.groups.data(), &count);
    }
    id.groups.resize(static_cast<std::size_t>(count));
  } else {
    id.user = "uid " + std::to_string(id.uid);
  }
  if (!group.empty()) {
    ::group gr{};
    unsigned long n = 0;
    bool found = identity_detail::numeric_id(group, n)
                     ? identity_detail::look_up(
                           [&](::group* e, char* b, std::size_t l, ::group** r) {
                             return ::getgrgid_r(static_cast<gid_t>(n), e, b, l, r);
                           },
                           gr, buf)
                     : identity_detail::look_up(
                           [&](::group* e, char* b, std::size_t l, ::group** r) {
                             return ::getgrnam_r(group.c_str(), e, b, l, r);
                           },
                           gr, buf);
    if (!found) throw option_error(group_option, "expects a group name or gid known to this host, got '" + group + "'");
    id.gid = gr.gr_gid;
    id.groups = {gr.gr_gid};  // an explicit group replaces the user's groups
  }
  if (id.groups.empty()) id.groups = {id.gid};
  if (::geteuid() != 0 && (id.uid != ::geteuid() || id.gid != ::getegid()))
    throw option_error(user.empty() ? group_option : user_option,
                       "switching the workers to another user or group needs root (the master runs as uid " +
                           std::to_string(::geteuid()) + ")");
  return id;
}

/// In a new worker, before any of the user's code: takes `id` for good
/// (supplementary groups, then the group, then the user: after setuid the
/// others could no longer change). Returns an error text, empty on success.
inline std::string take_identity(const process_identity& id) noexcept {
  if (!id.change) return {};
  if (::setgroups(id.groups.size(), id.groups.data()) != 0 && ::geteuid() == 0) return "setgroups failed";
  if (::setresgid(id.gid, id.gid, id.gid) != 0) return "setresgid(" + std::to_string(id.gid) + ") failed";
  if (::setresuid(id.uid, id.uid, id.uid) != 0) return "setresuid(" + std::to_string(id.uid) + ") failed";
  if (id.uid != 0 && ::setuid(0) == 0) return "root could be regained after the switch";
  // A change of credentials makes the process non-dumpable: a hung worker's
  // SIGABRT would then leave no core. It also clears the parent-death
  // signal, which become_worker_process sets afterwards.
  ::prctl(PR_SET_DUMPABLE, 1);
  return {};
}

}  // namespace cluster::detail
