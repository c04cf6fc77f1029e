// SPDX-License-Identifier: Apache-2.0
#include "common/error.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace vhu {

void throw_errno(const std::string& what, int err) {
  throw Error(-err, what + ": " + std::strerror(err));
}

std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string s;
  if (n > 0) {
    s.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(s.data(), s.size(), fmt, ap2);
    s.resize(static_cast<size_t>(n));
  }
  va_end(ap2);
  return s;
}

}  // namespace vhu
