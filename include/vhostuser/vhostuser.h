/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libvhostuser-cxx: a framework for vhost-user back-end daemons.
 *
 * Conventions
 *  1. Every handle is opaque (vhu_daemon, vhu_vring, vhu_chain, vhu_watch,
 *     vhu_error). Objects returned through a pointer-to-pointer out-parameter
 *     are owned by the caller and released with the matching *_free();
 *     pointers returned as values are borrowed from their parent and live as
 *     long as it does (documented per function).
 *  2. Functions that can fail return int: 0 on success or a negative errno
 *     value. vhu_strerror() turns it into a static string. Functions that
 *     take a `vhu_error **err` also hand back a detailed message there when
 *     err is not NULL; the caller frees it with vhu_error_free(). No error
 *     state is kept per thread.
 *  3. If a call that takes a callback fails, that callback is never called.
 *  4. Callback tables and option structs begin with `struct_size`; the
 *     library reads only the members that lie inside it, so tables compiled
 *     against an older header keep working. Every callback receives the
 *     user data pointer as its last argument.
 *  5. Threads: a daemon has one control thread (the one in vhu_daemon_run(),
 *     or the one vhu_daemon_start() creates) that speaks the protocol, and
 *     worker threads that run the queue handlers. Each queue belongs to
 *     exactly one worker. vring and chain functions must be called from the
 *     thread that owns the queue (inside its callbacks, or in a watch/timer
 *     on that worker). Functions documented as thread-safe may be called
 *     from anywhere.
 *  6. Nothing is printed by the library; install a log callback to see its
 *     messages.
 *  7. C++ exceptions never cross this interface.
 */
#ifndef VHOSTUSER_VHOSTUSER_H
#define VHOSTUSER_VHOSTUSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhostuser/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ---------------------------------------------------------- */

#define VHU_VERSION_MAJOR 0
#define VHU_VERSION_MINOR 1
#define VHU_VERSION_PATCH 0
#define VHU_MAKE_VERSION(major, minor, patch) (((major)*10000) + ((minor)*100) + (patch))
#define VHU_VERSION VHU_MAKE_VERSION(VHU_VERSION_MAJOR, VHU_VERSION_MINOR, VHU_VERSION_PATCH)

/* Run-time version of the loaded library. Any pointer may be NULL. */
VHU_EXPORT void vhu_version(int* major, int* minor, int* patch);

/* ---- Errors ----------------------------------------------------------- */

/* Static description of a status code (0 or a negative errno). Never NULL. */
VHU_EXPORT const char* vhu_strerror(int status);

typedef struct vhu_error vhu_error;

/* The status code (negative errno) carried by an error. */
VHU_EXPORT int vhu_error_code(const vhu_error* err);
/* Human-readable detail; borrowed, valid until vhu_error_free(err). */
VHU_EXPORT const char* vhu_error_message(const vhu_error* err);
/* Frees an error; NULL is accepted. */
VHU_EXPORT void vhu_error_free(vhu_error* err);

/* ---- Logging ---------------------------------------------------------- */

typedef enum vhu_log_level {
  VHU_LOG_ERROR = 0,
  VHU_LOG_WARNING = 1,
  VHU_LOG_INFO = 2,
  VHU_LOG_DEBUG = 3
} vhu_log_level;

/* Called from any of the daemon's threads; `message` is borrowed for the
 * duration of the call and has no trailing newline. */
typedef void (*vhu_log_fn)(vhu_log_level level, const char* message, void* user_data);

/* ---- Handles ---------------------------------------------------------- */

typedef struct vhu_daemon vhu_daemon;
typedef struct vhu_vring vhu_vring;
typedef struct vhu_chain vhu_chain;
typedef struct vhu_watch vhu_watch;

/* ---- Virtio constants used by the API --------------------------------- */

#define VHU_F_RING_INDIRECT_DESC (1ULL << 28)
#define VHU_F_RING_EVENT_IDX (1ULL << 29)
#define VHU_F_PROTOCOL_FEATURES (1ULL << 30)
#define VHU_F_VERSION_1 (1ULL << 32)

/* vhost-user protocol feature bits (bit numbers as in the specification). */
#define VHU_PROTOCOL_F_MQ (1ULL << 0)
#define VHU_PROTOCOL_F_REPLY_ACK (1ULL << 3)
#define VHU_PROTOCOL_F_BACKEND_REQ (1ULL << 5)
#define VHU_PROTOCOL_F_CONFIG (1ULL << 9)
#define VHU_PROTOCOL_F_RESET_DEVICE (1ULL << 13)
#define VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS (1ULL << 15)
#define VHU_PROTOCOL_F_STATUS (1ULL << 16)

/* ---- The back-end callback table -------------------------------------- */

typedef struct vhu_backend_ops {
  /* sizeof(vhu_backend_ops) as the caller compiled it. Required. */
  size_t struct_size;

  /* Number of virtqueues the device has (1..256). Required. */
  uint16_t num_queues;
  /* Largest queue size the front-end may set (power of two, <= 32768).
   * 0 means 1024. */
  uint16_t max_queue_size;

  /* Device feature bits offered to the front-end. Default:
   * VERSION_1 | RING_INDIRECT_DESC | RING_EVENT_IDX. The library always
   * adds VHU_F_PROTOCOL_FEATURES and removes ring layouts it cannot serve
   * (packed rings, IOMMU platform, dirty logging). Control thread. */
  uint64_t (*get_features)(void* user_data);

  /* Protocol features the device wants. The library offers the
   * intersection with what it implements (MQ, REPLY_ACK, BACKEND_REQ,
   * CONFIG, RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS). Default: all of
   * them, with CONFIG only when get_config is set. Control thread. */
  uint64_t (*get_protocol_features)(void* user_data);

  /* The front-end acknowledged `features` (SET_FEATURES). Return 0 to
   * accept or a negative errno to fail the request. Default: accept.
   * Control thread; queues are not being processed with new features yet. */
  int (*features_acked)(uint64_t features, void* user_data);

  /* GET_CONFIG: fill `buf` with `size` bytes of device configuration space
   * starting at `offset`. Return 0 or a negative errno. Offset + size never
   * exceeds 256. Default: not set (CONFIG is then not offered). */
  int (*get_config)(uint32_t offset, void* buf, uint32_t size, void* user_data);

  /* SET_CONFIG: the front-end wrote `size` bytes at `offset`. `flags` is 0
   * for a driver write, 1 for live migration. Default: -ENOTSUP. */
  int (*set_config)(uint32_t offset, const void* buf, uint32_t size, uint32_t flags,
                    void* user_data);

  /* The data-path handler: queue `vring` has work (it was kicked, or it was
   * just started/enabled). Pop chains with vhu_vring_pop(), complete them
   * with vhu_vring_push() and call vhu_vring_notify(). Called only while the
   * queue is started, enabled and not broken, on the queue's worker thread.
   * Required. */
  void (*handle_queue)(vhu_vring* vring, void* user_data);

  /* The queue was started (kick fd received, rings mapped). Worker thread.
   * Default: nothing. */
  void (*queue_started)(vhu_vring* vring, void* user_data);

  /* The queue is being stopped (GET_VRING_BASE, reset or disconnect).
   * Finish or cancel in-flight requests before returning: the ring is not
   * touched after this returns. Worker thread. Default: nothing. */
  void (*queue_stopped)(vhu_vring* vring, void* user_data);

  /* Guest memory was replaced (SET_MEM_TABLE, ADD/REM_MEM_REG). Control
   * thread, after every worker sees the new table. Default: nothing. */
  void (*memory_changed)(void* user_data);

  /* The device was reset (RESET_DEVICE, RESET_OWNER) or the front-end went
   * away: forget per-session device state. Control thread, after every
   * queue stopped. SET_STATUS 0 is not a reset here: QEMU sends it before
   * GET_VRING_BASE when it merely stops the device. Default: nothing. */
  void (*device_reset)(void* user_data);

  /* The answer to GET_QUEUE_NUM: how many queues the front-end may use, in
   * the unit its device type counts them in. virtio-net front-ends (QEMU,
   * DPDK) read it as queue pairs, so a net device with N pairs sets N here.
   * 0 means num_queues. */
  uint16_t queue_num;
} vhu_backend_ops;

/* ---- Daemon ----------------------------------------------------------- */

/* Creates a daemon. `ops` is copied (up to ops->struct_size). `user_data`
 * is passed to every callback; `user_data_free`, when not NULL, is called
 * with it exactly once from vhu_daemon_free() (also when this function
 * fails). Errors: -EINVAL (bad table), -ENOMEM. */
VHU_EXPORT int vhu_daemon_new(const vhu_backend_ops* ops, void* user_data,
                              void (*user_data_free)(void* user_data), vhu_daemon** out,
                              vhu_error** err);

/* Stops the daemon if it runs, waits for it, closes every fd and socket it
 * owns (unlinking a socket path it created), then calls user_data_free.
 * Must not be called from one of the daemon's own threads. NULL is a
 * no-op. */
VHU_EXPORT void vhu_daemon_free(vhu_daemon* daemon);

/* Installs a log callback; messages above `max_level` are not formatted.
 * Call before run/start. */
VHU_EXPORT int vhu_daemon_set_log(vhu_daemon* daemon, vhu_log_fn fn, vhu_log_level max_level,
                                  void* user_data);

/* Number of worker threads (0..64, default 1). With 0 the queues are served
 * on the control thread (a single-threaded daemon). Call before run/start.
 * Errors: -EINVAL, -EBUSY (already running). */
VHU_EXPORT int vhu_daemon_set_workers(vhu_daemon* daemon, unsigned workers);

/* Assigns queue `queue` to worker `worker` (default: every queue to worker
 * 0). Call before run/start. Errors: -EINVAL, -EBUSY. */
VHU_EXPORT int vhu_daemon_assign_queue(vhu_daemon* daemon, uint16_t queue, unsigned worker);

/* Busy-poll mode (default off). Each worker thread (the control thread
 * with 0 workers) spins over its started queues and calls handle_queue as
 * soon as the driver makes chains available, instead of sleeping until a
 * kick; the driver is asked not to kick (set_kicks(0) at every start). It
 * trades one busy CPU per worker, while any of its queues runs, for the
 * lowest latency and the highest packet rate; a worker whose queues are all
 * stopped sleeps as usual. A chain left available (not popped) by the
 * handler makes it run again on the next pass. Call before run/start.
 * Errors: -EINVAL, -EBUSY (the daemon has run). */
#define VHU_HAVE_SET_POLL 1
VHU_EXPORT int vhu_daemon_set_poll(vhu_daemon* daemon, int enable);

/* Listens on a unix socket at `path` (a stale socket file there is
 * replaced). Errors: -EINVAL, -EBUSY (already has an endpoint), -errno. */
VHU_EXPORT int vhu_daemon_listen(vhu_daemon* daemon, const char* path, vhu_error** err);

/* Client mode: connects to a front-end listening at `path`. */
VHU_EXPORT int vhu_daemon_connect(vhu_daemon* daemon, const char* path, vhu_error** err);

/* Takes ownership of an open unix stream socket: a listening one
 * (VHU_FD_LISTENING) or one already connected to a front-end
 * (VHU_FD_CONNECTED). The fd is closed by the daemon, also on failure. */
#define VHU_FD_LISTENING 0
#define VHU_FD_CONNECTED 1
VHU_EXPORT int vhu_daemon_adopt_fd(vhu_daemon* daemon, int fd, int kind, vhu_error** err);

/* Runs the control loop in the calling thread. With a listening endpoint it
 * serves front-ends one after another until vhu_daemon_stop(); with a
 * connected endpoint (connect/adopt) it returns when that front-end hangs up
 * or on stop. Returns 0 for a normal end, negative errno on failure.
 * Errors: -ENOTCONN (no endpoint), -EBUSY (already running). */
VHU_EXPORT int vhu_daemon_run(vhu_daemon* daemon, vhu_error** err);

/* Like vhu_daemon_run() in a new background thread; collect the result
 * with vhu_daemon_wait(). */
VHU_EXPORT int vhu_daemon_start(vhu_daemon* daemon, vhu_error** err);

/* Waits for a daemon started with vhu_daemon_start() and returns what its
 * run returned. Errors: -EINVAL (not started). */
VHU_EXPORT int vhu_daemon_wait(vhu_daemon* daemon, vhu_error** err);

/* Asks a running daemon to stop; run/wait return within 100 ms.
 * Thread-safe and async-signal-safe. Stopping a daemon that does not run
 * is a no-op (the next run starts normally). */
VHU_EXPORT void vhu_daemon_stop(vhu_daemon* daemon);

/* Whether a front-end is connected now. Thread-safe. */
VHU_EXPORT int vhu_daemon_is_connected(const vhu_daemon* daemon);

/* Virtio features the front-end acknowledged in the current session
 * (0 when none). Thread-safe. */
VHU_EXPORT uint64_t vhu_daemon_acked_features(const vhu_daemon* daemon);

/* Protocol features negotiated in the current session. Thread-safe. */
VHU_EXPORT uint64_t vhu_daemon_protocol_features(const vhu_daemon* daemon);

/* The daemon's queue `index`; borrowed, valid until vhu_daemon_free().
 * NULL when out of range. */
VHU_EXPORT vhu_vring* vhu_daemon_get_vring(vhu_daemon* daemon, uint16_t index);

/* Sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the back-end channel and,
 * when REPLY_ACK was negotiated, waits up to 5 s for the front-end's ack.
 * Thread-safe; best called from a thread of the host's own (a signal
 * handler thread, say) rather than from a queue handler, since the
 * front-end may be waiting on the daemon while it answers. Errors: -ENOTCONN (no channel), -ENOTSUP
 * (CONFIG not negotiated), -EIO (front-end replied failure), -ETIMEDOUT, -errno. */
VHU_EXPORT int vhu_daemon_config_changed(vhu_daemon* daemon);

/* Copies guest memory by guest-physical address (any thread; uses the
 * current memory table). Errors: -EFAULT (not entirely mapped), -ENOTCONN
 * (no memory table). */
VHU_EXPORT int vhu_daemon_read_guest(vhu_daemon* daemon, uint64_t gpa, void* buf, size_t len);
VHU_EXPORT int vhu_daemon_write_guest(vhu_daemon* daemon, uint64_t gpa, const void* buf,
                                      size_t len);

/* ---- Host event sources on worker loops -------------------------------- */

#define VHU_WATCH_READ 0x1u
#define VHU_WATCH_WRITE 0x2u

/* Called on the worker's thread. `events` tells which of the requested
 * events fired (0 for a timer). */
typedef void (*vhu_watch_fn)(int fd, uint32_t events, void* user_data);

/* Watches `fd` (not owned) for VHU_WATCH_READ/WRITE on worker `worker`'s
 * loop (or the control loop when the daemon has 0 workers). The watch is
 * active while the daemon runs. Thread-safe. Free with vhu_watch_free(). */
VHU_EXPORT int vhu_daemon_add_watch(vhu_daemon* daemon, unsigned worker, int fd, uint32_t events,
                                    vhu_watch_fn fn, void* user_data, vhu_watch** out);

/* A periodic timer on worker `worker`, every `period_us` microseconds. */
VHU_EXPORT int vhu_daemon_add_timer(vhu_daemon* daemon, unsigned worker, uint64_t period_us,
                                    vhu_watch_fn fn, void* user_data, vhu_watch** out);

/* Removes a watch or timer; after it returns the callback is not running
 * and will not run again (unless called from that very callback). Must be
 * called before vhu_daemon_free(). NULL is a no-op. Thread-safe. */
VHU_EXPORT void vhu_watch_free(vhu_watch* watch);

/* ---- Vrings ----------------------------------------------------------- */

VHU_EXPORT uint16_t vhu_vring_index(const vhu_vring* vring);
/* Queue size set by the front-end (0 before SET_VRING_NUM). */
VHU_EXPORT uint16_t vhu_vring_size(const vhu_vring* vring);
VHU_EXPORT int vhu_vring_is_started(const vhu_vring* vring);
VHU_EXPORT int vhu_vring_is_enabled(const vhu_vring* vring);
/* Broken: a hostile or corrupt ring was seen; the queue is not touched
 * again until the front-end sets it up anew. */
VHU_EXPORT int vhu_vring_is_broken(const vhu_vring* vring);
VHU_EXPORT vhu_daemon* vhu_vring_daemon(vhu_vring* vring);

/* Takes the next available descriptor chain. On 0, *out is a chain owned by
 * the vring until it is pushed; several chains may be outstanding.
 * Errors: -EAGAIN (nothing available), -EIO (the ring is broken: it was
 * marked broken now or earlier; the front-end is told through the error
 * fd and, with STATUS, DEVICE_NEEDS_RESET), -ENOTCONN (not started). */
VHU_EXPORT int vhu_vring_pop(vhu_vring* vring, vhu_chain** out);

/* Returns `chain` to the driver through the used ring with `written` bytes
 * written into its device-writable buffers. The chain is invalid after this
 * call, also on error. Errors: -EINVAL (written exceeds the writable
 * length: the chain is returned with the writable length clamped; or the
 * chain was not popped from this vring, or was pushed already: nothing
 * happens), -ENOTCONN (the queue was stopped since the pop: the chain was
 * reclaimed), -EIO (the queue is broken).
 * The used index the driver reads moves in batches: pushed chains become
 * visible at the latest when vhu_vring_notify() or vhu_vring_push_many() is
 * called, when the handler returns, or every 32 pushes. */
VHU_EXPORT int vhu_vring_push(vhu_vring* vring, vhu_chain* chain, uint32_t written);

/* Pushes `n` chains (chains[i] with written[i] bytes) and then publishes
 * them (and any earlier pushes) with one used-index update, so the driver
 * sees all of them or none:
 * needed when several chains carry one message (virtio-net mergeable
 * receive buffers), and cheaper than n single pushes. All or nothing on
 * -EINVAL for a chain that is not outstanding on this vring or appears
 * twice (nothing is pushed); a `written` larger than its chain's writable
 * length is clamped and reported as -EINVAL after everything was pushed.
 * Other errors as vhu_vring_push(). */
#define VHU_HAVE_PUSH_MANY 1
VHU_EXPORT int vhu_vring_push_many(vhu_vring* vring, vhu_chain* const* chains,
                                   const uint32_t* written, unsigned n);

/* Puts `chain` back so the next pop returns it again (nothing is written to
 * the used ring). Pops are undone newest first: a chain can be put back
 * once every chain popped after it has been put back (a device that took
 * several chains for one packet can return them all when the ring runs
 * dry). Errors: -EINVAL (any other chain, or one already pushed). */
VHU_EXPORT int vhu_vring_unpop(vhu_vring* vring, vhu_chain* chain);

/* Signals the front-end's call fd if the driver wants an interrupt for what
 * was pushed since the last signal (EVENT_IDX or NO_INTERRUPT honoured).
 * Returns 1 if it signalled, 0 if suppressed, negative errno on failure. */
VHU_EXPORT int vhu_vring_notify(vhu_vring* vring);

/* Enables (1) or disables (0) guest->device notifications (kicks) for a
 * polling loop. After enabling, check vhu_vring_pending() once more to
 * close the race with the driver. */
VHU_EXPORT int vhu_vring_set_kicks(vhu_vring* vring, int enable);

/* Whether the driver has made chains available that were not popped. */
VHU_EXPORT int vhu_vring_pending(vhu_vring* vring);

/* Guest memory access through the queue's view of the memory table (its
 * worker thread only). Errors: -EFAULT, -ENOTCONN. */
VHU_EXPORT int vhu_vring_read_guest(vhu_vring* vring, uint64_t gpa, void* buf, size_t len);
VHU_EXPORT int vhu_vring_write_guest(vhu_vring* vring, uint64_t gpa, const void* buf, size_t len);

typedef struct vhu_vring_stats {
  size_t struct_size;     /* set by the caller */
  uint64_t chains;        /* chains pushed to the used ring */
  uint64_t bytes_read;    /* device-readable bytes of pushed chains */
  uint64_t bytes_written; /* bytes reported written by push */
  uint64_t notifications; /* call fd signalled */
  uint64_t suppressed;    /* notify calls the driver did not want */
  uint64_t kicks;         /* kick events received */
  uint64_t errors;        /* chains rejected as malformed */
} vhu_vring_stats;

/* Copies the queue's counters. Thread-safe (values are read relaxed).
 * Counters restart at 0 for every session. */
VHU_EXPORT int vhu_vring_get_stats(const vhu_vring* vring, vhu_vring_stats* stats);

/* ---- Descriptor chains ------------------------------------------------ */

/* The head descriptor index of the chain. */
VHU_EXPORT uint16_t vhu_chain_head(const vhu_chain* chain);

/* The device-readable (driver->device) and device-writable buffers of the
 * chain as iovecs in this process's memory, in chain order. One descriptor
 * that crosses memory regions becomes several iovecs. Borrowed; valid until
 * the chain is pushed or unpopped. */
VHU_EXPORT const struct iovec* vhu_chain_readable(const vhu_chain* chain, unsigned* count);
VHU_EXPORT const struct iovec* vhu_chain_writable(const vhu_chain* chain, unsigned* count);
VHU_EXPORT size_t vhu_chain_readable_len(const vhu_chain* chain);
VHU_EXPORT size_t vhu_chain_writable_len(const vhu_chain* chain);

/* Copies up to `len` bytes out of the readable buffers starting at byte
 * `offset`; returns the number copied. */
VHU_EXPORT size_t vhu_chain_read(const vhu_chain* chain, size_t offset, void* buf, size_t len);
/* Copies up to `len` bytes into the writable buffers at byte `offset`;
 * returns the number copied. */
VHU_EXPORT size_t vhu_chain_write(vhu_chain* chain, size_t offset, const void* buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* VHOSTUSER_VHOSTUSER_H */
