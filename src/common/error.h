// SPDX-License-Identifier: Apache-2.0
// The one exception type the core throws; the C API turns it into a status.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace vhu {

class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what)
      : std::runtime_error(what), code_(code < 0 ? code : -code) {}
  // Negative errno.
  int code() const { return code_; }

 private:
  int code_;
};

// Throws Error(-errno) with `what` and strerror appended.
[[noreturn]] void throw_errno(const std::string& what, int err = errno);

// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace vhu
