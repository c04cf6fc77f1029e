// SPDX-License-Identifier: Apache-2.0
#include "daemon/daemon.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "session/session.h"

namespace vhu {
namespace {

constexpr uint16_t kDefaultMaxQueueSize = 1024;
constexpr unsigned kMaxWorkers = 64;
constexpr int kConfigChangeTimeoutMs = 5000;

sockaddr_un make_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    throw Error(-EINVAL, strfmt("socket path '%s' is empty or too long", path.c_str()));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

bool is_stream_socket(int fd, bool* listening) {
  int type = 0, acc = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof acc;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0) return false;
  *listening = acc != 0;
  return true;
}

}  // namespace

Daemon::Daemon(const vhu_backend_ops& ops, void* user_data, void (*user_data_free)(void*))
    : user_data_(user_data), user_data_free_(user_data_free) {
  // The caller's table may be older (smaller) than ours: copy what it has.
  size_t n = ops.struct_size < sizeof ops_ ? ops.struct_size : sizeof ops_;
  std::memcpy(&ops_, &ops, n);
  ops_.struct_size = sizeof ops_;
  if (n < offsetof(vhu_backend_ops, handle_queue) + sizeof ops_.handle_queue || !ops_.handle_queue)
    throw Error(-EINVAL, "the callback table has no handle_queue");
  if (ops_.num_queues == 0 || ops_.num_queues > 256)
    throw Error(-EINVAL, strfmt("num_queues %u is not in 1..256", ops_.num_queues));
  if (ops_.queue_num > ops_.num_queues)
    throw Error(-EINVAL,
                strfmt("queue_num %u exceeds num_queues %u", ops_.queue_num, ops_.num_queues));
  if (ops_.max_queue_size == 0) ops_.max_queue_size = kDefaultMaxQueueSize;
  if (ops_.max_queue_size > wire::kMaxQueueSize ||
      (ops_.max_queue_size & (ops_.max_queue_size - 1)))
    throw Error(-EINVAL, strfmt("max_queue_size %u is not a power of two up to %u",
                                ops_.max_queue_size, wire::kMaxQueueSize));
  queue_worker_.assign(ops_.num_queues, 0);
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw_errno("eventfd");
  stop_fd_.reset(fd);
}

Daemon::~Daemon() {
  stop();
  if (bg_thread_.joinable()) bg_thread_.join();
  // Queues first (they own watches on the loops), then the loops.
  stop_watch_.reset();
  listen_watch_.reset();
  end_watch_.reset();
  queues_.clear();
  workers_.clear();
  control_.reset();
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  if (user_data_free_) user_data_free_(user_data_);
}

void Daemon::set_workers(unsigned n) {
  if (loops_built_) throw Error(-EBUSY, "workers are fixed once the daemon has run");
  if (n > kMaxWorkers) throw Error(-EINVAL, strfmt("at most %u workers", kMaxWorkers));
  n_workers_ = n;
  for (auto& w : queue_worker_)
    if (w >= n) w = 0;
}

void Daemon::set_poll(bool on) {
  if (loops_built_) throw Error(-EBUSY, "the polling mode is fixed once the daemon has run");
  poll_ = on;
}

void Daemon::assign_queue(uint16_t queue, unsigned worker) {
  if (loops_built_) throw Error(-EBUSY, "queues are fixed once the daemon has run");
  if (queue >= ops_.num_queues) throw Error(-EINVAL, strfmt("queue %u out of range", queue));
  if (worker >= (n_workers_ ? n_workers_ : 1))
    throw Error(-EINVAL, strfmt("worker %u out of range", worker));
  queue_worker_[queue] = worker;
}

void Daemon::build_loops() {
  if (loops_built_) return;
  control_ = std::make_unique<EventLoop>();
  for (unsigned i = 0; i < n_workers_; i++) workers_.push_back(std::make_unique<EventLoop>());
  loops_built_ = true;
  for (uint16_t q = 0; q < ops_.num_queues; q++)
    queues_.push_back(std::make_unique<vhu_vring>(*this, q, worker_loop(queue_worker_[q])));
  if (!poll_) return;
  // Each loop that serves queues spins over them; a loop with none of its
  // queues started blocks on its events as usual.
  for (unsigned w = 0; w < (workers_.empty() ? 1u : n_workers_); w++) {
    std::vector<vhu_vring*> mine;
    for (auto& q : queues_)
      if (&q->loop() == &worker_loop(w)) mine.push_back(q.get());
    if (mine.empty()) continue;
    worker_loop(w).set_poll_hook([mine = std::move(mine)] {
      bool any = false;
      for (vhu_vring* q : mine) any |= q->poll();
      return any;
    });
  }
}

EventLoop& Daemon::worker_loop(unsigned w) {
  build_loops();
  if (workers_.empty()) return *control_;
  if (w >= workers_.size()) throw Error(-EINVAL, strfmt("worker %u out of range", w));
  return *workers_[w];
}

vhu_vring* Daemon::vring(uint16_t index) {
  build_loops();
  return index < queues_.size() ? queues_[index].get() : nullptr;
}

void Daemon::listen(const std::string& path) {
  if (listen_fd_ || conn_fd_) throw Error(-EBUSY, "the daemon already has an endpoint");
  sockaddr_un a = make_addr(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw Error(-EEXIST, strfmt("'%s' exists and is not a socket", path.c_str()));
    ::unlink(path.c_str());  // a stale socket from an earlier run
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("bind " + path);
  if (::listen(fd.get(), 16) != 0) {
    int e = errno;
    ::unlink(path.c_str());
    throw_errno("listen " + path, e);
  }
  listen_fd_ = std::move(fd);
  unlink_path_ = path;
  one_session_ = false;
  log_.log(VHU_LOG_INFO, "listening on %s", path.c_str());
}

void Daemon::connect(const std::string& path) {
  if (listen_fd_ || conn_fd_) throw Error(-EBUSY, "the daemon already has an endpoint");
  sockaddr_un a = make_addr(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw_errno("connect " + path);
  conn_fd_ = std::move(fd);
  one_session_ = true;
  log_.log(VHU_LOG_INFO, "connected to %s", path.c_str());
}

void Daemon::adopt(UniqueFd fd, int kind) {
  if (listen_fd_ || conn_fd_) throw Error(-EBUSY, "the daemon already has an endpoint");
  bool listening;
  if (!fd || !is_stream_socket(fd.get(), &listening))
    throw Error(-EINVAL, "the fd is not a stream socket");
  if (kind == VHU_FD_LISTENING) {
    if (!listening) throw Error(-EINVAL, "the fd is not a listening socket");
    listen_fd_ = std::move(fd);
    one_session_ = false;
  } else if (kind == VHU_FD_CONNECTED) {
    if (listening) throw Error(-EINVAL, "the fd is a listening socket");
    conn_fd_ = std::move(fd);
    one_session_ = true;
  } else {
    throw Error(-EINVAL, strfmt("unknown fd kind %d", kind));
  }
}

void Daemon::begin_session(UniqueFd conn) {
  session_ = std::make_unique<Session>(*this, std::move(conn));
  connected_ = true;
  listen_watch_.reset();  // further front-ends wait in the backlog
  session_watch_ = std::make_unique<Watch>(*control_, session_->fd(), EV_READ, [this](short) {
    // Ending the session is deferred: this watch is destroyed with it.
    if (session_ && !session_->on_readable()) end_watch_->trigger();
  });
}

void Daemon::end_session() {
  session_watch_.reset();
  session_.reset();
  connected_ = false;
  log_.log(VHU_LOG_INFO, "session ended");
  if (one_session_) {
    control_->quit();
    return;
  }
  listen_watch_ =
      std::make_unique<Watch>(*control_, listen_fd_.get(), EV_READ, [this](short) { on_accept(); });
}

void Daemon::on_accept() {
  int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
      log_.log(VHU_LOG_WARNING, "accept: %s", std::strerror(errno));
    return;
  }
  try {
    begin_session(UniqueFd(fd));
  } catch (const std::exception& e) {
    log_.log(VHU_LOG_ERROR, "cannot start a session: %s", e.what());
    session_.reset();
    connected_ = false;
  }
}

int Daemon::run(std::string& err) {
  bool expected = false;
  if (!running_.compare_exchange_strong(expected, true)) {
    err = "the daemon is already running";
    return -EBUSY;
  }
  return run_claimed(err);
}

int Daemon::run_claimed(std::string& err) {
  int status = 0;
  try {
    if (!listen_fd_ && !conn_fd_)
      throw Error(-ENOTCONN, "the daemon has no endpoint (listen, connect or adopt first)");
    build_loops();
    for (auto& w : workers_) w->start_thread();
    stop_watch_ = std::make_unique<Watch>(*control_, stop_fd_.get(), EV_READ,
                                          [this](short) { control_->quit(); });
    end_watch_ = std::make_unique<Watch>(*control_, -1, 0, [this](short) { end_session(); });
    if (conn_fd_) {
      begin_session(std::move(conn_fd_));
    } else {
      listen_watch_ = std::make_unique<Watch>(*control_, listen_fd_.get(), EV_READ,
                                              [this](short) { on_accept(); });
    }
    control_->run();
  } catch (const Error& e) {
    err = e.what();
    status = e.code();
  } catch (const std::exception& e) {
    err = e.what();
    status = -EIO;
  }
  // Tear down: the session (stopping every queue on its worker), then the
  // workers.
  try {
    session_watch_.reset();
    session_.reset();
  } catch (...) {
  }
  connected_ = false;
  listen_watch_.reset();
  for (auto& w : workers_) w->stop_thread();
  stop_watch_.reset();
  end_watch_.reset();
  uint64_t v;
  while (::read(stop_fd_.get(), &v, sizeof v) > 0) {
  }
  running_ = false;
  if (status == 0) log_.log(VHU_LOG_INFO, "daemon stopped");
  return status;
}

void Daemon::start() {
  if (bg_thread_.joinable()) throw Error(-EBUSY, "the daemon was started already; wait first");
  if (!listen_fd_ && !conn_fd_)
    throw Error(-ENOTCONN, "the daemon has no endpoint (listen, connect or adopt first)");
  build_loops();
  // Claimed before the thread exists, so that an immediate stop() is not
  // lost.
  bool expected = false;
  if (!running_.compare_exchange_strong(expected, true))
    throw Error(-EBUSY, "the daemon is already running");
  bg_thread_ = std::thread([this] { bg_status_ = run_claimed(bg_error_); });
}

int Daemon::wait(std::string& err) {
  if (!bg_thread_.joinable()) {
    err = "the daemon was not started";
    return -EINVAL;
  }
  bg_thread_.join();
  err = bg_error_;
  return bg_status_;
}

void Daemon::stop() noexcept {
  if (!running_.load()) return;
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
}

void Daemon::publish_memory(MemoryTablePtr mem) {
  std::lock_guard lk(shared_mu_);
  mem_snapshot_ = std::move(mem);
}

void Daemon::publish_backend_channel(std::shared_ptr<BackendChannel> ch) {
  std::lock_guard lk(shared_mu_);
  backend_ = std::move(ch);
}

int Daemon::config_changed() {
  std::shared_ptr<BackendChannel> ch;
  {
    std::lock_guard lk(shared_mu_);
    ch = backend_;
  }
  if (!ch) return -ENOTCONN;
  if (!(protocol_features_.load() & wire::bit(wire::PF_CONFIG))) return -ENOTSUP;
  return ch->request(wire::BACKEND_CONFIG_CHANGE_MSG, nullptr, 0, kConfigChangeTimeoutMs);
}

int Daemon::read_guest(uint64_t gpa, void* buf, size_t len) {
  MemoryTablePtr m;
  {
    std::lock_guard lk(shared_mu_);
    m = mem_snapshot_;
  }
  if (!m) return -ENOTCONN;
  return m->read(gpa, buf, len) ? 0 : -EFAULT;
}

int Daemon::write_guest(uint64_t gpa, const void* buf, size_t len) {
  MemoryTablePtr m;
  {
    std::lock_guard lk(shared_mu_);
    m = mem_snapshot_;
  }
  if (!m) return -ENOTCONN;
  return m->write(gpa, buf, len) ? 0 : -EFAULT;
}

}  // namespace vhu
