// cluster::request_id: middleware that gives every request an id, taken
// from the client (or the proxy in front) when it sent a sound one, and
// returns it on the response, for correlating logs across services.
#pragma once

#include <cluster/middleware.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/route.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include <unistd.h>

namespace cluster {

/// Request-id middleware. An incoming field (X-Request-Id by default) of 1
/// to 64 characters among letters, digits and "-_.:" is kept; anything else
/// is replaced by a new id: "<8 hex: random per worker>-<pid, hex>-<counter,
/// hex>", unique per worker process and request, made without allocation.
/// The id is request::id() for the handler and the access log, and is set
/// on the response under the same field name.
class request_id final : public middleware {
 public:
  /// Uses the field `name`; throws std::invalid_argument when it is not a
  /// valid field name.
  explicit request_id(std::string name = "X-Request-Id") : name_(std::move(name)) {
    if (!is_valid_field_name(name_))
      throw std::invalid_argument("cluster::request_id: bad field name \"" + name_ + "\"");
  }

  /// True for an id kept as the client sent it.
  static constexpr bool acceptable(std::string_view id) noexcept {
    return !id.empty() && id.size() <= detail::max_request_id && std::all_of(id.begin(), id.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
             c == '_' || c == '.' || c == ':';
    });
  }

  std::optional<response> before(request& req) override {
    detail::route_state& s = detail::route_access::state(req);
    std::string_view given = req.header(name_);
    if (acceptable(given)) {
      std::copy(given.begin(), given.end(), s.id.begin());
      s.id_length = static_cast<std::uint8_t>(given.size());
    } else {
      s.id_length = static_cast<std::uint8_t>(make(s.id.data(), s.id.data() + s.id.size()));
    }
    return std::nullopt;
  }

  void after(const request& req, response& res) override {
    if (!req.id().empty()) res.set(name_, req.id());
  }

 private:
  // Writes a new id; returns its length. The prefix is made at a worker's
  // first request: the master, which never answers requests, never makes
  // one, so each forked worker starts without and makes its own.
  std::size_t make(char* out, char* end) {
    if (prefix_length_ == 0) {
      std::random_device random;
      auto r = std::to_chars(prefix_, prefix_ + sizeof prefix_, static_cast<std::uint32_t>(random()) | 0x10000000u, 16);
      *r.ptr++ = '-';
      r = std::to_chars(r.ptr, prefix_ + sizeof prefix_, static_cast<std::uint32_t>(::getpid()), 16);
      *r.ptr++ = '-';
      prefix_length_ = static_cast<std::size_t>(r.ptr - prefix_);
    }
    char* p = std::copy(prefix_, prefix_ + prefix_length_, out);
    return static_cast<std::size_t>(std::to_chars(p, end, ++counter_, 16).ptr - out);
  }

  std::string name_;
  char prefix_[24] = {};  // 8 + 1 + up to 8 + 1
  std::size_t prefix_length_ = 0;
  std::uint64_t counter_ = 0;
};

}  // namespace cluster
