// SPDX-License-Identifier: Apache-2.0
#include "loop/loop.h"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

namespace vhu {
namespace {
// The loop whose run() the current thread is inside, if any.
thread_local EventLoop* tl_current_loop = nullptr;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

struct EventLoop::Task {
  std::function<void()> fn;
  bool done = false;
  std::exception_ptr error;
};

Watch::Watch(EventLoop& loop, int fd, short what, Fn fn, uint64_t period_us) : fn_(std::move(fn)) {
  short flags = what;
  if (fd >= 0 || period_us) flags |= EV_PERSIST;
  ev_ = event_new(loop.base(), fd, flags, &Watch::dispatch, this);
  if (!ev_) throw Error(-ENOMEM, "event_new failed");
  if (fd >= 0) {
    if (event_add(ev_, nullptr) != 0) {
      event_free(ev_);
      throw Error(-EINVAL, "event_add failed");
    }
  } else if (period_us) {
    timeval tv{static_cast<time_t>(period_us / 1000000),
               static_cast<suseconds_t>(period_us % 1000000)};
    if (event_add(ev_, &tv) != 0) {
      event_free(ev_);
      throw Error(-EINVAL, "event_add failed");
    }
  }
}

Watch::~Watch() {
  if (ev_) event_free(ev_);
}

void Watch::trigger() { event_active(ev_, EV_TIMEOUT, 0); }

void Watch::dispatch(evutil_socket_t, short what, void* arg) {
  static_cast<Watch*>(arg)->fn_(what);
}

EventLoop::EventLoop() {
  event_config* cfg = event_config_new();
  if (!cfg) throw Error(-ENOMEM, "event_config_new failed");
  event_config_require_features(cfg, EV_FEATURE_FDS);
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (!base_) base_ = event_base_new();
  if (!base_) throw Error(-ENOMEM, "event_base_new failed");
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    event_base_free(base_);
    throw_errno("eventfd");
  }
  task_fd_.reset(fd);
  task_watch_ = std::make_unique<Watch>(*this, fd, EV_READ, [this](short) {
    uint64_t v;
    while (::read(task_fd_.get(), &v, sizeof v) < 0 && errno == EINTR) {
    }
    drain_tasks();
  });
}

EventLoop::~EventLoop() {
  stop_thread();
  task_watch_.reset();
  event_base_free(base_);
}

bool EventLoop::in_loop_thread() const { return tl_current_loop == this; }

void EventLoop::run() {
  {
    std::lock_guard lk(mu_);
    running_ = true;
  }
  EventLoop* outer = tl_current_loop;
  tl_current_loop = this;
  // No drain here: a quit() run before event_base_loop() starts would be
  // forgotten by it. Queued tasks come with an eventfd write, so the
  // running loop picks them up.
  if (!poll_hook_) {
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
  } else {
    // Events are looked at every kEventPeriodNs while polling: often
    // enough for run_sync() callers and host watches, rarely enough to keep
    // the system call out of the per-packet cost. The clock is read every
    // kClockEvery passes (a pass over idle queues is a few loads).
    constexpr int64_t kEventPeriodNs = 50'000;
    constexpr unsigned kClockEvery = 32;
    quit_ = false;
    int64_t last = now_ns();
    for (unsigned n = 1; !quit_; n++) {
      if (!poll_hook_()) {
        event_base_loop(base_, EVLOOP_ONCE);
        last = now_ns();
      } else if (n % kClockEvery == 0) {
        int64_t t = now_ns();
        if (t - last >= kEventPeriodNs) {
          event_base_loop(base_, EVLOOP_NONBLOCK);
          last = t;
        }
      }
    }
  }
  // Run whatever was queued before we stopped, so no caller waits forever.
  drain_tasks();
  tl_current_loop = outer;
  std::lock_guard lk(mu_);
  running_ = false;
  // Tasks queued after the final drain are run by their callers' threads.
  for (auto& t : tasks_) {
    t->done = true;
    t->error = std::make_exception_ptr(Error(-ESHUTDOWN, "event loop stopped"));
  }
  tasks_.clear();
  cv_.notify_all();
}

void EventLoop::quit() {
  quit_ = true;
  event_base_loopbreak(base_);
}

void EventLoop::start_thread() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
  // Wait until the loop thread is registered so in_loop_thread() and
  // run_sync() route work correctly from here on.
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (running_) break;
    }
    std::this_thread::yield();
  }
}

void EventLoop::stop_thread() {
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) return;
  {
    auto t = std::make_shared<Task>();
    t->fn = [this] { quit(); };
    std::lock_guard lk(mu_);
    tasks_.push_back(t);
  }
  uint64_t one = 1;
  (void)!::write(task_fd_.get(), &one, sizeof one);
  thread_.join();
}

void EventLoop::drain_tasks() {
  for (;;) {
    std::shared_ptr<Task> t;
    {
      std::lock_guard lk(mu_);
      if (tasks_.empty()) return;
      t = tasks_.front();
      tasks_.pop_front();
    }
    try {
      t->fn();
    } catch (...) {
      t->error = std::current_exception();
    }
    std::lock_guard lk(mu_);
    t->done = true;
    cv_.notify_all();
  }
}

void EventLoop::run_sync(const std::function<void()>& fn) {
  if (in_loop_thread()) {
    fn();
    return;
  }
  std::unique_lock lk(mu_);
  if (!running_) {
    lk.unlock();
    std::lock_guard g(exec_mu_);
    fn();
    return;
  }
  auto t = std::make_shared<Task>();
  t->fn = fn;
  tasks_.push_back(t);
  uint64_t one = 1;
  (void)!::write(task_fd_.get(), &one, sizeof one);
  cv_.wait(lk, [&] { return t->done; });
  if (t->error) std::rethrow_exception(t->error);
}

}  // namespace vhu
