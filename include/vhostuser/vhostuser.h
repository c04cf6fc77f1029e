/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file vhostuser.h
 * @brief libvhostuser-cxx: a framework for vhost-user back-end daemons.
 *
 * The whole public C API. Link with `pkg-config --libs vhostuser` or
 * CMake's `vhostuser::vhostuser`.
 *
 * @section conventions Conventions
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
 *
 * Every function below documents its errors as a list of return values.
 * A function that reports through `vhu_error **err` stores an error object
 * there (when err is not NULL) exactly when it returns a negative value;
 * vhu_error_code() of that object equals the returned value. -ENOMEM and
 * -EIO listed as "internal error" mean the call allocates or runs library
 * code that can fail in ways not tied to the arguments.
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

/**
 * @defgroup vhu_api_version Version and errors
 * @brief Library version and status codes.
 * @{
 */

/* ---- Version ---------------------------------------------------------- */

/** @brief Major version of the header. */
#define VHU_VERSION_MAJOR 0
/** @brief Minor version of the header. */
#define VHU_VERSION_MINOR 1
/** @brief Patch version of the header. */
#define VHU_VERSION_PATCH 0
/**
 * @brief Combines a version into one comparable integer.
 * @param major Major version (0..).
 * @param minor Minor version (0..99).
 * @param patch Patch version (0..99).
 * @return major * 10000 + minor * 100 + patch.
 */
#define VHU_MAKE_VERSION(major, minor, patch) (((major)*10000) + ((minor)*100) + (patch))
/** @brief The version of this header, as VHU_MAKE_VERSION() builds it. */
#define VHU_VERSION VHU_MAKE_VERSION(VHU_VERSION_MAJOR, VHU_VERSION_MINOR, VHU_VERSION_PATCH)

/**
 * @brief Run-time version of the loaded library.
 *
 * Compare with VHU_VERSION_MAJOR etc. to detect a header/library mismatch.
 *
 * @param[out] major Receives the major version; may be NULL.
 * @param[out] minor Receives the minor version; may be NULL.
 * @param[out] patch Receives the patch version; may be NULL.
 *
 * @par Ownership
 * The pointers are only written to during the call.
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT void vhu_version(int* major, int* minor, int* patch);

/* ---- Errors ----------------------------------------------------------- */

/**
 * @brief Static description of a status code.
 *
 * @param status 0 or a negative errno value, as returned by the library.
 * @return A description; never NULL. Positive values give
 *         "unknown status".
 *
 * @par Ownership
 * The string is static: do not free it; it stays valid for the life of
 * the process.
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT const char* vhu_strerror(int status);

/**
 * @brief A detailed error: a status code and a message.
 *
 * Handed back through the `vhu_error **err` parameter of functions that
 * take one; owned by the caller and released with vhu_error_free().
 */
typedef struct vhu_error vhu_error;

/**
 * @brief The status code carried by an error.
 *
 * @param err The error; may be NULL.
 * @return The negative errno value the failing call returned; 0 for NULL.
 *
 * @par Threading
 * Any thread; the error object is not shared by the library.
 */
VHU_EXPORT int vhu_error_code(const vhu_error* err);
/**
 * @brief Human-readable detail of an error.
 *
 * @param err The error; may be NULL.
 * @return The message, without trailing newline; "" for NULL.
 *
 * @par Ownership
 * Borrowed from @p err; valid until vhu_error_free(err).
 * @par Threading
 * Any thread; the error object is not shared by the library.
 */
VHU_EXPORT const char* vhu_error_message(const vhu_error* err);
/**
 * @brief Frees an error.
 *
 * @param err The error to free; NULL is accepted (a no-op).
 *
 * @par Ownership
 * Takes back the caller's ownership of @p err; the strings it handed out
 * become invalid.
 * @par Threading
 * Any thread.
 */
VHU_EXPORT void vhu_error_free(vhu_error* err);

/** @} */

/**
 * @defgroup vhu_api_daemon Daemon
 * @brief The device description, the daemon's life cycle and its
 *        endpoint.
 * @{
 */

/* ---- Logging ---------------------------------------------------------- */

/** @brief Severity of a log message; higher values are more verbose. */
typedef enum vhu_log_level {
  VHU_LOG_ERROR = 0,   /**< A request or a session failed. */
  VHU_LOG_WARNING = 1, /**< Something unexpected that the daemon survived. */
  VHU_LOG_INFO = 2,    /**< Connections, sessions and queue life cycle. */
  VHU_LOG_DEBUG = 3    /**< Every protocol message. */
} vhu_log_level;

/**
 * @brief Receives the library's log messages.
 *
 * Installed with vhu_daemon_set_log().
 *
 * @param level Severity of the message.
 * @param message The text, with no trailing newline.
 * @param user_data The pointer given to vhu_daemon_set_log().
 *
 * @par Ownership
 * @p message is borrowed for the duration of the call.
 * @par Threading
 * Called from any of the daemon's threads, possibly concurrently.
 */
typedef void (*vhu_log_fn)(vhu_log_level level, const char* message, void* user_data);

/* ---- Handles ---------------------------------------------------------- */

/**
 * @brief A vhost-user back-end daemon: one device served on one endpoint.
 *
 * Created with vhu_daemon_new(), owned by the caller, released with
 * vhu_daemon_free().
 */
typedef struct vhu_daemon vhu_daemon;
/**
 * @ingroup vhu_api_vring
 * @brief One virtqueue of a daemon.
 *
 * Borrowed from the daemon (vhu_daemon_get_vring() or a callback argument);
 * valid until vhu_daemon_free().
 */
typedef struct vhu_vring vhu_vring;
/**
 * @ingroup vhu_api_chain
 * @brief A descriptor chain popped from a vring.
 *
 * Owned by the vring from vhu_vring_pop() until vhu_vring_push(),
 * vhu_vring_push_many() or vhu_vring_unpop() hands it back.
 */
typedef struct vhu_chain vhu_chain;
/**
 * @ingroup vhu_api_watch
 * @brief A file-descriptor watch or a timer on a daemon's loop.
 *
 * Created by vhu_daemon_add_watch() or vhu_daemon_add_timer(), owned by
 * the caller, released with vhu_watch_free().
 */
typedef struct vhu_watch vhu_watch;

/* ---- Virtio constants used by the API --------------------------------- */

/** @brief Virtio feature: indirect descriptors (bit 28). */
#define VHU_F_RING_INDIRECT_DESC (1ULL << 28)
/** @brief Virtio feature: used/available event index (bit 29). */
#define VHU_F_RING_EVENT_IDX (1ULL << 29)
/** @brief vhost-user feature: protocol features are negotiated (bit 30). */
#define VHU_F_PROTOCOL_FEATURES (1ULL << 30)
/** @brief Virtio feature: a virtio 1.0 (modern) device (bit 32). */
#define VHU_F_VERSION_1 (1ULL << 32)

/* vhost-user protocol feature bits (bit numbers as in the specification). */
/** @brief Protocol feature: GET_QUEUE_NUM, several queues (bit 0). */
#define VHU_PROTOCOL_F_MQ (1ULL << 0)
/** @brief Protocol feature: the front-end may ask for a reply to any request (bit 3). */
#define VHU_PROTOCOL_F_REPLY_ACK (1ULL << 3)
/** @brief Protocol feature: the back-end to front-end channel (bit 5). */
#define VHU_PROTOCOL_F_BACKEND_REQ (1ULL << 5)
/** @brief Protocol feature: device configuration space (bit 9). */
#define VHU_PROTOCOL_F_CONFIG (1ULL << 9)
/** @brief Protocol feature: RESET_DEVICE (bit 13). */
#define VHU_PROTOCOL_F_RESET_DEVICE (1ULL << 13)
/** @brief Protocol feature: ADD_MEM_REG / REM_MEM_REG (bit 15). */
#define VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS (1ULL << 15)
/** @brief Protocol feature: SET_STATUS / GET_STATUS (bit 16). */
#define VHU_PROTOCOL_F_STATUS (1ULL << 16)

/* ---- The back-end callback table -------------------------------------- */

/**
 * @brief The device: its shape and the callbacks that implement it.
 *
 * Fill it (zero the unused members), set struct_size to
 * sizeof(vhu_backend_ops) and pass it to vhu_daemon_new(), which copies it.
 * A NULL callback, or one that lies beyond struct_size, takes the default
 * documented with it. Every callback receives the user_data given to
 * vhu_daemon_new() as its last argument.
 */
typedef struct vhu_backend_ops {
  /** @brief sizeof(vhu_backend_ops) as the caller compiled it. Required. */
  size_t struct_size;

  /** @brief Number of virtqueues the device has (1..256). Required. */
  uint16_t num_queues;
  /**
   * @brief Largest queue size the front-end may set (power of two,
   *        <= 32768). 0 means 1024.
   */
  uint16_t max_queue_size;

  /**
   * @brief Device feature bits offered to the front-end.
   *
   * Default: VERSION_1 | RING_INDIRECT_DESC | RING_EVENT_IDX. The library
   * always adds VHU_F_PROTOCOL_FEATURES and removes ring layouts it cannot
   * serve (packed rings, IOMMU platform, dirty logging).
   * @par Threading
   * Control thread.
   */
  uint64_t (*get_features)(void* user_data);

  /**
   * @brief Protocol features the device wants.
   *
   * The library offers the intersection with what it implements (MQ,
   * REPLY_ACK, BACKEND_REQ, CONFIG, RESET_DEVICE, CONFIGURE_MEM_SLOTS,
   * STATUS). Default: all of them, with CONFIG only when get_config is set.
   * @par Threading
   * Control thread.
   */
  uint64_t (*get_protocol_features)(void* user_data);

  /**
   * @brief The front-end acknowledged `features` (SET_FEATURES).
   *
   * Return 0 to accept or a negative errno to fail the request. Default:
   * accept.
   * @par Threading
   * Control thread; queues are not being processed with the new features
   * yet.
   */
  int (*features_acked)(uint64_t features, void* user_data);

  /**
   * @brief GET_CONFIG: fill `buf` with `size` bytes of device configuration
   *        space starting at `offset`.
   *
   * Return 0 or a negative errno. Offset + size never exceeds 256; `buf`
   * is borrowed for the call. Default: not set (CONFIG is then not
   * offered).
   * @par Threading
   * Control thread.
   */
  int (*get_config)(uint32_t offset, void* buf, uint32_t size, void* user_data);

  /**
   * @brief SET_CONFIG: the front-end wrote `size` bytes at `offset`.
   *
   * `flags` is 0 for a driver write, 1 for live migration; `buf` is
   * borrowed for the call. Return 0 or a negative errno. Default: -ENOTSUP.
   * @par Threading
   * Control thread.
   */
  int (*set_config)(uint32_t offset, const void* buf, uint32_t size, uint32_t flags,
                    void* user_data);

  /**
   * @brief The data-path handler: queue `vring` has work. Required.
   *
   * Called when the queue was kicked, or was just started or enabled (and,
   * in busy-poll mode, whenever chains are available). Pop chains with
   * vhu_vring_pop(), complete them with vhu_vring_push() and call
   * vhu_vring_notify(). Called only while the queue is started, enabled and
   * not broken. Chains may stay outstanding after it returns.
   * @par Threading
   * The queue's worker thread.
   */
  void (*handle_queue)(vhu_vring* vring, void* user_data);

  /**
   * @brief The queue was started (kick fd received, rings mapped).
   *
   * Default: nothing.
   * @par Threading
   * The queue's worker thread.
   */
  void (*queue_started)(vhu_vring* vring, void* user_data);

  /**
   * @brief The queue is being stopped (GET_VRING_BASE, reset or
   *        disconnect).
   *
   * Finish or cancel in-flight requests before returning: the ring is not
   * touched after this returns, and chains still outstanding are reclaimed
   * (pushing them later fails with -ENOTCONN). Default: nothing.
   * @par Threading
   * The queue's worker thread.
   */
  void (*queue_stopped)(vhu_vring* vring, void* user_data);

  /**
   * @brief Guest memory was replaced (SET_MEM_TABLE, ADD/REM_MEM_REG).
   *
   * Default: nothing.
   * @par Threading
   * Control thread, after every worker sees the new table.
   */
  void (*memory_changed)(void* user_data);

  /**
   * @brief The device was reset (RESET_DEVICE, RESET_OWNER) or the
   *        front-end went away: forget per-session device state.
   *
   * SET_STATUS 0 is not a reset here: QEMU sends it before GET_VRING_BASE
   * when it merely stops the device. Default: nothing.
   * @par Threading
   * Control thread, after every queue stopped.
   */
  void (*device_reset)(void* user_data);

  /**
   * @brief The answer to GET_QUEUE_NUM: how many queues the front-end may
   *        use, in the unit its device type counts them in.
   *
   * virtio-net front-ends (QEMU, DPDK) read it as queue pairs, so a net
   * device with N pairs sets N here. 0 means num_queues; more than
   * num_queues is rejected by vhu_daemon_new().
   */
  uint16_t queue_num;
} vhu_backend_ops;

/* ---- Daemon ----------------------------------------------------------- */

/**
 * @brief Creates a daemon.
 *
 * @param ops The device description; copied (up to ops->struct_size).
 *        struct_size must cover at least num_queues, and the table needs
 *        handle_queue.
 * @param user_data Passed to every callback of @p ops.
 * @param user_data_free When not NULL, called with @p user_data exactly
 *        once: from vhu_daemon_free(), or before this function returns if
 *        it fails.
 * @param[out] out Receives the new daemon (NULL on failure).
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 on success or a negative errno value.
 * @retval 0 The daemon was created.
 * @retval -EINVAL @p ops or @p out is NULL, or the table is bad (struct_size
 *         too small, no handle_queue, num_queues not in 1..256, queue_num
 *         above num_queues, max_queue_size not a power of two up to 32768).
 * @retval -ENOMEM Out of memory.
 * @retval -EIO Internal error (creating the stop eventfd can also give its
 *         negative errno, such as -EMFILE).
 *
 * @par Ownership
 * The caller owns @p *out and releases it with vhu_daemon_free(). The
 * library owns @p user_data from this call on when @p user_data_free is
 * set; otherwise the caller keeps it alive until vhu_daemon_free().
 * @par Threading
 * Any thread.
 */
VHU_EXPORT int vhu_daemon_new(const vhu_backend_ops* ops, void* user_data,
                              void (*user_data_free)(void* user_data), vhu_daemon** out,
                              vhu_error** err);

/**
 * @brief Stops and destroys a daemon.
 *
 * Stops the daemon if it runs, waits for it, closes every fd and socket it
 * owns (unlinking a socket path it created), then calls user_data_free.
 *
 * @param daemon The daemon; NULL is a no-op.
 *
 * @par Ownership
 * Releases @p daemon and every vring and chain borrowed from it. Watches
 * and timers must have been freed with vhu_watch_free() before.
 * @par Threading
 * Must not be called from one of the daemon's own threads (a callback,
 * watch or timer).
 */
VHU_EXPORT void vhu_daemon_free(vhu_daemon* daemon);

/**
 * @brief Installs a log callback.
 *
 * Messages above @p max_level are not formatted. Call before run/start.
 *
 * @param daemon The daemon.
 * @param fn The callback; NULL removes it (nothing is logged).
 * @param max_level The most verbose level passed to @p fn.
 * @param user_data Passed to @p fn.
 * @return 0 on success or a negative errno value.
 * @retval 0 Installed.
 * @retval -EINVAL @p daemon is NULL.
 *
 * @par Ownership
 * @p user_data stays the caller's and must outlive the daemon (or the next
 * vhu_daemon_set_log()).
 * @par Threading
 * The thread that owns the daemon, before vhu_daemon_run() or
 * vhu_daemon_start().
 */
VHU_EXPORT int vhu_daemon_set_log(vhu_daemon* daemon, vhu_log_fn fn, vhu_log_level max_level,
                                  void* user_data);

/**
 * @brief Sets the number of worker threads.
 *
 * With 0 the queues are served on the control thread (a single-threaded
 * daemon). Queues assigned to a worker that no longer exists go back to
 * worker 0. Call before run/start.
 *
 * @param daemon The daemon.
 * @param workers 0..64; default 1.
 * @return 0 on success or a negative errno value.
 * @retval 0 Set.
 * @retval -EINVAL @p daemon is NULL or @p workers is above 64.
 * @retval -EBUSY The daemon has run, or its loops were built already (by
 *         vhu_daemon_get_vring(), vhu_daemon_add_watch() or
 *         vhu_daemon_add_timer()).
 *
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_set_workers(vhu_daemon* daemon, unsigned workers);

/**
 * @brief Assigns a queue to a worker.
 *
 * Default: every queue on worker 0. Call after vhu_daemon_set_workers()
 * and before run/start.
 *
 * @param daemon The daemon.
 * @param queue The queue index (below num_queues).
 * @param worker The worker (below the number of workers; 0 with 0
 *        workers).
 * @return 0 on success or a negative errno value.
 * @retval 0 Assigned.
 * @retval -EINVAL @p daemon is NULL, or @p queue or @p worker is out of
 *         range.
 * @retval -EBUSY The daemon has run or its loops were built already (see
 *         vhu_daemon_set_workers()).
 *
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_assign_queue(vhu_daemon* daemon, uint16_t queue, unsigned worker);

/**
 * @brief Defined when vhu_daemon_set_poll() is available.
 */
#define VHU_HAVE_SET_POLL 1
/**
 * @brief Busy-poll mode (default off).
 *
 * Each worker thread (the control thread with 0 workers) spins over its
 * started queues and calls handle_queue as soon as the driver makes chains
 * available, instead of sleeping until a kick; the driver is asked not to
 * kick (set_kicks(0) at every start). It trades one busy CPU per worker,
 * while any of its queues runs, for the lowest latency and the highest
 * packet rate; a worker whose queues are all stopped sleeps as usual. A
 * chain left available (not popped) by the handler makes it run again on
 * the next pass. Call before run/start.
 *
 * @param daemon The daemon.
 * @param enable Nonzero to busy-poll, 0 to sleep until kicked.
 * @return 0 on success or a negative errno value.
 * @retval 0 Set.
 * @retval -EINVAL @p daemon is NULL.
 * @retval -EBUSY The daemon has run or its loops were built already (see
 *         vhu_daemon_set_workers()).
 *
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_set_poll(vhu_daemon* daemon, int enable);

/**
 * @brief Listens on a unix socket (server mode).
 *
 * A stale socket file at @p path is replaced; vhu_daemon_run() then serves
 * front-ends one after another.
 *
 * @param daemon The daemon.
 * @param path The socket path.
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 on success or a negative errno value.
 * @retval 0 Listening.
 * @retval -EINVAL @p daemon or @p path is NULL, or @p path is empty or too
 *         long for a unix socket address.
 * @retval -EBUSY The daemon already has an endpoint.
 * @retval -EEXIST Something other than a socket exists at @p path.
 * @retval -errno socket(2), bind(2) or listen(2) failed (-EACCES,
 *         -EADDRINUSE, -ENOENT, ...).
 * @retval -ENOMEM Out of memory.
 *
 * @par Ownership
 * @p path is copied. The daemon owns the socket and unlinks @p path in
 * vhu_daemon_free().
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_listen(vhu_daemon* daemon, const char* path, vhu_error** err);

/**
 * @brief Client mode: connects to a front-end listening at @p path.
 *
 * vhu_daemon_run() then serves this one front-end and returns when it
 * hangs up.
 *
 * @param daemon The daemon.
 * @param path The front-end's socket path.
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 on success or a negative errno value.
 * @retval 0 Connected.
 * @retval -EINVAL @p daemon or @p path is NULL, or @p path is empty or too
 *         long.
 * @retval -EBUSY The daemon already has an endpoint.
 * @retval -errno socket(2) or connect(2) failed (-ENOENT, -ECONNREFUSED,
 *         ...).
 * @retval -ENOMEM Out of memory.
 *
 * @par Ownership
 * @p path is copied; the daemon owns the connection.
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_connect(vhu_daemon* daemon, const char* path, vhu_error** err);

/** @brief vhu_daemon_adopt_fd() kind: a listening socket (server mode). */
#define VHU_FD_LISTENING 0
/** @brief vhu_daemon_adopt_fd() kind: a socket connected to a front-end. */
#define VHU_FD_CONNECTED 1
/**
 * @brief Takes ownership of an open unix stream socket.
 *
 * Either a listening one (VHU_FD_LISTENING), after which the daemon serves
 * front-ends one after another as with vhu_daemon_listen(), or one already
 * connected to a front-end (VHU_FD_CONNECTED), as with
 * vhu_daemon_connect().
 *
 * @param daemon The daemon.
 * @param fd The socket.
 * @param kind VHU_FD_LISTENING or VHU_FD_CONNECTED.
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 on success or a negative errno value.
 * @retval 0 Adopted.
 * @retval -EINVAL @p daemon is NULL, @p fd is negative or not a stream
 *         socket, its listening state does not match @p kind, or @p kind is
 *         unknown.
 * @retval -EBUSY The daemon already has an endpoint.
 *
 * @par Ownership
 * The daemon owns @p fd from the call on: it is closed by the daemon, also
 * on failure.
 * @par Threading
 * The thread that owns the daemon, before it runs.
 */
VHU_EXPORT int vhu_daemon_adopt_fd(vhu_daemon* daemon, int fd, int kind, vhu_error** err);

/**
 * @brief Runs the control loop in the calling thread.
 *
 * With a listening endpoint it serves front-ends one after another until
 * vhu_daemon_stop(); with a connected endpoint (connect/adopt) it returns
 * when that front-end hangs up or on stop. The worker threads run while it
 * does. A daemon with a listening endpoint can be run again after it
 * returned.
 *
 * @param daemon The daemon.
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 for a normal end, a negative errno value on failure.
 * @retval 0 Stopped by vhu_daemon_stop(), or the connected front-end hung
 *         up.
 * @retval -EINVAL @p daemon is NULL.
 * @retval -ENOTCONN No endpoint (listen, connect or adopt first).
 * @retval -EBUSY Already running (in another thread or started).
 * @retval -ENOMEM The control loop ran out of memory.
 * @retval -EIO The control loop failed (internal error).
 *
 * @par Threading
 * The calling thread becomes the control thread. Callbacks run on it and
 * on the workers until this returns.
 */
VHU_EXPORT int vhu_daemon_run(vhu_daemon* daemon, vhu_error** err);

/**
 * @brief Like vhu_daemon_run() in a new background thread.
 *
 * Collect the result with vhu_daemon_wait().
 *
 * @param daemon The daemon.
 * @param[out] err Receives a detailed error on failure; may be NULL.
 * @return 0 on success or a negative errno value.
 * @retval 0 The control thread was started.
 * @retval -EINVAL @p daemon is NULL.
 * @retval -ENOTCONN No endpoint.
 * @retval -EBUSY Started already and not waited for, or running.
 * @retval -ENOMEM Out of memory.
 * @retval -EIO The thread could not be created (internal error).
 *
 * @par Threading
 * The thread that owns the daemon. The new thread is the control thread.
 */
VHU_EXPORT int vhu_daemon_start(vhu_daemon* daemon, vhu_error** err);

/**
 * @brief Waits for a daemon started with vhu_daemon_start().
 *
 * @param daemon The daemon.
 * @param[out] err Receives the run's detailed error when it failed; may be
 *        NULL.
 * @return What the background run returned (see vhu_daemon_run()).
 * @retval -EINVAL @p daemon is NULL, or it was not started (or was waited
 *         for already).
 *
 * @par Threading
 * Not from one of the daemon's own threads; one waiter at a time.
 */
VHU_EXPORT int vhu_daemon_wait(vhu_daemon* daemon, vhu_error** err);

/**
 * @brief Asks a running daemon to stop.
 *
 * vhu_daemon_run() / vhu_daemon_wait() return within 100 ms. Stopping a
 * daemon that does not run is a no-op (the next run starts normally).
 *
 * @param daemon The daemon; NULL is a no-op.
 *
 * @par Threading
 * Thread-safe and async-signal-safe.
 */
VHU_EXPORT void vhu_daemon_stop(vhu_daemon* daemon);

/**
 * @brief Whether a front-end is connected now.
 *
 * @param daemon The daemon; NULL gives 0.
 * @return 1 when connected, 0 otherwise.
 *
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT int vhu_daemon_is_connected(const vhu_daemon* daemon);

/**
 * @brief Virtio features the front-end acknowledged in the current
 *        session.
 *
 * @param daemon The daemon; NULL gives 0.
 * @return The acknowledged feature bits (0 when none).
 *
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT uint64_t vhu_daemon_acked_features(const vhu_daemon* daemon);

/**
 * @brief Protocol features negotiated in the current session.
 *
 * @param daemon The daemon; NULL gives 0.
 * @return The VHU_PROTOCOL_F_* bits in use (0 when none).
 *
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT uint64_t vhu_daemon_protocol_features(const vhu_daemon* daemon);

/**
 * @brief The daemon's queue @p index.
 *
 * The first call builds the daemon's loops: the worker layout is fixed from
 * then on (see vhu_daemon_set_workers()).
 *
 * @param daemon The daemon; NULL gives NULL.
 * @param index The queue index.
 * @return The vring, or NULL when @p index is out of range.
 *
 * @par Ownership
 * Borrowed; valid until vhu_daemon_free().
 * @par Threading
 * Before the daemon runs, the thread that owns the daemon (the first call
 * builds its loops); once it runs, any thread. What may be done with the
 * vring is documented per function.
 */
VHU_EXPORT vhu_vring* vhu_daemon_get_vring(vhu_daemon* daemon, uint16_t index);

/**
 * @brief Tells the front-end that the configuration space changed.
 *
 * Sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the back-end channel and,
 * when REPLY_ACK was negotiated, waits up to 5 s for the front-end's ack.
 *
 * @param daemon The daemon.
 * @return 0 on success or a negative errno value.
 * @retval 0 Sent (and acknowledged, with REPLY_ACK).
 * @retval -EINVAL @p daemon is NULL.
 * @retval -ENOTCONN No back-end channel.
 * @retval -ENOTSUP CONFIG was not negotiated.
 * @retval -EIO The front-end replied failure.
 * @retval -EPROTO The front-end's reply was malformed.
 * @retval -ETIMEDOUT No reply within 5 s.
 * @retval -errno Writing to or reading from the channel failed.
 *
 * @par Threading
 * Thread-safe; best called from a thread of the host's own (a signal
 * handler thread, say) rather than from a queue handler, since the
 * front-end may be waiting on the daemon while it answers.
 */
VHU_EXPORT int vhu_daemon_config_changed(vhu_daemon* daemon);

/**
 * @brief Copies guest memory by guest-physical address into @p buf.
 *
 * Uses the current memory table.
 *
 * @param daemon The daemon.
 * @param gpa Guest-physical address of the first byte.
 * @param[out] buf Destination, @p len bytes.
 * @param len Number of bytes.
 * @return 0 on success or a negative errno value.
 * @retval 0 Copied.
 * @retval -EINVAL @p daemon is NULL, or @p buf is NULL with @p len > 0.
 * @retval -EFAULT The range is not entirely mapped.
 * @retval -ENOTCONN No memory table.
 *
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * Any thread.
 */
VHU_EXPORT int vhu_daemon_read_guest(vhu_daemon* daemon, uint64_t gpa, void* buf, size_t len);
/**
 * @brief Copies @p buf into guest memory by guest-physical address.
 *
 * Uses the current memory table.
 *
 * @param daemon The daemon.
 * @param gpa Guest-physical address of the first byte.
 * @param buf Source, @p len bytes.
 * @param len Number of bytes.
 * @return 0 on success or a negative errno value.
 * @retval 0 Copied.
 * @retval -EINVAL @p daemon is NULL, or @p buf is NULL with @p len > 0.
 * @retval -EFAULT The range is not entirely mapped.
 * @retval -ENOTCONN No memory table.
 *
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * Any thread.
 */
VHU_EXPORT int vhu_daemon_write_guest(vhu_daemon* daemon, uint64_t gpa, const void* buf,
                                      size_t len);

/** @} */

/**
 * @defgroup vhu_api_watch Watches and timers
 * @brief Host event sources on the daemon's worker loops.
 * @{
 */

/* ---- Host event sources on worker loops -------------------------------- */

/** @brief Watch event: the fd is readable. */
#define VHU_WATCH_READ 0x1u
/** @brief Watch event: the fd is writable. */
#define VHU_WATCH_WRITE 0x2u

/**
 * @brief Called when a watched fd is ready or a timer expires.
 *
 * @param fd The watched fd; -1 for a timer.
 * @param events Which of the requested VHU_WATCH_* events fired (0 for a
 *        timer).
 * @param user_data The pointer given when the watch was added.
 *
 * @par Threading
 * The worker's thread (the control thread with 0 workers); vring and chain
 * functions for that worker's queues may be called from it.
 */
typedef void (*vhu_watch_fn)(int fd, uint32_t events, void* user_data);

/**
 * @brief Watches @p fd on a worker's loop.
 *
 * The watch is active while the daemon runs. The first call builds the
 * daemon's loops (see vhu_daemon_get_vring()).
 *
 * @param daemon The daemon.
 * @param worker The worker whose loop to use (ignored when the daemon has
 *        0 workers: the control loop is used).
 * @param fd The fd to watch.
 * @param events VHU_WATCH_READ and/or VHU_WATCH_WRITE.
 * @param fn Called when an event fires.
 * @param user_data Passed to @p fn.
 * @param[out] out Receives the watch.
 * @return 0 on success or a negative errno value.
 * @retval 0 Added.
 * @retval -EINVAL @p daemon, @p fn or @p out is NULL, @p fd is negative,
 *         @p events is 0 or has unknown bits, or @p worker is out of range.
 * @retval -ENOMEM Out of memory.
 * @retval -EIO Internal error.
 *
 * @par Ownership
 * @p fd is not owned: keep it open until vhu_watch_free(). The caller owns
 * @p *out and frees it with vhu_watch_free() before vhu_daemon_free().
 * @p user_data stays the caller's.
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT int vhu_daemon_add_watch(vhu_daemon* daemon, unsigned worker, int fd, uint32_t events,
                                    vhu_watch_fn fn, void* user_data, vhu_watch** out);

/**
 * @brief A periodic timer on a worker's loop.
 *
 * The timer is active while the daemon runs; @p fn is called with fd -1
 * and events 0.
 *
 * @param daemon The daemon.
 * @param worker The worker whose loop to use (ignored with 0 workers).
 * @param period_us The period in microseconds (> 0).
 * @param fn Called every period.
 * @param user_data Passed to @p fn.
 * @param[out] out Receives the timer.
 * @return 0 on success or a negative errno value.
 * @retval 0 Added.
 * @retval -EINVAL @p daemon, @p fn or @p out is NULL, @p period_us is 0, or
 *         @p worker is out of range.
 * @retval -ENOMEM Out of memory.
 * @retval -EIO Internal error.
 *
 * @par Ownership
 * As vhu_daemon_add_watch().
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT int vhu_daemon_add_timer(vhu_daemon* daemon, unsigned worker, uint64_t period_us,
                                    vhu_watch_fn fn, void* user_data, vhu_watch** out);

/**
 * @brief Removes a watch or timer.
 *
 * After it returns the callback is not running and will not run again
 * (unless called from that very callback).
 *
 * @param watch The watch or timer; NULL is a no-op.
 *
 * @par Ownership
 * Releases @p watch. Must be called before vhu_daemon_free().
 * @par Threading
 * Thread-safe.
 */
VHU_EXPORT void vhu_watch_free(vhu_watch* watch);

/** @} */

/**
 * @defgroup vhu_api_vring Vrings
 * @brief The data path: taking chains from a virtqueue and returning them.
 *
 * Unless a function says otherwise, call it on the thread that owns the
 * queue: inside the daemon's callbacks for that queue, or in a watch or
 * timer on its worker.
 * @{
 */

/* ---- Vrings ----------------------------------------------------------- */

/**
 * @brief The queue's index in the device.
 * @param vring The vring; NULL gives 0.
 * @return The index (0..num_queues-1).
 * @par Threading
 * Any thread.
 */
VHU_EXPORT uint16_t vhu_vring_index(const vhu_vring* vring);
/**
 * @brief Queue size set by the front-end.
 * @param vring The vring; NULL gives 0.
 * @return The number of descriptors (0 before SET_VRING_NUM).
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT uint16_t vhu_vring_size(const vhu_vring* vring);
/**
 * @brief Whether the queue is started (kick fd received, rings mapped).
 * @param vring The vring; NULL gives 0.
 * @return 1 or 0.
 * @par Threading
 * Any thread (read atomically); stable only on the queue's thread.
 */
VHU_EXPORT int vhu_vring_is_started(const vhu_vring* vring);
/**
 * @brief Whether the front-end enabled the queue.
 * @param vring The vring; NULL gives 0.
 * @return 1 or 0.
 * @par Threading
 * Any thread (read atomically); the value may change at once.
 */
VHU_EXPORT int vhu_vring_is_enabled(const vhu_vring* vring);
/**
 * @brief Whether the queue is broken.
 *
 * Broken: a hostile or corrupt ring was seen; the queue is not touched
 * again until the front-end sets it up anew.
 *
 * @param vring The vring; NULL gives 0.
 * @return 1 or 0.
 * @par Threading
 * Any thread (read atomically).
 */
VHU_EXPORT int vhu_vring_is_broken(const vhu_vring* vring);
/**
 * @brief The daemon the vring belongs to.
 * @param vring The vring; NULL gives NULL.
 * @return The daemon.
 * @par Ownership
 * Borrowed: the caller's own handle from vhu_daemon_new().
 * @par Threading
 * Any thread.
 */
VHU_EXPORT vhu_daemon* vhu_vring_daemon(vhu_vring* vring);

/**
 * @brief Takes the next available descriptor chain.
 *
 * Several chains may be outstanding at once.
 *
 * @param vring The vring.
 * @param[out] out Receives the chain on success.
 * @return 0 on success or a negative errno value.
 * @retval 0 @p *out is a chain.
 * @retval -EAGAIN Nothing available.
 * @retval -EIO The ring is broken: it was marked broken now or earlier; the
 *         front-end is told through the error fd and, with STATUS,
 *         DEVICE_NEEDS_RESET.
 * @retval -ENOTCONN The queue is not started.
 * @retval -EINVAL @p vring or @p out is NULL.
 *
 * @par Ownership
 * The chain is owned by the vring until it is pushed (or unpopped); the
 * caller only borrows it.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_pop(vhu_vring* vring, vhu_chain** out);

/**
 * @brief Returns a chain to the driver through the used ring.
 *
 * The used index the driver reads moves in batches: pushed chains become
 * visible at the latest when vhu_vring_notify() or vhu_vring_push_many() is
 * called, when the handler returns, or every 32 pushes.
 *
 * @param vring The vring the chain was popped from.
 * @param chain The chain.
 * @param written Bytes written into its device-writable buffers.
 * @return 0 on success or a negative errno value.
 * @retval 0 Pushed.
 * @retval -EINVAL @p vring or @p chain is NULL; or @p written exceeds the
 *         writable length (the chain is returned with the writable length
 *         clamped); or the chain was not popped from this vring, or was
 *         pushed already (nothing happens).
 * @retval -ENOTCONN The queue was stopped since the pop: the chain was
 *         reclaimed.
 * @retval -EIO The queue is broken.
 *
 * @par Ownership
 * The chain is invalid after this call, also on error.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_push(vhu_vring* vring, vhu_chain* chain, uint32_t written);

/** @brief Defined when vhu_vring_push_many() is available. */
#define VHU_HAVE_PUSH_MANY 1
/**
 * @brief Pushes several chains and publishes them at once.
 *
 * Pushes @p n chains (chains[i] with written[i] bytes) and then publishes
 * them (and any earlier pushes) with one used-index update, so the driver
 * sees all of them or none: needed when several chains carry one message
 * (virtio-net mergeable receive buffers), and cheaper than n single pushes.
 *
 * @param vring The vring the chains were popped from.
 * @param chains @p n chains.
 * @param written @p n byte counts, written[i] for chains[i].
 * @param n Number of chains (at most the queue size); 0 only publishes.
 * @return 0 on success or a negative errno value.
 * @retval 0 All pushed and published.
 * @retval -EINVAL All or nothing for a chain that is NULL, not outstanding
 *         on this vring or appears twice, for NULL arrays with @p n > 0 or
 *         @p n above the queue size (nothing is pushed); a @p written
 *         larger than its chain's writable length is clamped and reported
 *         as -EINVAL after everything was pushed. Also for a NULL @p vring.
 * @retval -ENOTCONN The queue was stopped since the pops.
 * @retval -EIO The queue is broken.
 *
 * @par Ownership
 * The arrays are borrowed for the call. Pushed chains are invalid after
 * it.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_push_many(vhu_vring* vring, vhu_chain* const* chains,
                                   const uint32_t* written, unsigned n);

/**
 * @brief Puts a chain back so the next pop returns it again.
 *
 * Nothing is written to the used ring. Pops are undone newest first: a
 * chain can be put back once every chain popped after it has been put back
 * (a device that took several chains for one packet can return them all
 * when the ring runs dry).
 *
 * @param vring The vring the chain was popped from.
 * @param chain The most recently popped chain still outstanding.
 * @return 0 on success or a negative errno value.
 * @retval 0 Put back.
 * @retval -EINVAL Any other chain, or one already pushed; a NULL argument;
 *         or the queue is stopped or broken.
 *
 * @par Ownership
 * On success the chain is invalid; the next pop hands out a new one for
 * the same descriptors.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_unpop(vhu_vring* vring, vhu_chain* chain);

/**
 * @brief Signals the front-end's call fd if the driver wants an interrupt.
 *
 * Signals for what was pushed since the last signal, honouring EVENT_IDX
 * or NO_INTERRUPT.
 *
 * @param vring The vring.
 * @return 1 if it signalled, 0 if suppressed (or nothing was pushed, or no
 *         call fd), a negative errno value on failure.
 * @retval -EINVAL @p vring is NULL.
 * @retval -ENOTCONN The queue is not started.
 * @retval -EIO The queue is broken.
 * @retval -errno Writing the call fd failed.
 *
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_notify(vhu_vring* vring);

/**
 * @brief Enables or disables guest->device notifications (kicks).
 *
 * For a polling loop. After enabling, check vhu_vring_pending() once more
 * to close the race with the driver.
 *
 * @param vring The vring.
 * @param enable 1 to ask for kicks, 0 to ask the driver not to kick.
 * @return 0 on success or a negative errno value.
 * @retval 0 Set.
 * @retval -EINVAL @p vring is NULL.
 * @retval -ENOTCONN The queue is not started.
 * @retval -EIO The queue is broken.
 *
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_set_kicks(vhu_vring* vring, int enable);

/**
 * @brief Whether the driver has made chains available that were not popped.
 * @param vring The vring; NULL gives 0.
 * @return 1 or 0.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT int vhu_vring_pending(vhu_vring* vring);

/**
 * @brief Copies guest memory into @p buf through the queue's view of the
 *        memory table.
 *
 * @param vring The vring.
 * @param gpa Guest-physical address of the first byte.
 * @param[out] buf Destination, @p len bytes.
 * @param len Number of bytes.
 * @return 0 on success or a negative errno value.
 * @retval 0 Copied.
 * @retval -EINVAL @p vring is NULL, or @p buf is NULL with @p len > 0.
 * @retval -EFAULT The range is not entirely mapped.
 * @retval -ENOTCONN No memory table.
 *
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * The queue's worker thread only.
 */
VHU_EXPORT int vhu_vring_read_guest(vhu_vring* vring, uint64_t gpa, void* buf, size_t len);
/**
 * @brief Copies @p buf into guest memory through the queue's view of the
 *        memory table.
 *
 * @param vring The vring.
 * @param gpa Guest-physical address of the first byte.
 * @param buf Source, @p len bytes.
 * @param len Number of bytes.
 * @return 0 on success or a negative errno value.
 * @retval 0 Copied.
 * @retval -EINVAL @p vring is NULL, or @p buf is NULL with @p len > 0.
 * @retval -EFAULT The range is not entirely mapped.
 * @retval -ENOTCONN No memory table.
 *
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * The queue's worker thread only.
 */
VHU_EXPORT int vhu_vring_write_guest(vhu_vring* vring, uint64_t gpa, const void* buf, size_t len);

/**
 * @brief Per-queue counters, filled by vhu_vring_get_stats().
 *
 * Counters restart at 0 for every session.
 */
typedef struct vhu_vring_stats {
  size_t struct_size;     /**< Set by the caller: sizeof(vhu_vring_stats). */
  uint64_t chains;        /**< Chains pushed to the used ring. */
  uint64_t bytes_read;    /**< Device-readable bytes of pushed chains. */
  uint64_t bytes_written; /**< Bytes reported written by push. */
  uint64_t notifications; /**< Times the call fd was signalled. */
  uint64_t suppressed;    /**< Notify calls the driver did not want. */
  uint64_t kicks;         /**< Kick events received. */
  uint64_t errors;        /**< Chains rejected as malformed. */
} vhu_vring_stats;

/**
 * @brief Copies the queue's counters.
 *
 * Only the members inside stats->struct_size are written.
 *
 * @param vring The vring.
 * @param[in,out] stats struct_size set by the caller; receives the
 *        counters.
 * @return 0 on success or a negative errno value.
 * @retval 0 Copied.
 * @retval -EINVAL @p vring or @p stats is NULL, or struct_size is smaller
 *         than sizeof(size_t).
 *
 * @par Ownership
 * @p stats stays the caller's.
 * @par Threading
 * Thread-safe (values are read relaxed).
 */
VHU_EXPORT int vhu_vring_get_stats(const vhu_vring* vring, vhu_vring_stats* stats);

/** @} */

/**
 * @defgroup vhu_api_chain Descriptor chains
 * @brief Reading a request from a chain and writing its reply.
 *
 * Every function here is called on the thread that owns the chain's queue,
 * between vhu_vring_pop() and the push or unpop that ends the chain.
 * @{
 */

/* ---- Descriptor chains ------------------------------------------------ */

/**
 * @brief The head descriptor index of the chain.
 * @param chain The chain; NULL gives 0.
 * @return The index of its first descriptor in the descriptor table.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT uint16_t vhu_chain_head(const vhu_chain* chain);

/**
 * @brief The device-readable (driver->device) buffers of the chain.
 *
 * As iovecs in this process's memory, in chain order. One descriptor that
 * crosses memory regions becomes several iovecs.
 *
 * @param chain The chain; NULL gives NULL and a count of 0.
 * @param[out] count Receives the number of iovecs; may be NULL.
 * @return The first iovec.
 *
 * @par Ownership
 * Borrowed; valid until the chain is pushed or unpopped. The buffers are
 * guest memory, which the driver may change concurrently.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT const struct iovec* vhu_chain_readable(const vhu_chain* chain, unsigned* count);
/**
 * @brief The device-writable (device->driver) buffers of the chain.
 *
 * As iovecs in this process's memory, in chain order. One descriptor that
 * crosses memory regions becomes several iovecs.
 *
 * @param chain The chain; NULL gives NULL and a count of 0.
 * @param[out] count Receives the number of iovecs; may be NULL.
 * @return The first iovec.
 *
 * @par Ownership
 * Borrowed; valid until the chain is pushed or unpopped.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT const struct iovec* vhu_chain_writable(const vhu_chain* chain, unsigned* count);
/**
 * @brief Total length of the device-readable buffers.
 * @param chain The chain; NULL gives 0.
 * @return The length in bytes.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT size_t vhu_chain_readable_len(const vhu_chain* chain);
/**
 * @brief Total length of the device-writable buffers.
 * @param chain The chain; NULL gives 0.
 * @return The length in bytes.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT size_t vhu_chain_writable_len(const vhu_chain* chain);

/**
 * @brief Copies out of the readable buffers.
 *
 * Copies up to @p len bytes starting at byte @p offset of the readable
 * part.
 *
 * @param chain The chain; NULL gives 0.
 * @param offset Byte offset into the readable buffers.
 * @param[out] buf Destination; NULL gives 0.
 * @param len Capacity of @p buf.
 * @return The number of bytes copied (less than @p len at the end of the
 *         readable part).
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT size_t vhu_chain_read(const vhu_chain* chain, size_t offset, void* buf, size_t len);
/**
 * @brief Copies into the writable buffers.
 *
 * Copies up to @p len bytes to byte @p offset of the writable part. Report
 * the bytes written with vhu_vring_push().
 *
 * @param chain The chain; NULL gives 0.
 * @param offset Byte offset into the writable buffers.
 * @param buf Source; NULL gives 0.
 * @param len Number of bytes in @p buf.
 * @return The number of bytes copied (less than @p len at the end of the
 *         writable part).
 * @par Ownership
 * @p buf stays the caller's.
 * @par Threading
 * The queue's thread.
 */
VHU_EXPORT size_t vhu_chain_write(vhu_chain* chain, size_t offset, const void* buf, size_t len);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* VHOSTUSER_VHOSTUSER_H */
