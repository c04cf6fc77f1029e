package vhostuser

// The library's callbacks, exported to the C trampolines in cgo.go. Each
// receives the daemon's cgo.Handle value as its last argument. A panic in
// a Backend method is not recovered: it ends the program, as in any
// goroutine.

/*
#include <stdint.h>
#include <vhostuser/vhostuser.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

func stateOf(h C.uintptr_t) *daemonState {
	return cgo.Handle(h).Value().(*daemonState)
}

func (st *daemonState) vring(vr *C.vhu_vring) *Vring {
	return st.vringAt(int(C.vhu_vring_index(vr)), vr)
}

// cBytes views n bytes of C memory at p (nil when n is 0).
func cBytes(p unsafe.Pointer, n C.uint32_t) []byte {
	if n == 0 || p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

//export goGetFeatures
func goGetFeatures(h C.uintptr_t) C.uint64_t {
	return C.uint64_t(stateOf(h).backend.Features())
}

//export goGetProtocolFeatures
func goGetProtocolFeatures(h C.uintptr_t) C.uint64_t {
	return C.uint64_t(stateOf(h).backend.(ProtocolFeaturer).ProtocolFeatures())
}

//export goFeaturesAcked
func goFeaturesAcked(features C.uint64_t, h C.uintptr_t) C.int {
	return C.int(Status(stateOf(h).backend.(FeaturesAcker).FeaturesAcked(uint64(features))))
}

//export goGetConfig
func goGetConfig(offset C.uint32_t, buf unsafe.Pointer, size C.uint32_t, h C.uintptr_t) C.int {
	err := stateOf(h).backend.(ConfigReader).ReadConfig(uint32(offset), cBytes(buf, size))
	return C.int(Status(err))
}

//export goSetConfig
func goSetConfig(offset C.uint32_t, buf unsafe.Pointer, size C.uint32_t, flags C.uint32_t,
	h C.uintptr_t) C.int {
	err := stateOf(h).backend.(ConfigWriter).WriteConfig(uint32(offset), cBytes(buf, size),
		uint32(flags))
	return C.int(Status(err))
}

//export goHandleQueue
func goHandleQueue(vr *C.vhu_vring, h C.uintptr_t) {
	st := stateOf(h)
	v := st.vring(vr)
	v.enter()
	defer v.leave()
	st.backend.HandleQueue(v)
}

//export goQueueStarted
func goQueueStarted(vr *C.vhu_vring, h C.uintptr_t) {
	st := stateOf(h)
	v := st.vring(vr)
	v.enter()
	defer v.leave()
	st.backend.(QueueStarter).QueueStarted(v)
}

//export goQueueStopped
func goQueueStopped(vr *C.vhu_vring, h C.uintptr_t) {
	st := stateOf(h)
	v := st.vring(vr)
	v.enter()
	defer v.leave()
	st.backend.(QueueStopper).QueueStopped(v)
}

//export goMemoryChanged
func goMemoryChanged(h C.uintptr_t) {
	stateOf(h).backend.(MemoryWatcher).MemoryChanged()
}

//export goDeviceReset
func goDeviceReset(h C.uintptr_t) {
	stateOf(h).backend.(Resetter).DeviceReset()
}

//export goLog
func goLog(level C.int, message *C.char, h C.uintptr_t) {
	if fn := stateOf(h).log; fn != nil {
		fn(LogLevel(level), C.GoString(message))
	}
}

// goReleaseHandle is the daemon's user_data_free: the library calls it
// exactly once, from vhu_daemon_free or from a failing vhu_daemon_new.
//
//export goReleaseHandle
func goReleaseHandle(h C.uintptr_t) {
	cgo.Handle(h).Delete()
	liveHandles.Add(-1)
}
