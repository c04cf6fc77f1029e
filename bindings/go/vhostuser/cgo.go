package vhostuser

/*
#cgo pkg-config: vhostuser
#include <stdint.h>
#include <stdlib.h>
#include <vhostuser/vhostuser.h>

// The Go side of every callback (exported in callbacks.go). The user data
// pointer the library hands back is the daemon's cgo.Handle value.
extern uint64_t goGetFeatures(uintptr_t h);
extern uint64_t goGetProtocolFeatures(uintptr_t h);
extern int goFeaturesAcked(uint64_t features, uintptr_t h);
extern int goGetConfig(uint32_t offset, void* buf, uint32_t size, uintptr_t h);
extern int goSetConfig(uint32_t offset, void* buf, uint32_t size, uint32_t flags, uintptr_t h);
extern void goHandleQueue(vhu_vring* vring, uintptr_t h);
extern void goQueueStarted(vhu_vring* vring, uintptr_t h);
extern void goQueueStopped(vhu_vring* vring, uintptr_t h);
extern void goMemoryChanged(uintptr_t h);
extern void goDeviceReset(uintptr_t h);
extern void goLog(int level, char* message, uintptr_t h);
extern void goReleaseHandle(uintptr_t h);

// C trampolines: they turn the library's void* user data into the handle
// value and drop const qualifiers cgo cannot express.
static uint64_t vhugo_get_features(void* ud) { return goGetFeatures((uintptr_t)ud); }
static uint64_t vhugo_get_protocol_features(void* ud) {
  return goGetProtocolFeatures((uintptr_t)ud);
}
static int vhugo_features_acked(uint64_t f, void* ud) { return goFeaturesAcked(f, (uintptr_t)ud); }
static int vhugo_get_config(uint32_t off, void* buf, uint32_t size, void* ud) {
  return goGetConfig(off, buf, size, (uintptr_t)ud);
}
static int vhugo_set_config(uint32_t off, const void* buf, uint32_t size, uint32_t flags,
                            void* ud) {
  return goSetConfig(off, (void*)buf, size, flags, (uintptr_t)ud);
}
static void vhugo_handle_queue(vhu_vring* vr, void* ud) { goHandleQueue(vr, (uintptr_t)ud); }
static void vhugo_queue_started(vhu_vring* vr, void* ud) { goQueueStarted(vr, (uintptr_t)ud); }
static void vhugo_queue_stopped(vhu_vring* vr, void* ud) { goQueueStopped(vr, (uintptr_t)ud); }
static void vhugo_memory_changed(void* ud) { goMemoryChanged((uintptr_t)ud); }
static void vhugo_device_reset(void* ud) { goDeviceReset((uintptr_t)ud); }
static void vhugo_log(vhu_log_level level, const char* msg, void* ud) {
  goLog((int)level, (char*)msg, (uintptr_t)ud);
}
static void vhugo_release(void* ud) { goReleaseHandle((uintptr_t)ud); }

// Which optional callbacks a back-end implements (bits of vhugo_daemon_new's mask).
enum {
  VHUGO_PROTOCOL_FEATURES = 1 << 0,
  VHUGO_FEATURES_ACKED = 1 << 1,
  VHUGO_GET_CONFIG = 1 << 2,
  VHUGO_SET_CONFIG = 1 << 3,
  VHUGO_QUEUE_STARTED = 1 << 4,
  VHUGO_QUEUE_STOPPED = 1 << 5,
  VHUGO_MEMORY_CHANGED = 1 << 6,
  VHUGO_DEVICE_RESET = 1 << 7,
};

// Builds the callback table (only the hooks the back-end has) and creates
// the daemon with the handle as user data and vhugo_release as its
// destructor, which the library calls exactly once, also on failure.
static int vhugo_daemon_new(uint16_t num_queues, uint16_t max_queue_size, uint16_t queue_num,
                            unsigned mask, uintptr_t h, vhu_daemon** out, vhu_error** err) {
  vhu_backend_ops ops = {0};
  ops.struct_size = sizeof ops;
  ops.num_queues = num_queues;
  ops.max_queue_size = max_queue_size;
  ops.queue_num = queue_num;
  ops.get_features = vhugo_get_features;
  ops.handle_queue = vhugo_handle_queue;
  if (mask & VHUGO_PROTOCOL_FEATURES) ops.get_protocol_features = vhugo_get_protocol_features;
  if (mask & VHUGO_FEATURES_ACKED) ops.features_acked = vhugo_features_acked;
  if (mask & VHUGO_GET_CONFIG) ops.get_config = vhugo_get_config;
  if (mask & VHUGO_SET_CONFIG) ops.set_config = vhugo_set_config;
  if (mask & VHUGO_QUEUE_STARTED) ops.queue_started = vhugo_queue_started;
  if (mask & VHUGO_QUEUE_STOPPED) ops.queue_stopped = vhugo_queue_stopped;
  if (mask & VHUGO_MEMORY_CHANGED) ops.memory_changed = vhugo_memory_changed;
  if (mask & VHUGO_DEVICE_RESET) ops.device_reset = vhugo_device_reset;
  return vhu_daemon_new(&ops, (void*)h, vhugo_release, out, err);
}

static int vhugo_set_log(vhu_daemon* d, int max_level, uintptr_t h) {
  return vhu_daemon_set_log(d, vhugo_log, (vhu_log_level)max_level, (void*)h);
}

static int vhugo_clear_log(vhu_daemon* d) {
  return vhu_daemon_set_log(d, NULL, VHU_LOG_ERROR, NULL);
}

// iovec accessors, so Go never indexes C arrays by hand.
static void* vhugo_iov_base(const struct iovec* iov, unsigned i) { return iov[i].iov_base; }
static size_t vhugo_iov_len(const struct iovec* iov, unsigned i) { return iov[i].iov_len; }
*/
import "C"

import "unsafe"

// Bits of cNewDaemon's mask.
const (
	hookProtocolFeatures = C.VHUGO_PROTOCOL_FEATURES
	hookFeaturesAcked    = C.VHUGO_FEATURES_ACKED
	hookGetConfig        = C.VHUGO_GET_CONFIG
	hookSetConfig        = C.VHUGO_SET_CONFIG
	hookQueueStarted     = C.VHUGO_QUEUE_STARTED
	hookQueueStopped     = C.VHUGO_QUEUE_STOPPED
	hookMemoryChanged    = C.VHUGO_MEMORY_CHANGED
	hookDeviceReset      = C.VHUGO_DEVICE_RESET
)

// cNewDaemon creates the C daemon. The library owns handle h from here on:
// it calls goReleaseHandle(h) exactly once, when the daemon is freed or
// right away when creation fails.
func cNewDaemon(o Options, mask uint, h uintptr) (*C.vhu_daemon, error) {
	var d *C.vhu_daemon
	var cerr *C.vhu_error
	rc := C.vhugo_daemon_new(C.uint16_t(o.NumQueues), C.uint16_t(o.MaxQueueSize),
		C.uint16_t(o.QueueNum), C.unsigned(mask), C.uintptr_t(h), &d, &cerr)
	if rc != 0 {
		return nil, takeError("new daemon", rc, cerr)
	}
	return d, nil
}

func cSetLog(d *C.vhu_daemon, level LogLevel, h uintptr) C.int {
	return C.vhugo_set_log(d, C.int(level), C.uintptr_t(h))
}

func cClearLog(d *C.vhu_daemon) C.int { return C.vhugo_clear_log(d) }

// iovecSlices views n iovecs as byte slices over the memory they describe.
func iovecSlices(iov *C.struct_iovec, n C.unsigned) [][]byte {
	out := make([][]byte, 0, int(n))
	for i := C.unsigned(0); i < n; i++ {
		base := C.vhugo_iov_base(iov, i)
		l := int(C.vhugo_iov_len(iov, i))
		if l == 0 || base == nil {
			out = append(out, []byte{})
			continue
		}
		out = append(out, unsafe.Slice((*byte)(base), l))
	}
	return out
}
