// A strict JSON reader (RFC 8259) that only says whether a text is one
// valid value: for what the library writes as JSON (/status, the JSON log).
#pragma once

#include <cctype>
#include <string_view>

namespace test_support {

// A strict JSON reader that only says whether `text` is one valid value.
class json_checker {
 public:
  explicit json_checker(std::string_view text) : s_(text) {}

  bool valid() {
    skip();
    if (!value()) return false;
    skip();
    return i_ == s_.size();
  }

 private:
  bool value() {
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return string();
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number();
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return true;
      }
    return false;
  }

  bool object() {
    ++i_;
    skip();
    if (eat('}')) return true;
    do {
      skip();
      if (!string()) return false;
      skip();
      if (!eat(':')) return false;
      skip();
      if (!value()) return false;
      skip();
    } while (eat(','));
    return eat('}');
  }

  bool array() {
    ++i_;
    skip();
    if (eat(']')) return true;
    do {
      skip();
      if (!value()) return false;
      skip();
    } while (eat(','));
    return eat(']');
  }

  bool string() {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // control characters must be escaped
      if (c != '\\') continue;
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      if (e == 'u') {
        for (int k = 0; k < 4; ++k)
          if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_++]))) return false;
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }

  bool number() {
    std::size_t start = i_;
    eat('-');
    if (!digits()) return false;
    if (s_[start + (s_[start] == '-')] == '0' && i_ - start > 1u + (s_[start] == '-')) return false;  // no leading 0
    if (eat('.') && !digits()) return false;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }

  bool digits() {
    std::size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    return i_ > start;
  }

  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

/// True when `text` is exactly one valid JSON value.
inline bool valid_json(std::string_view text) { return json_checker(text).valid(); }

}  // namespace test_support
