// SPDX-License-Identifier: Apache-2.0
// Logger: forwards formatted messages to the host's callback, if any.
#pragma once

#include <string>

#include "vhostuser/vhostuser.h"

namespace vhu {

class Logger {
 public:
  void set(vhu_log_fn fn, vhu_log_level max, void* ud) {
    fn_ = fn;
    max_ = max;
    ud_ = ud;
  }
  bool enabled(vhu_log_level level) const { return fn_ && level <= max_; }
  void log(vhu_log_level level, const char* fmt, ...) const __attribute__((format(printf, 3, 4)));

 private:
  vhu_log_fn fn_ = nullptr;
  vhu_log_level max_ = VHU_LOG_ERROR;
  void* ud_ = nullptr;
};

}  // namespace vhu
