// SPDX-License-Identifier: Apache-2.0
// Thin RAII layer over libevent: one event_base per thread, fd watches and
// timers, and a way for other threads to run work on the loop's thread.
#pragma once

#include <event2/event.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "common/fd.h"

namespace vhu {

class EventLoop;

// A libevent event bound to a callback; freed (and thus removed) with the
// object. Create and destroy it on the loop's thread (or while the loop does
// not run).
class Watch {
 public:
  using Fn = std::function<void(short what)>;
  // fd watch (EV_READ/EV_WRITE, persistent) or, with fd == -1 and a period,
  // a persistent timer; with fd == -1 and no period, a manually triggered
  // event (see trigger()).
  Watch(EventLoop& loop, int fd, short what, Fn fn, uint64_t period_us = 0);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  // Makes a manual event run its callback on the next loop iteration.
  void trigger();

 private:
  static void dispatch(evutil_socket_t, short what, void* arg);
  event* ev_ = nullptr;
  Fn fn_;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  event_base* base() const { return base_; }

  // Runs the loop in the calling thread until quit() (from the loop thread)
  // or stop_thread().
  void run();
  // Ends run() after the current callback (loop thread only).
  void quit();

  // Busy-poll mode: run() calls `hook` over and over, looking at the loop's
  // events (without blocking) every few calls. The hook returns false when
  // it has nothing to poll; the loop then blocks until an event arrives.
  // Set before run().
  void set_poll_hook(std::function<bool()> hook) { poll_hook_ = std::move(hook); }

  // Runs the loop in a new thread.
  void start_thread();
  // Asks the loop thread to end and joins it. Pending tasks still run.
  void stop_thread();

  bool in_loop_thread() const;

  // Runs `fn` on the loop's thread and waits for it. Runs it directly when
  // called from that thread or when no thread runs the loop.
  void run_sync(const std::function<void()>& fn);

 private:
  struct Task;
  void drain_tasks();

  event_base* base_ = nullptr;
  UniqueFd task_fd_;
  std::unique_ptr<Watch> task_watch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> tasks_;
  bool running_ = false;  // a thread is inside run()
  std::function<bool()> poll_hook_;
  bool quit_ = false;  // loop thread only
  std::thread thread_;
  std::mutex exec_mu_;  // serialises inline execution when nobody runs the loop
};

}  // namespace vhu
