// SPDX-License-Identifier: Apache-2.0
// Shared pieces of the integration tests: a test device built on the public
// C API, run in a background thread and listening in a fresh temp folder,
// plus fd and mapping counters for leak checks.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "frontend/frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhu::test {

// Bytes the test device writes into every device-writable buffer.
inline constexpr uint8_t kFillByte = 0xa5;

// A device whose queues fill writable buffers with kFillByte, or echo the
// readable bytes into the writable ones when `echo` is set.
struct TestDevice {
  struct Options {
    uint16_t num_queues = 1;
    unsigned workers = 1;
    bool echo = false;
    bool with_config = true;
    // Keep popped chains instead of completing them, until release_held is
    // set (then the next handler call completes them first).
    bool hold = false;
    // Queue -> worker; empty means every queue on worker 0.
    std::vector<unsigned> assignment;
    // Busy-poll mode (vhu_daemon_set_poll).
    bool poll = false;
    // Complete all the chains of one handler call with one
    // vhu_vring_push_many.
    bool batch = false;
    // vhu_backend_ops.queue_num (the GET_QUEUE_NUM answer).
    uint16_t queue_num = 0;
  };

  explicit TestDevice(Options opts);
  TestDevice() : TestDevice(Options{}) {}
  ~TestDevice();

  const std::string& socket_path() const { return path_; }
  vhu_daemon* daemon() { return d_; }

  // Connects the project's front-end and brings the device up.
  fe::Device connect(fe::DeviceOptions o = {});

  Options opts;
  std::string dir_, path_;
  vhu_daemon* d_ = nullptr;
  std::atomic<int> handler_calls{0};
  std::atomic<int> batches{0};
  std::atomic<int> resets{0};
  std::atomic<int> started{0}, stopped{0};
  std::atomic<int> memory_changes{0};
  std::mutex mu;
  std::vector<std::thread::id> handler_threads;  // per queue, last seen
  uint8_t config[64] = {};
  std::vector<vhu_chain*> held;  // touched only on the worker thread
  std::atomic<bool> release_held{false};
  std::vector<std::string> log;
};

int count_open_fds();
// Mappings of memfd-backed guest memory in this process.
int count_mappings();

// Posts one writable buffer of `len` bytes on `ring` and waits for it to be
// used; returns the used length (or -1 on timeout).
int round_trip(fe::Device& dev, size_t queue, uint32_t len, int timeout_ms = 2000);

}  // namespace vhu::test
