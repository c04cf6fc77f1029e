package vhostuser

/*
#include <stdlib.h>
#include <vhostuser/vhostuser.h>
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Virtio feature bits used by the library.
const (
	FeatureRingIndirectDesc uint64 = 1 << 28
	FeatureRingEventIdx     uint64 = 1 << 29
	FeatureProtocolFeatures uint64 = 1 << 30
	FeatureVersion1         uint64 = 1 << 32

	// DefaultFeatures is what the library offers when a C back-end has no
	// get_features callback.
	DefaultFeatures = FeatureVersion1 | FeatureRingIndirectDesc | FeatureRingEventIdx
)

// vhost-user protocol feature bits.
const (
	ProtocolMQ                uint64 = 1 << 0
	ProtocolReplyAck          uint64 = 1 << 3
	ProtocolBackendReq        uint64 = 1 << 5
	ProtocolConfig            uint64 = 1 << 9
	ProtocolResetDevice       uint64 = 1 << 13
	ProtocolConfigureMemSlots uint64 = 1 << 15
	ProtocolStatus            uint64 = 1 << 16
)

// Backend is a virtio device served by a Daemon. Features and HandleQueue
// are required; the optional hooks are the interfaces below (ProtocolFeaturer,
// FeaturesAcker, ConfigReader, ConfigWriter, QueueStarter, QueueStopper,
// MemoryWatcher, Resetter): a back-end gets a hook by having the method.
type Backend interface {
	// Features returns the virtio feature bits the device offers (for
	// example DefaultFeatures plus device bits). The library adds
	// FeatureProtocolFeatures and drops ring layouts it cannot serve.
	// Control thread.
	Features() uint64
	// HandleQueue is the data path: queue vr has work. Pop chains, Push
	// them and Notify. It runs on the queue's worker thread; vr and the
	// chains popped in it may be used only inside the call.
	HandleQueue(vr *Vring)
}

// ProtocolFeaturer chooses the protocol features the device wants (the
// library offers the intersection with what it implements).
type ProtocolFeaturer interface {
	ProtocolFeatures() uint64
}

// FeaturesAcker is told which features the front-end acknowledged; an
// error fails the request (see Status for the errno it becomes).
type FeaturesAcker interface {
	FeaturesAcked(features uint64) error
}

// ConfigReader serves GET_CONFIG: fill buf with the configuration space at
// offset. A back-end with it offers ProtocolConfig. buf is valid only
// during the call.
type ConfigReader interface {
	ReadConfig(offset uint32, buf []byte) error
}

// ConfigWriter serves SET_CONFIG; flags is 0 for a driver write, 1 for live
// migration. data is valid only during the call.
type ConfigWriter interface {
	WriteConfig(offset uint32, data []byte, flags uint32) error
}

// QueueStarter is told that a queue started (worker thread). vr may Pop
// inside the call.
type QueueStarter interface {
	QueueStarted(vr *Vring)
}

// QueueStopper is told that a queue stops; the ring is not touched after
// it returns (worker thread).
type QueueStopper interface {
	QueueStopped(vr *Vring)
}

// MemoryWatcher is told that guest memory was replaced (control thread).
type MemoryWatcher interface {
	MemoryChanged()
}

// Resetter is told that the device was reset or the front-end went away:
// forget per-session state (control thread).
type Resetter interface {
	DeviceReset()
}

// Options describe the device's queues.
type Options struct {
	// NumQueues is the number of virtqueues (1..256).
	NumQueues int
	// MaxQueueSize is the largest queue size the front-end may set (a power
	// of two up to 32768); 0 means 1024.
	MaxQueueSize int
	// QueueNum answers GET_QUEUE_NUM in the unit of the device type
	// (queue pairs for virtio-net); 0 means NumQueues.
	QueueNum int
}

// LogLevel is the severity of a library message.
type LogLevel int

// Log levels, most severe first.
const (
	LogError   LogLevel = C.VHU_LOG_ERROR
	LogWarning LogLevel = C.VHU_LOG_WARNING
	LogInfo    LogLevel = C.VHU_LOG_INFO
	LogDebug   LogLevel = C.VHU_LOG_DEBUG
)

func (l LogLevel) String() string {
	switch l {
	case LogError:
		return "error"
	case LogWarning:
		return "warning"
	case LogInfo:
		return "info"
	case LogDebug:
		return "debug"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// daemonState is what the cgo.Handle given to the library as user data
// refers to; every callback finds the back-end through it.
type daemonState struct {
	backend Backend
	// vrings are made on first use: asking the library for a vring fixes
	// the daemon's worker layout, so NewDaemon must not do it.
	vrings []atomic.Pointer[Vring]
	log    func(LogLevel, string)
}

// vringAt returns the Vring for queue i, whose C object is c.
func (st *daemonState) vringAt(i int, c *C.vhu_vring) *Vring {
	if v := st.vrings[i].Load(); v != nil {
		return v
	}
	st.vrings[i].CompareAndSwap(nil, &Vring{c: c, index: i})
	return st.vrings[i].Load()
}

// liveHandles counts handles given to the library and not yet released by
// its user_data_free destructor.
var liveHandles atomic.Int64

// LiveHandles returns how many daemons' callback handles the library still
// holds: it rises with NewDaemon and falls when the library releases the
// handle (Close, or a failed NewDaemon). A program that closed every daemon
// sees 0.
func LiveHandles() int64 { return liveHandles.Load() }

// Daemon serves one Backend on a unix socket.
type Daemon struct {
	mu     sync.RWMutex // write-held by Close; read-held by every other method
	c      *C.vhu_daemon
	handle uintptr
	state  *daemonState
}

// NewDaemon creates a daemon for b. It does not listen or run yet.
func NewDaemon(b Backend, o Options) (*Daemon, error) {
	if b == nil {
		return nil, &Error{Op: "new daemon", Code: syscall.EINVAL, Message: "nil Backend"}
	}
	if o.NumQueues < 1 || o.NumQueues > 256 {
		return nil, &Error{Op: "new daemon", Code: syscall.EINVAL,
			Message: fmt.Sprintf("NumQueues %d is not in 1..256", o.NumQueues)}
	}
	if o.MaxQueueSize < 0 || o.MaxQueueSize > 32768 || o.QueueNum < 0 || o.QueueNum > 256 {
		return nil, &Error{Op: "new daemon", Code: syscall.EINVAL,
			Message: fmt.Sprintf("MaxQueueSize %d or QueueNum %d out of range", o.MaxQueueSize, o.QueueNum)}
	}
	var mask uint
	if _, ok := b.(ProtocolFeaturer); ok {
		mask |= hookProtocolFeatures
	}
	if _, ok := b.(FeaturesAcker); ok {
		mask |= hookFeaturesAcked
	}
	if _, ok := b.(ConfigReader); ok {
		mask |= hookGetConfig
	}
	if _, ok := b.(ConfigWriter); ok {
		mask |= hookSetConfig
	}
	if _, ok := b.(QueueStarter); ok {
		mask |= hookQueueStarted
	}
	if _, ok := b.(QueueStopper); ok {
		mask |= hookQueueStopped
	}
	if _, ok := b.(MemoryWatcher); ok {
		mask |= hookMemoryChanged
	}
	if _, ok := b.(Resetter); ok {
		mask |= hookDeviceReset
	}
	st := &daemonState{backend: b, vrings: make([]atomic.Pointer[Vring], o.NumQueues)}
	h := cgo.NewHandle(st)
	liveHandles.Add(1)
	// From here the library owns h and releases it (also on failure).
	cd, err := cNewDaemon(o, mask, uintptr(h))
	if err != nil {
		return nil, err
	}
	return &Daemon{c: cd, handle: uintptr(h), state: st}, nil
}

// get returns the C daemon for a method holding d.mu (read).
func (d *Daemon) get() (*C.vhu_daemon, error) {
	if d.c == nil {
		return nil, ErrClosed
	}
	return d.c, nil
}

// SetLog installs fn for the library's messages up to maxLevel (nil
// removes it). fn runs on any of the daemon's threads. Call before Run or
// Start.
func (d *Daemon) SetLog(fn func(level LogLevel, message string), maxLevel LogLevel) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	d.state.log = fn
	if fn == nil {
		return statusError("set log", cClearLog(c))
	}
	return statusError("set log", cSetLog(c, maxLevel, d.handle))
}

// SetWorkers sets the number of worker threads (0..64, default 1; 0 serves
// the queues on the control thread). Call before Listen or
// Connect (the daemon is fixed from then on: EBUSY).
func (d *Daemon) SetWorkers(n int) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	if n < 0 || n > 64 {
		return &Error{Op: "set workers", Code: syscall.EINVAL}
	}
	return statusError("set workers", C.vhu_daemon_set_workers(c, C.unsigned(n)))
}

// AssignQueue puts queue on worker. Call before Listen or
// Connect (the daemon is fixed from then on: EBUSY).
func (d *Daemon) AssignQueue(queue, worker int) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	if queue < 0 || queue > 0xffff || worker < 0 || worker > 64 {
		return &Error{Op: "assign queue", Code: syscall.EINVAL}
	}
	return statusError("assign queue", C.vhu_daemon_assign_queue(c, C.uint16_t(queue), C.unsigned(worker)))
}

// SetPoll turns busy-polling on or off. Call before Listen or
// Connect (the daemon is fixed from then on: EBUSY).
func (d *Daemon) SetPoll(enable bool) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	return statusError("set poll", C.vhu_daemon_set_poll(c, cBool(enable)))
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (d *Daemon) endpoint(op string, path string,
	fn func(*C.vhu_daemon, *C.char, **C.vhu_error) C.int) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	var cerr *C.vhu_error
	rc := fn(c, cs, &cerr)
	return takeError(op+" "+path, rc, cerr)
}

// Listen makes the daemon listen on a unix socket at path (a stale socket
// file there is replaced; Close removes it).
func (d *Daemon) Listen(path string) error {
	return d.endpoint("listen", path, func(c *C.vhu_daemon, p *C.char, e **C.vhu_error) C.int {
		return C.vhu_daemon_listen(c, p, e)
	})
}

// Connect connects to a front-end listening at path (client mode).
func (d *Daemon) Connect(path string) error {
	return d.endpoint("connect", path, func(c *C.vhu_daemon, p *C.char, e **C.vhu_error) C.int {
		return C.vhu_daemon_connect(c, p, e)
	})
}

// Run serves front-ends in the calling goroutine until Stop (listening) or
// until the front-end hangs up (Connect). It returns nil for a normal end.
func (d *Daemon) Run() error {
	c, err := d.runnable()
	if err != nil {
		return err
	}
	var cerr *C.vhu_error
	rc := C.vhu_daemon_run(c, &cerr)
	return takeError("run", rc, cerr)
}

// Start runs the daemon on a background thread; Wait collects the result.
func (d *Daemon) Start() error {
	c, err := d.runnable()
	if err != nil {
		return err
	}
	var cerr *C.vhu_error
	rc := C.vhu_daemon_start(c, &cerr)
	return takeError("start", rc, cerr)
}

// Wait waits for a daemon started with Start and returns what it ended with.
func (d *Daemon) Wait() error {
	c, err := d.runnable()
	if err != nil {
		return err
	}
	var cerr *C.vhu_error
	rc := C.vhu_daemon_wait(c, &cerr)
	return takeError("wait", rc, cerr)
}

// runnable returns the C daemon without holding d.mu for the (long) call
// that follows: Close must not race with Run/Wait (see Close).
func (d *Daemon) runnable() (*C.vhu_daemon, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.get()
}

// Stop asks a running daemon to stop; Run or Wait return within 100 ms.
// Safe from any goroutine; a no-op on a closed daemon.
func (d *Daemon) Stop() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.c != nil {
		C.vhu_daemon_stop(d.c)
	}
}

// Close stops the daemon, waits for its threads, closes its sockets
// (removing a socket file Listen created) and releases the callback handle.
// Call it once Run or Wait has returned, never from a callback. Closing
// twice is a no-op.
func (d *Daemon) Close() error {
	d.mu.Lock()
	c := d.c
	d.c = nil
	d.mu.Unlock()
	// Not under d.mu: hooks that run while the daemon shuts down (a queue
	// stopping, the log) may call methods of d, which then see it closed.
	if c != nil {
		C.vhu_daemon_free(c)
	}
	return nil
}

// Connected reports whether a front-end is connected now.
func (d *Daemon) Connected() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.c != nil && C.vhu_daemon_is_connected(d.c) != 0
}

// AckedFeatures returns the virtio features acknowledged in this session.
func (d *Daemon) AckedFeatures() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.c == nil {
		return 0
	}
	return uint64(C.vhu_daemon_acked_features(d.c))
}

// ProtocolFeatures returns the protocol features negotiated in this session.
func (d *Daemon) ProtocolFeatures() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.c == nil {
		return 0
	}
	return uint64(C.vhu_daemon_protocol_features(d.c))
}

// NumQueues returns the number of queues of the device.
func (d *Daemon) NumQueues() int { return len(d.state.vrings) }

// Vring returns queue i (nil when out of range or closed). Outside the
// queue's callbacks only its thread-safe methods (Index, Size, state
// queries, Stats) may be used. Like Listen, the first call fixes the
// worker settings (SetWorkers, AssignQueue, SetPoll).
func (d *Daemon) Vring(i int) *Vring {
	if i < 0 || i >= len(d.state.vrings) {
		return nil
	}
	if v := d.state.vrings[i].Load(); v != nil {
		return v
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.c == nil {
		return nil
	}
	return d.state.vringAt(i, C.vhu_daemon_get_vring(d.c, C.uint16_t(i)))
}

// ConfigChanged tells the front-end that the configuration space changed
// and waits for its acknowledgement. Best called from a goroutine of the
// program's own, not from a callback.
func (d *Daemon) ConfigChanged() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil {
		return err
	}
	return statusError("config changed", C.vhu_daemon_config_changed(c))
}

// ReadGuest copies len(buf) bytes of guest memory at guest-physical address
// gpa into buf.
func (d *Daemon) ReadGuest(gpa uint64, buf []byte) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil || len(buf) == 0 {
		return err
	}
	return statusError("read guest", C.vhu_daemon_read_guest(c, C.uint64_t(gpa),
		unsafe.Pointer(&buf[0]), C.size_t(len(buf))))
}

// WriteGuest copies data into guest memory at guest-physical address gpa.
func (d *Daemon) WriteGuest(gpa uint64, data []byte) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, err := d.get()
	if err != nil || len(data) == 0 {
		return err
	}
	return statusError("write guest", C.vhu_daemon_write_guest(c, C.uint64_t(gpa),
		unsafe.Pointer(&data[0]), C.size_t(len(data))))
}

// Version returns the version of the loaded library.
func Version() (major, minor, patch int) {
	var a, b, c C.int
	C.vhu_version(&a, &b, &c)
	return int(a), int(b), int(c)
}
