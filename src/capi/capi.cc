// SPDX-License-Identifier: Apache-2.0
// The C API: argument checks, and the barrier that turns every C++ error
// into a status code. No exception leaves this file.
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "common/error.h"
#include "daemon/daemon.h"
#include "vhostuser/vhostuser.h"

struct vhu_error {
  int code;
  std::string message;
};

struct vhu_watch {
  vhu::EventLoop* loop;
  std::unique_ptr<vhu::Watch> watch;
};

namespace {

void set_error(vhu_error** err, int code, const char* msg) noexcept {
  if (!err) return;
  *err = new (std::nothrow) vhu_error;
  if (!*err) return;
  try {
    (*err)->code = code;
    (*err)->message = msg;
  } catch (...) {
  }
}

// Runs `fn`, mapping exceptions to a status code and an error message.
template <typename Fn>
int guarded(vhu_error** err, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const vhu::Error& e) {
    set_error(err, e.code(), e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    set_error(err, -ENOMEM, "out of memory");
    return -ENOMEM;
  } catch (const std::exception& e) {
    set_error(err, -EIO, e.what());
    return -EIO;
  } catch (...) {
    set_error(err, -EIO, "unknown internal error");
    return -EIO;
  }
}

#define CHECK_ARG(cond, err)                               \
  do {                                                     \
    if (!(cond)) {                                         \
      set_error(err, -EINVAL, "invalid argument: " #cond); \
      return -EINVAL;                                      \
    }                                                      \
  } while (0)

int add_watch(vhu_daemon* d, unsigned worker, int fd, short what, uint64_t period_us,
              vhu_watch_fn fn, void* ud, vhu_watch** out) {
  return guarded(nullptr, [&] {
    vhu::EventLoop& loop = d->rep->worker_loop(worker);
    auto* w = new vhu_watch{&loop, nullptr};
    try {
      loop.run_sync([&] {
        w->watch = std::make_unique<vhu::Watch>(
            loop, fd, what,
            [fn, ud, fd](short ev) {
              uint32_t e = 0;
              if (ev & EV_READ) e |= VHU_WATCH_READ;
              if (ev & EV_WRITE) e |= VHU_WATCH_WRITE;
              fn(fd, e, ud);
            },
            period_us);
      });
    } catch (...) {
      delete w;
      throw;
    }
    *out = w;
    return 0;
  });
}

}  // namespace

extern "C" {

void vhu_version(int* major, int* minor, int* patch) {
  if (major) *major = VHU_VERSION_MAJOR;
  if (minor) *minor = VHU_VERSION_MINOR;
  if (patch) *patch = VHU_VERSION_PATCH;
}

const char* vhu_strerror(int status) {
  switch (status) {
    case 0:
      return "success";
    case -EINVAL:
      return "invalid argument";
    case -ENOMEM:
      return "out of memory";
    case -EBUSY:
      return "busy (already running or already configured)";
    case -ENOTCONN:
      return "not connected or not started";
    case -EAGAIN:
      return "nothing available";
    case -EIO:
      return "I/O error or broken ring";
    case -EFAULT:
      return "address not mapped in guest memory";
    case -ENOTSUP:
      return "not supported";
    case -ETIMEDOUT:
      return "timed out";
    case -EPROTO:
      return "protocol error";
    case -EEXIST:
      return "already exists";
    case -ENOENT:
      return "not found";
    default:
      break;
  }
  if (status < 0) {
    // A static, thread-safe description of any other errno value.
    const char* s = strerrordesc_np(-status);
    return s ? s : "unknown error";
  }
  return "unknown status";
}

int vhu_error_code(const vhu_error* err) { return err ? err->code : 0; }
const char* vhu_error_message(const vhu_error* err) { return err ? err->message.c_str() : ""; }
void vhu_error_free(vhu_error* err) { delete err; }

int vhu_daemon_new(const vhu_backend_ops* ops, void* user_data, void (*user_data_free)(void*),
                   vhu_daemon** out, vhu_error** err) {
  if (out) *out = nullptr;
  if (!ops || !out || ops->struct_size < offsetof(vhu_backend_ops, num_queues) + 2) {
    if (user_data_free) user_data_free(user_data);
    set_error(err, -EINVAL, "invalid argument: a callback table and an out pointer are required");
    return -EINVAL;
  }
  auto* d = new (std::nothrow) vhu_daemon;
  if (!d) {
    if (user_data_free) user_data_free(user_data);
    set_error(err, -ENOMEM, "out of memory");
    return -ENOMEM;
  }
  int rc = guarded(err, [&] {
    d->rep = std::make_unique<vhu::Daemon>(*ops, user_data, user_data_free);
    d->rep->set_handle(d);
    return 0;
  });
  if (rc != 0) {
    delete d;
    if (user_data_free) user_data_free(user_data);
    return rc;
  }
  *out = d;
  return 0;
}

void vhu_daemon_free(vhu_daemon* d) {
  if (!d) return;
  try {
    d->rep.reset();
  } catch (...) {
  }
  delete d;
}

int vhu_daemon_set_log(vhu_daemon* d, vhu_log_fn fn, vhu_log_level max, void* ud) {
  if (!d) return -EINVAL;
  d->rep->log().set(fn, max, ud);
  return 0;
}

int vhu_daemon_set_workers(vhu_daemon* d, unsigned workers) {
  if (!d) return -EINVAL;
  return guarded(nullptr, [&] {
    d->rep->set_workers(workers);
    return 0;
  });
}

int vhu_daemon_set_poll(vhu_daemon* d, int enable) {
  if (!d) return -EINVAL;
  return guarded(nullptr, [&] {
    d->rep->set_poll(enable != 0);
    return 0;
  });
}

int vhu_daemon_assign_queue(vhu_daemon* d, uint16_t queue, unsigned worker) {
  if (!d) return -EINVAL;
  return guarded(nullptr, [&] {
    d->rep->assign_queue(queue, worker);
    return 0;
  });
}

int vhu_daemon_listen(vhu_daemon* d, const char* path, vhu_error** err) {
  CHECK_ARG(d && path, err);
  return guarded(err, [&] {
    d->rep->listen(path);
    return 0;
  });
}

int vhu_daemon_connect(vhu_daemon* d, const char* path, vhu_error** err) {
  CHECK_ARG(d && path, err);
  return guarded(err, [&] {
    d->rep->connect(path);
    return 0;
  });
}

int vhu_daemon_adopt_fd(vhu_daemon* d, int fd, int kind, vhu_error** err) {
  vhu::UniqueFd owned(fd);
  CHECK_ARG(d && fd >= 0, err);
  return guarded(err, [&] {
    d->rep->adopt(std::move(owned), kind);
    return 0;
  });
}

int vhu_daemon_run(vhu_daemon* d, vhu_error** err) {
  CHECK_ARG(d, err);
  return guarded(err, [&] {
    std::string msg;
    int rc = d->rep->run(msg);
    if (rc != 0) set_error(err, rc, msg.c_str());
    return rc;
  });
}

int vhu_daemon_start(vhu_daemon* d, vhu_error** err) {
  CHECK_ARG(d, err);
  return guarded(err, [&] {
    d->rep->start();
    return 0;
  });
}

int vhu_daemon_wait(vhu_daemon* d, vhu_error** err) {
  CHECK_ARG(d, err);
  return guarded(err, [&] {
    std::string msg;
    int rc = d->rep->wait(msg);
    if (rc != 0) set_error(err, rc, msg.c_str());
    return rc;
  });
}

void vhu_daemon_stop(vhu_daemon* d) {
  if (d && d->rep) d->rep->stop();
}

int vhu_daemon_is_connected(const vhu_daemon* d) { return d && d->rep->connected(); }

uint64_t vhu_daemon_acked_features(const vhu_daemon* d) { return d ? d->rep->acked_features() : 0; }

uint64_t vhu_daemon_protocol_features(const vhu_daemon* d) {
  return d ? d->rep->protocol_features() : 0;
}

vhu_vring* vhu_daemon_get_vring(vhu_daemon* d, uint16_t index) {
  if (!d) return nullptr;
  try {
    return d->rep->vring(index);
  } catch (...) {
    return nullptr;
  }
}

int vhu_daemon_config_changed(vhu_daemon* d) {
  if (!d) return -EINVAL;
  return guarded(nullptr, [&] { return d->rep->config_changed(); });
}

int vhu_daemon_read_guest(vhu_daemon* d, uint64_t gpa, void* buf, size_t len) {
  if (!d || (!buf && len)) return -EINVAL;
  return guarded(nullptr, [&] { return d->rep->read_guest(gpa, buf, len); });
}

int vhu_daemon_write_guest(vhu_daemon* d, uint64_t gpa, const void* buf, size_t len) {
  if (!d || (!buf && len)) return -EINVAL;
  return guarded(nullptr, [&] { return d->rep->write_guest(gpa, buf, len); });
}

int vhu_daemon_add_watch(vhu_daemon* d, unsigned worker, int fd, uint32_t events, vhu_watch_fn fn,
                         void* ud, vhu_watch** out) {
  if (!d || fd < 0 || !fn || !out || !events || (events & ~(VHU_WATCH_READ | VHU_WATCH_WRITE)))
    return -EINVAL;
  short what = 0;
  if (events & VHU_WATCH_READ) what |= EV_READ;
  if (events & VHU_WATCH_WRITE) what |= EV_WRITE;
  return add_watch(d, worker, fd, what, 0, fn, ud, out);
}

int vhu_daemon_add_timer(vhu_daemon* d, unsigned worker, uint64_t period_us, vhu_watch_fn fn,
                         void* ud, vhu_watch** out) {
  if (!d || !period_us || !fn || !out) return -EINVAL;
  return add_watch(d, worker, -1, 0, period_us, fn, ud, out);
}

void vhu_watch_free(vhu_watch* w) {
  if (!w) return;
  try {
    w->loop->run_sync([&] { w->watch.reset(); });
  } catch (...) {
  }
  delete w;
}

uint16_t vhu_vring_index(const vhu_vring* v) { return v ? v->index() : 0; }
uint16_t vhu_vring_size(const vhu_vring* v) { return v ? v->num() : 0; }
int vhu_vring_is_started(const vhu_vring* v) { return v && v->started(); }
int vhu_vring_is_enabled(const vhu_vring* v) { return v && v->enabled(); }
int vhu_vring_is_broken(const vhu_vring* v) { return v && v->broken(); }
vhu_daemon* vhu_vring_daemon(vhu_vring* v) { return v ? v->daemon().handle() : nullptr; }

int vhu_vring_pop(vhu_vring* v, vhu_chain** out) {
  if (!v || !out) return -EINVAL;
  return guarded(nullptr, [&] { return v->pop(out); });
}

int vhu_vring_push(vhu_vring* v, vhu_chain* c, uint32_t written) {
  if (!v || !c) return -EINVAL;
  return v->push(c, written);
}

int vhu_vring_push_many(vhu_vring* v, vhu_chain* const* chains, const uint32_t* written,
                        unsigned n) {
  if (!v) return -EINVAL;
  return v->push_many(chains, written, n);
}

int vhu_vring_unpop(vhu_vring* v, vhu_chain* c) {
  if (!v || !c) return -EINVAL;
  return v->unpop(c);
}

int vhu_vring_notify(vhu_vring* v) {
  if (!v) return -EINVAL;
  return v->notify();
}

int vhu_vring_set_kicks(vhu_vring* v, int enable) {
  if (!v) return -EINVAL;
  return v->set_kicks(enable != 0);
}

int vhu_vring_pending(vhu_vring* v) { return v && v->pending(); }

int vhu_vring_read_guest(vhu_vring* v, uint64_t gpa, void* buf, size_t len) {
  if (!v || (!buf && len)) return -EINVAL;
  const vhu::MemoryTable* m = v->memory();
  if (!m) return -ENOTCONN;
  return m->read(gpa, buf, len) ? 0 : -EFAULT;
}

int vhu_vring_write_guest(vhu_vring* v, uint64_t gpa, const void* buf, size_t len) {
  if (!v || (!buf && len)) return -EINVAL;
  const vhu::MemoryTable* m = v->memory();
  if (!m) return -ENOTCONN;
  return m->write(gpa, buf, len) ? 0 : -EFAULT;
}

int vhu_vring_get_stats(const vhu_vring* v, vhu_vring_stats* s) {
  if (!v || !s || s->struct_size < sizeof(size_t)) return -EINVAL;
  vhu_vring_stats full{};
  full.struct_size = s->struct_size;
  const auto& st = v->stats();
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  full.chains = ld(st.chains);
  full.bytes_read = ld(st.bytes_read);
  full.bytes_written = ld(st.bytes_written);
  full.notifications = ld(st.notifications);
  full.suppressed = ld(st.suppressed);
  full.kicks = ld(st.kicks);
  full.errors = ld(st.errors);
  size_t n = s->struct_size < sizeof full ? s->struct_size : sizeof full;
  std::memcpy(s, &full, n);
  return 0;
}

uint16_t vhu_chain_head(const vhu_chain* c) { return c ? c->head : 0; }

const struct iovec* vhu_chain_readable(const vhu_chain* c, unsigned* count) {
  if (!c) {
    if (count) *count = 0;
    return nullptr;
  }
  if (count) *count = c->nreadable;
  return c->iov.data();
}

const struct iovec* vhu_chain_writable(const vhu_chain* c, unsigned* count) {
  if (!c) {
    if (count) *count = 0;
    return nullptr;
  }
  if (count) *count = static_cast<unsigned>(c->iov.size() - c->nreadable);
  return c->iov.data() + c->nreadable;
}

size_t vhu_chain_readable_len(const vhu_chain* c) { return c ? c->readable_len : 0; }
size_t vhu_chain_writable_len(const vhu_chain* c) { return c ? c->writable_len : 0; }

size_t vhu_chain_read(const vhu_chain* c, size_t offset, void* buf, size_t len) {
  if (!c || !buf) return 0;
  size_t done = 0;
  for (unsigned i = 0; i < c->nreadable && done < len; i++) {
    const iovec& v = c->iov[i];
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    size_t n = std::min(v.iov_len - offset, len - done);
    std::memcpy(static_cast<uint8_t*>(buf) + done, static_cast<uint8_t*>(v.iov_base) + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

size_t vhu_chain_write(vhu_chain* c, size_t offset, const void* buf, size_t len) {
  if (!c || !buf) return 0;
  size_t done = 0;
  for (size_t i = c->nreadable; i < c->iov.size() && done < len; i++) {
    const iovec& v = c->iov[i];
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    size_t n = std::min(v.iov_len - offset, len - done);
    std::memcpy(static_cast<uint8_t*>(v.iov_base) + offset, static_cast<const uint8_t*>(buf) + done,
                n);
    done += n;
    offset = 0;
  }
  return done;
}

}  // extern "C"
