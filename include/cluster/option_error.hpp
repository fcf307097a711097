// The exception cluster::run throws for an invalid option, before anything
// is forked: it names the option, what it accepts and what it got.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace cluster {

/// Thrown for an invalid option: the message names the option, what it
/// accepts and what it got.
class option_error : public std::invalid_argument {
 public:
  option_error(std::string option, const std::string& message)
      : std::invalid_argument(option + ": " + message), option_(std::move(option)) {}
  /// The option at fault, as named in `cluster::options` or on the command line.
  const std::string& option() const noexcept { return option_; }

 private:
  std::string option_;
};

}  // namespace cluster
