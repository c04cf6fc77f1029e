// SPDX-License-Identifier: Apache-2.0
// The daemon: endpoints (listen/connect/adopted fd), the control loop, the
// worker loops, and one Session per front-end connection.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "loop/loop.h"
#include "memory/memory.h"
#include "session/queue.h"
#include "vhostuser/vhostuser.h"

namespace vhu {

class Session;
class BackendChannel;

class Daemon {
 public:
  Daemon(const vhu_backend_ops& ops, void* user_data, void (*user_data_free)(void*));
  ~Daemon();

  // The caller's table with defaults applied (member pointers may be null
  // except handle_queue).
  const vhu_backend_ops& ops() const { return ops_; }
  void* user_data() const { return user_data_; }
  Logger& log() { return log_; }
  vhu_daemon* handle() const { return handle_; }
  void set_handle(vhu_daemon* h) { handle_ = h; }

  void set_workers(unsigned n);
  void assign_queue(uint16_t queue, unsigned worker);
  void set_poll(bool on);
  bool polling() const { return poll_; }

  void listen(const std::string& path);
  void connect(const std::string& path);
  void adopt(UniqueFd fd, int kind);

  int run(std::string& err);
  void start();
  int wait(std::string& err);
  void stop() noexcept;  // async-signal-safe

  bool connected() const { return connected_.load(); }
  uint64_t acked_features() const { return acked_features_.load(); }
  uint64_t protocol_features() const { return protocol_features_.load(); }
  vhu_vring* vring(uint16_t index);
  uint16_t num_queues() const { return ops_.num_queues; }
  unsigned num_workers() const { return static_cast<unsigned>(workers_.size()); }

  int config_changed();
  int read_guest(uint64_t gpa, void* buf, size_t len);
  int write_guest(uint64_t gpa, const void* buf, size_t len);

  // The loop of worker `w` (the control loop with 0 workers).
  EventLoop& worker_loop(unsigned w);

  // ---- for the session ----
  void set_acked_features(uint64_t f) { acked_features_ = f; }
  void set_protocol_features(uint64_t f) { protocol_features_ = f; }
  void publish_memory(MemoryTablePtr mem);
  void publish_backend_channel(std::shared_ptr<BackendChannel> ch);
  void note_queue_broken() { needs_reset_ = true; }
  bool needs_reset() const { return needs_reset_.load(); }
  void clear_needs_reset() { needs_reset_ = false; }
  EventLoop& control_loop() { return *control_; }

 private:
  void build_loops();
  int run_claimed(std::string& err);
  void on_accept();
  void begin_session(UniqueFd conn);
  void end_session();

  vhu_backend_ops ops_{};
  void* user_data_;
  void (*user_data_free_)(void*);
  vhu_daemon* handle_ = nullptr;
  Logger log_;

  unsigned n_workers_ = 1;
  std::vector<unsigned> queue_worker_;
  bool loops_built_ = false;
  bool poll_ = false;
  std::unique_ptr<EventLoop> control_;
  std::vector<std::unique_ptr<EventLoop>> workers_;
  std::vector<std::unique_ptr<vhu_vring>> queues_;

  UniqueFd listen_fd_;
  UniqueFd conn_fd_;  // connected endpoint not yet handed to a session
  std::string unlink_path_;
  bool one_session_ = false;

  UniqueFd stop_fd_;
  std::atomic<bool> running_{false};
  std::thread bg_thread_;
  int bg_status_ = 0;
  std::string bg_error_;

  std::unique_ptr<Watch> stop_watch_, listen_watch_, end_watch_, session_watch_;
  std::unique_ptr<Session> session_;

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> acked_features_{0}, protocol_features_{0};
  std::atomic<bool> needs_reset_{false};

  std::mutex shared_mu_;  // guards the two snapshots below
  MemoryTablePtr mem_snapshot_;
  std::shared_ptr<BackendChannel> backend_;
};

}  // namespace vhu

struct vhu_daemon {
  std::unique_ptr<vhu::Daemon> rep;
};
