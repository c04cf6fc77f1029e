// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <cstdarg>
#include <cstdio>

namespace vhu {

void Logger::log(vhu_log_level level, const char* fmt, ...) const {
  if (!enabled(level)) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fn_(level, buf, ud_);
}

}  // namespace vhu
