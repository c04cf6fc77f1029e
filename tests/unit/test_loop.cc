// SPDX-License-Identifier: Apache-2.0
// EventLoop: cross-thread run_sync, thread start/stop, watches and timers.
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/error.h"
#include "loop/loop.h"

// Last: cmocka defines macros (fail, skip) that clash with the standard library.
#include "test_util.h"

using vhu::EventLoop;
using vhu::Watch;

namespace {

using Clock = std::chrono::steady_clock;

// Waits up to `ms` for `pred`; returns its final value.
template <typename P>
bool wait_for(P&& pred, int ms = 3000) {
  auto end = Clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (Clock::now() > end) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

using vhu_test::thrown_code;

void run_sync_inline_without_thread(void**) {
  EventLoop loop;
  std::thread::id ran_on;
  bool in_loop = true;
  loop.run_sync([&] {
    ran_on = std::this_thread::get_id();
    in_loop = loop.in_loop_thread();
  });
  assert_true(ran_on == std::this_thread::get_id());
  assert_false(in_loop);
  assert_false(loop.in_loop_thread());
  assert_int_equal(thrown_code([&] { loop.run_sync([] { throw vhu::Error(-EBADF, "x"); }); }),
                   -EBADF);
}

void run_sync_runs_on_the_loop_thread(void**) {
  EventLoop loop;
  loop.start_thread();
  assert_false(loop.in_loop_thread());
  std::thread::id first, second;
  bool in_loop = false;
  loop.run_sync([&] {
    first = std::this_thread::get_id();
    in_loop = loop.in_loop_thread();
  });
  loop.run_sync([&] { second = std::this_thread::get_id(); });
  assert_true(first != std::this_thread::get_id());
  assert_true(first == second);
  assert_true(in_loop);
  // From the loop thread, run_sync runs inline instead of deadlocking.
  int depth = 0;
  loop.run_sync([&] {
    loop.run_sync([&] { depth = 2; });
    if (depth == 2) depth = 3;
  });
  assert_int_equal(depth, 3);
  loop.stop_thread();
}

void run_sync_propagates_exceptions(void**) {
  EventLoop loop;
  loop.start_thread();
  assert_int_equal(thrown_code([&] { loop.run_sync([] { throw vhu::Error(-EPROTO, "bad"); }); }),
                   -EPROTO);
  bool caught = false;
  try {
    loop.run_sync([] { throw std::runtime_error("plain"); });
  } catch (const std::runtime_error& e) {
    caught = std::strcmp(e.what(), "plain") == 0;
  }
  assert_true(caught);
  // The loop carries on.
  int v = 0;
  loop.run_sync([&] { v = 42; });
  assert_int_equal(v, 42);
  loop.stop_thread();
}

void run_sync_from_many_threads(void**) {
  EventLoop loop;
  loop.start_thread();
  constexpr int kThreads = 4, kEach = 250;
  long counter = 0;  // only touched on the loop thread
  std::atomic<int> off_thread{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&] {
      for (int i = 0; i < kEach; i++)
        loop.run_sync([&] {
          if (!loop.in_loop_thread()) off_thread++;
          counter++;
        });
    });
  }
  for (auto& t : ts) t.join();
  long total = 0;
  loop.run_sync([&] { total = counter; });
  assert_int_equal(total, kThreads * kEach);
  assert_int_equal(off_thread.load(), 0);
  loop.stop_thread();
}

void start_and_stop_thread(void**) {
  EventLoop loop;
  loop.stop_thread();  // not started: no-op
  loop.start_thread();
  loop.start_thread();  // already started: no-op
  std::thread::id loop_id;
  loop.run_sync([&] { loop_id = std::this_thread::get_id(); });
  assert_true(loop_id != std::this_thread::get_id());
  loop.stop_thread();
  // Stopped: work runs inline again.
  std::thread::id now;
  loop.run_sync([&] { now = std::this_thread::get_id(); });
  assert_true(now == std::this_thread::get_id());
  // And it can be started again.
  loop.start_thread();
  loop.run_sync([&] { now = std::this_thread::get_id(); });
  assert_true(now != std::this_thread::get_id());
  loop.stop_thread();
  // Destruction while the thread runs stops and joins it.
  {
    EventLoop other;
    other.start_thread();
    other.run_sync([&] { now = std::this_thread::get_id(); });
  }
  assert_true(now != std::this_thread::get_id());
}

// Starting and stopping right away must never lose the stop request. The
// window is small, so this repeats for a while. A watchdog releases a loop
// whose stop has not finished within a second (with a task that quits it)
// and counts it.
void start_stop_back_to_back(void**) {
  std::mutex mu;
  EventLoop* stopping = nullptr;
  Clock::time_point since;
  bool done = false;
  int hangs = 0;
  std::thread watchdog([&] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::lock_guard lk(mu);
      if (done) return;
      if (stopping && Clock::now() - since > std::chrono::seconds(1)) {
        hangs++;
        since = Clock::now();
        try {
          stopping->run_sync([l = stopping] { l->quit(); });
        } catch (...) {
          // The loop ended on its own meanwhile.
        }
      }
    }
  });
  int rounds = 0;
  auto end = Clock::now() + std::chrono::milliseconds(1500);
  for (; rounds < 20000 && Clock::now() < end; rounds++) {
    EventLoop loop;
    loop.start_thread();
    {
      std::lock_guard lk(mu);
      stopping = &loop;
      since = Clock::now();
    }
    loop.stop_thread();
    std::lock_guard lk(mu);
    stopping = nullptr;
  }
  {
    std::lock_guard lk(mu);
    done = true;
  }
  watchdog.join();
  if (hangs) fail_msg("stop_thread hung %d times in %d rounds", hangs, rounds);
}

void timer_watch_fires_periodically(void**) {
  EventLoop loop;
  loop.start_thread();
  std::atomic<int> fired{0};
  std::atomic<int> wrong{0};
  std::unique_ptr<Watch> w;
  loop.run_sync([&] {
    w = std::make_unique<Watch>(
        loop, -1, 0,
        [&](short what) {
          if (!loop.in_loop_thread() || !(what & EV_TIMEOUT)) wrong++;
          fired++;
        },
        2000 /* us */);
  });
  assert_true(wait_for([&] { return fired.load() >= 3; }));
  loop.run_sync([&] { w.reset(); });
  int after = fired.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  assert_int_equal(fired.load(), after);  // gone with the object
  assert_int_equal(wrong.load(), 0);
  loop.stop_thread();
}

void fd_watch_and_manual_trigger(void**) {
  EventLoop loop;
  int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  assert_true(efd >= 0);
  std::atomic<int> reads{0}, triggers{0};
  std::atomic<uint64_t> sum{0};
  std::unique_ptr<Watch> fdw, manual;
  // Created before the loop runs: allowed.
  fdw = std::make_unique<Watch>(loop, efd, EV_READ, [&](short what) {
    uint64_t v = 0;
    if ((what & EV_READ) && ::read(efd, &v, sizeof v) == sizeof v) sum += v;
    reads++;
  });
  manual = std::make_unique<Watch>(loop, -1, 0, [&](short) { triggers++; });
  loop.start_thread();
  uint64_t three = 3;
  assert_int_equal(::write(efd, &three, sizeof three), sizeof three);
  assert_true(wait_for([&] { return sum.load() == 3; }));
  assert_int_equal(triggers.load(), 0);  // never fires on its own
  loop.run_sync([&] { manual->trigger(); });
  assert_true(wait_for([&] { return triggers.load() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  assert_int_equal(triggers.load(), 1);  // once per trigger
  loop.run_sync([&] {
    fdw.reset();
    manual.reset();
  });
  loop.stop_thread();
  ::close(efd);
}

void quit_ends_run_in_the_calling_thread(void**) {
  EventLoop loop;
  int ticks = 0;
  bool in_loop = false;
  Watch w(
      loop, -1, 0,
      [&](short) {
        in_loop = loop.in_loop_thread();
        if (++ticks == 3) loop.quit();
      },
      1000);
  auto t0 = Clock::now();
  loop.run();
  assert_int_equal(ticks, 3);
  assert_true(in_loop);
  assert_false(loop.in_loop_thread());
  assert_true(Clock::now() - t0 < std::chrono::seconds(2));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(run_sync_inline_without_thread),
      cmocka_unit_test(run_sync_runs_on_the_loop_thread),
      cmocka_unit_test(run_sync_propagates_exceptions),
      cmocka_unit_test(run_sync_from_many_threads),
      cmocka_unit_test(start_and_stop_thread),
      cmocka_unit_test(start_stop_back_to_back),
      cmocka_unit_test(timer_watch_fires_periodically),
      cmocka_unit_test(fd_watch_and_manual_trigger),
      cmocka_unit_test(quit_ends_run_in_the_calling_thread),
  };
  return cmocka_run_group_tests_name("loop", tests, nullptr, nullptr);
}
