// SPDX-License-Identifier: Apache-2.0
#include "harness.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/error.h"

namespace vhu::test {
namespace {

void handle(vhu_vring* vr, void* ud) {
  auto* t = static_cast<TestDevice*>(ud);
  t->handler_calls++;
  {
    std::lock_guard lk(t->mu);
    t->handler_threads[vhu_vring_index(vr)] = std::this_thread::get_id();
  }
  auto complete = [t](vhu_chain* c) {
    size_t written = 0;
    if (t->opts.echo) {
      std::vector<uint8_t> buf(vhu_chain_readable_len(c));
      vhu_chain_read(c, 0, buf.data(), buf.size());
      written = vhu_chain_write(c, 0, buf.data(), buf.size());
    } else {
      unsigned n;
      const iovec* iov = vhu_chain_writable(c, &n);
      for (unsigned i = 0; i < n; i++) {
        std::memset(iov[i].iov_base, kFillByte, iov[i].iov_len);
        written += iov[i].iov_len;
      }
    }
    return static_cast<uint32_t>(written);
  };
  std::vector<vhu_chain*> batch;
  std::vector<uint32_t> lens;
  auto finish = [&](vhu_chain* c) {
    uint32_t w = complete(c);
    if (!t->opts.batch) {
      vhu_vring_push(vr, c, w);
      return;
    }
    batch.push_back(c);
    lens.push_back(w);
  };
  if (t->release_held) {
    for (vhu_chain* c : t->held) finish(c);
    t->held.clear();
  }
  vhu_chain* c;
  while (vhu_vring_pop(vr, &c) == 0) {
    if (t->opts.hold && !t->release_held)
      t->held.push_back(c);
    else
      finish(c);
  }
  if (!batch.empty()) {
    int r = vhu_vring_push_many(vr, batch.data(), lens.data(), static_cast<unsigned>(batch.size()));
    if (r != 0) std::fprintf(stderr, "push_many: %s\n", vhu_strerror(r));
    t->batches++;
  }
  vhu_vring_notify(vr);
}

int get_config(uint32_t off, void* buf, uint32_t size, void* ud) {
  auto* t = static_cast<TestDevice*>(ud);
  if (uint64_t{off} + size > sizeof t->config) return -EINVAL;
  std::memcpy(buf, t->config + off, size);
  return 0;
}

int set_config(uint32_t off, const void* buf, uint32_t size, uint32_t, void* ud) {
  auto* t = static_cast<TestDevice*>(ud);
  if (uint64_t{off} + size > sizeof t->config) return -EINVAL;
  std::memcpy(t->config + off, buf, size);
  return 0;
}

void on_reset(void* ud) { static_cast<TestDevice*>(ud)->resets++; }
void on_started(vhu_vring*, void* ud) { static_cast<TestDevice*>(ud)->started++; }
void on_stopped(vhu_vring*, void* ud) { static_cast<TestDevice*>(ud)->stopped++; }
void on_memory(void* ud) { static_cast<TestDevice*>(ud)->memory_changes++; }

void on_log(vhu_log_level, const char* msg, void* ud) {
  auto* t = static_cast<TestDevice*>(ud);
  std::lock_guard lk(t->mu);
  if (t->log.size() < 1000) t->log.emplace_back(msg);
  if (getenv("VHU_TEST_VERBOSE")) std::fprintf(stderr, "[daemon] %s\n", msg);
}

}  // namespace

TestDevice::TestDevice(Options o) : opts(o) {
  char tmpl[] = "/tmp/vhu-itest-XXXXXX";
  if (!mkdtemp(tmpl)) throw_errno("mkdtemp");
  dir_ = tmpl;
  path_ = dir_ + "/dev.sock";
  handler_threads.resize(opts.num_queues);
  for (size_t i = 0; i < sizeof config; i++) config[i] = static_cast<uint8_t>(i);

  vhu_backend_ops ops{};
  ops.struct_size = sizeof ops;
  ops.num_queues = opts.num_queues;
  ops.max_queue_size = 1024;
  ops.handle_queue = handle;
  if (opts.with_config) {
    ops.get_config = get_config;
    ops.set_config = set_config;
  }
  ops.device_reset = on_reset;
  ops.queue_started = on_started;
  ops.queue_stopped = on_stopped;
  ops.memory_changed = on_memory;
  ops.queue_num = opts.queue_num;
  vhu_error* err = nullptr;
  if (vhu_daemon_new(&ops, this, nullptr, &d_, &err) != 0) {
    std::string m = vhu_error_message(err);
    vhu_error_free(err);
    throw Error(-EINVAL, m);
  }
  vhu_daemon_set_log(d_, on_log, VHU_LOG_DEBUG, this);
  if (vhu_daemon_set_workers(d_, opts.workers) != 0) throw Error(-EINVAL, "set_workers");
  for (size_t q = 0; q < opts.assignment.size(); q++)
    if (vhu_daemon_assign_queue(d_, static_cast<uint16_t>(q), opts.assignment[q]) != 0)
      throw Error(-EINVAL, "assign_queue");
  if (opts.poll && vhu_daemon_set_poll(d_, 1) != 0) throw Error(-EINVAL, "set_poll");
  if (vhu_daemon_listen(d_, path_.c_str(), &err) != 0 || vhu_daemon_start(d_, &err) != 0) {
    std::string m = vhu_error_message(err);
    vhu_error_free(err);
    throw Error(-EINVAL, m);
  }
}

TestDevice::~TestDevice() {
  vhu_daemon_stop(d_);
  vhu_error* err = nullptr;
  vhu_daemon_wait(d_, &err);
  vhu_error_free(err);
  vhu_daemon_free(d_);
  ::rmdir(dir_.c_str());
}

fe::Device TestDevice::connect(fe::DeviceOptions o) {
  o.num_queues = opts.num_queues;
  fe::Device dev = fe::Device::connect(path_, o);
  dev.bring_up();
  return dev;
}

int count_open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

int count_mappings() {
  std::ifstream f("/proc/self/maps");
  std::string line;
  int n = 0;
  // Guest memory is memfd-backed on both sides; other mappings (thread
  // stacks cached by the C library, allocator arenas) come and go.
  while (std::getline(f, line))
    if (line.find("/memfd:") != std::string::npos) n++;
  return n;
}

int round_trip(fe::Device& dev, size_t queue, uint32_t len, int timeout_ms) {
  fe::DriverRing& r = dev.ring(queue);
  uint64_t buf = dev.mem().alloc(len, 64);
  r.add_chain({{buf, len, true}});
  r.kick();
  if (!r.wait_used(timeout_ms)) return -1;
  auto u = r.get_used();
  return u ? static_cast<int>(u->second) : -1;
}

}  // namespace vhu::test
