// SPDX-License-Identifier: Apache-2.0
// Byte-stream reader shared by the fuzz targets: every read succeeds, and
// reads past the end yield zeros, so any input is a valid description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vhu_fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}

  bool empty() const { return n_ == 0; }
  size_t left() const { return n_; }

  uint8_t u8() {
    if (n_ == 0) return 0;
    n_--;
    return *p_++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | (static_cast<uint32_t>(u16()) << 16); }
  uint64_t u64() { return static_cast<uint64_t>(u32()) | (static_cast<uint64_t>(u32()) << 32); }

  // Copies up to `len` bytes into `out` (zero-filling the rest); returns how
  // many came from the input.
  size_t bytes(void* out, size_t len) {
    size_t n = len < n_ ? len : n_;
    if (n) std::memcpy(out, p_, n);
    if (n < len) std::memset(static_cast<uint8_t*>(out) + n, 0, len - n);
    p_ += n;
    n_ -= n;
    return n;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

// VHU_FUZZ_TRACE=1 in the environment makes a target narrate what an input
// does (for reading reproducers; far too slow for fuzzing).
inline bool tracing() {
  static const bool on = [] {
    const char* v = std::getenv("VHU_FUZZ_TRACE");
    return v && *v && *v != '0';
  }();
  return on;
}

// A broken invariant: report it in a way libFuzzer records as a crash.
[[noreturn]] inline void invariant_failed(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}

}  // namespace vhu_fuzz

#define FUZZ_TRACE(...)                                           \
  do {                                                            \
    if (::vhu_fuzz::tracing()) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::vhu_fuzz::invariant_failed(__FILE__, __LINE__, #cond); \
  } while (0)
