package vhostuser

/*
#include <errno.h>
#include <vhostuser/vhostuser.h>
*/
import "C"

import (
	"io"
	"math"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Vring is one virtqueue of a daemon. Pop, Push, PushMany, Unpop, Notify,
// SetKicks, Pending, ReadGuest and WriteGuest work only inside a callback of
// this queue (HandleQueue, QueueStarted, QueueStopped), in the goroutine the
// callback runs in; elsewhere they return ErrNotInCallback. Index, Size,
// IsStarted, IsEnabled, IsBroken and Stats may be called from anywhere.
type Vring struct {
	c     *C.vhu_vring
	index int
	// depth counts the callbacks of this queue running now (nested calls
	// are possible in principle); only the queue's thread changes it.
	depth atomic.Int32
	// Chains popped in the current callback; pushed or put back ones are
	// nil. live counts the others.
	outstanding []*Chain
	live        int
}

// Chain is a descriptor chain popped from a Vring. Its buffers are guest
// memory. A chain is valid until it is pushed or put back, and at the
// latest until the callback that popped it returns: then every chain still
// outstanding is put back for the next pop (newest first; one that cannot
// be put back any more, because a chain popped after it was pushed, goes
// to the used ring with 0 bytes written). After that, Head, Readable,
// Writable, ReadableLen and WritableLen panic, ReadAt, WriteAt and
// Vring.Push/Unpop return ErrStaleChain. The byte slices from Readable and
// Writable are not tracked: never keep them past the chain's life.
type Chain struct {
	vr       *Vring
	c        *C.vhu_chain
	slot     int
	readable [][]byte
	writable [][]byte
}

const staleChainPanic = "vhostuser: descriptor chain used after Push/Unpop or after the callback that popped it returned"

// Index returns the queue index.
func (vr *Vring) Index() int { return vr.index }

// Size returns the queue size the front-end set (0 before it did).
func (vr *Vring) Size() int { return int(C.vhu_vring_size(vr.c)) }

// IsStarted reports whether the queue runs (kick fd received, rings mapped).
func (vr *Vring) IsStarted() bool { return C.vhu_vring_is_started(vr.c) != 0 }

// IsEnabled reports whether the front-end enabled the queue.
func (vr *Vring) IsEnabled() bool { return C.vhu_vring_is_enabled(vr.c) != 0 }

// IsBroken reports whether the queue was found corrupt; it stays untouched
// until the front-end sets it up anew.
func (vr *Vring) IsBroken() bool { return C.vhu_vring_is_broken(vr.c) != 0 }

// InCallback reports whether a callback of this queue is running now.
func (vr *Vring) InCallback() bool { return vr.depth.Load() > 0 }

// VringStats are a queue's counters for the current session.
type VringStats struct {
	Chains        uint64 // chains pushed to the used ring
	BytesRead     uint64 // device-readable bytes of pushed chains
	BytesWritten  uint64 // bytes reported written by Push
	Notifications uint64 // call fd signalled
	Suppressed    uint64 // Notify calls the driver did not want
	Kicks         uint64 // kicks received
	Errors        uint64 // chains rejected as malformed
}

// Stats returns the queue's counters (safe from any goroutine).
func (vr *Vring) Stats() (VringStats, error) {
	var s C.vhu_vring_stats
	s.struct_size = C.size_t(unsafe.Sizeof(s))
	if err := statusError("vring stats", C.vhu_vring_get_stats(vr.c, &s)); err != nil {
		return VringStats{}, err
	}
	return VringStats{
		Chains:        uint64(s.chains),
		BytesRead:     uint64(s.bytes_read),
		BytesWritten:  uint64(s.bytes_written),
		Notifications: uint64(s.notifications),
		Suppressed:    uint64(s.suppressed),
		Kicks:         uint64(s.kicks),
		Errors:        uint64(s.errors),
	}, nil
}

func (vr *Vring) enter() { vr.depth.Add(1) }

// leave ends a callback: the outermost one puts back what was not pushed
// and invalidates every chain popped in it.
func (vr *Vring) leave() {
	if vr.depth.Load() == 1 && vr.live > 0 {
		for i := len(vr.outstanding) - 1; i >= 0; i-- {
			ch := vr.outstanding[i]
			if ch == nil {
				continue
			}
			if C.vhu_vring_unpop(vr.c, ch.c) != 0 {
				C.vhu_vring_push(vr.c, ch.c, 0)
			}
			ch.invalidate()
		}
	}
	if vr.depth.Load() == 1 {
		clear(vr.outstanding)
		vr.outstanding = vr.outstanding[:0]
		vr.live = 0
	}
	vr.depth.Add(-1)
}

func (vr *Vring) forget(ch *Chain) {
	vr.outstanding[ch.slot] = nil
	vr.live--
	if vr.live == 0 {
		vr.outstanding = vr.outstanding[:0]
	}
	ch.invalidate()
}

func (ch *Chain) invalidate() {
	ch.c = nil
	ch.readable = nil
	ch.writable = nil
}

// Pop takes the next available chain. It returns (nil, nil) when the
// driver has made nothing available; an *Error with Code EIO when the ring
// is broken, ENOTCONN when the queue is not started.
func (vr *Vring) Pop() (*Chain, error) {
	if !vr.InCallback() {
		return nil, ErrNotInCallback
	}
	var c *C.vhu_chain
	rc := C.vhu_vring_pop(vr.c, &c)
	if rc == -C.EAGAIN {
		return nil, nil
	}
	if rc != 0 {
		return nil, statusError("pop", rc)
	}
	ch := &Chain{vr: vr, c: c, slot: len(vr.outstanding)}
	vr.outstanding = append(vr.outstanding, ch)
	vr.live++
	return ch, nil
}

func (vr *Vring) own(ch *Chain) error {
	if !vr.InCallback() {
		return ErrNotInCallback
	}
	if ch == nil || ch.c == nil {
		return ErrStaleChain
	}
	if ch.vr != vr {
		return ErrForeignChain
	}
	return nil
}

// Push returns ch to the driver with written bytes written into its
// device-writable buffers. ch is invalid afterwards, also on error (EINVAL:
// written exceeded the writable length and was clamped; ENOTCONN: the
// queue stopped; EIO: the ring is broken).
func (vr *Vring) Push(ch *Chain, written int) error {
	if err := vr.own(ch); err != nil {
		return err
	}
	if written < 0 || written > math.MaxUint32 {
		written = math.MaxUint32 // the library clamps it and says EINVAL
	}
	rc := C.vhu_vring_push(vr.c, ch.c, C.uint32_t(written))
	vr.forget(ch)
	return statusError("push", rc)
}

// PushMany pushes chains[i] with written[i] bytes each and publishes them
// with one used-index update (the driver sees all or none of them). Every
// chain is invalid afterwards, unless PushMany returns ErrStaleChain,
// ErrForeignChain, ErrNotInCallback or an EINVAL *Error for mismatched
// arguments, in which case nothing was pushed.
func (vr *Vring) PushMany(chains []*Chain, written []int) error {
	if len(chains) != len(written) || len(chains) > math.MaxUint32 {
		return &Error{Op: "push many", Code: syscall.EINVAL, Message: "one written count per chain"}
	}
	if len(chains) == 0 {
		return nil
	}
	cc := make([]*C.vhu_chain, len(chains))
	cw := make([]C.uint32_t, len(chains))
	seen := make(map[*Chain]bool, len(chains))
	for i, ch := range chains {
		if err := vr.own(ch); err != nil {
			return err
		}
		if seen[ch] {
			return &Error{Op: "push many", Code: syscall.EINVAL, Message: "a chain appears twice"}
		}
		seen[ch] = true
		cc[i] = ch.c
		w := written[i]
		if w < 0 || w > math.MaxUint32 {
			w = math.MaxUint32
		}
		cw[i] = C.uint32_t(w)
	}
	rc := C.vhu_vring_push_many(vr.c, &cc[0], &cw[0], C.unsigned(len(chains)))
	for _, ch := range chains {
		vr.forget(ch)
	}
	return statusError("push many", rc)
}

// Unpop puts ch back so that the next Pop returns it again. Chains are put
// back newest first; on error (EINVAL) ch stays valid.
func (vr *Vring) Unpop(ch *Chain) error {
	if err := vr.own(ch); err != nil {
		return err
	}
	if err := statusError("unpop", C.vhu_vring_unpop(vr.c, ch.c)); err != nil {
		return err
	}
	vr.forget(ch)
	return nil
}

// Notify signals the front-end if the driver wants an interrupt for what
// was pushed; it reports whether it signalled.
func (vr *Vring) Notify() (bool, error) {
	if !vr.InCallback() {
		return false, ErrNotInCallback
	}
	rc := C.vhu_vring_notify(vr.c)
	return rc > 0, statusError("notify", rc)
}

// SetKicks enables or disables driver notifications for a polling loop;
// after enabling, look at Pending once more.
func (vr *Vring) SetKicks(enable bool) error {
	if !vr.InCallback() {
		return ErrNotInCallback
	}
	return statusError("set kicks", C.vhu_vring_set_kicks(vr.c, cBool(enable)))
}

// Pending reports whether the driver made chains available that were not
// popped (false outside a callback of this queue).
func (vr *Vring) Pending() bool {
	return vr.InCallback() && C.vhu_vring_pending(vr.c) > 0
}

// ReadGuest copies guest memory at guest-physical address gpa into buf
// through this queue's view of the memory table.
func (vr *Vring) ReadGuest(gpa uint64, buf []byte) error {
	if !vr.InCallback() {
		return ErrNotInCallback
	}
	if len(buf) == 0 {
		return nil
	}
	return statusError("read guest", C.vhu_vring_read_guest(vr.c, C.uint64_t(gpa),
		unsafe.Pointer(&buf[0]), C.size_t(len(buf))))
}

// WriteGuest copies data into guest memory at guest-physical address gpa.
func (vr *Vring) WriteGuest(gpa uint64, data []byte) error {
	if !vr.InCallback() {
		return ErrNotInCallback
	}
	if len(data) == 0 {
		return nil
	}
	return statusError("write guest", C.vhu_vring_write_guest(vr.c, C.uint64_t(gpa),
		unsafe.Pointer(&data[0]), C.size_t(len(data))))
}

func (ch *Chain) live() *C.vhu_chain {
	if ch.c == nil {
		panic(staleChainPanic)
	}
	return ch.c
}

// Valid reports whether the chain may still be used.
func (ch *Chain) Valid() bool { return ch.c != nil }

// Vring returns the queue the chain was popped from.
func (ch *Chain) Vring() *Vring { return ch.vr }

// Head returns the chain's head descriptor index.
func (ch *Chain) Head() uint16 { return uint16(C.vhu_chain_head(ch.live())) }

// Readable returns the device-readable (driver to device) buffers, in chain
// order, as slices over guest memory. Do not keep them past the chain's life.
func (ch *Chain) Readable() [][]byte {
	c := ch.live()
	if ch.readable == nil {
		var n C.unsigned
		iov := C.vhu_chain_readable(c, &n)
		ch.readable = iovecSlices(iov, n)
	}
	return ch.readable
}

// Writable returns the device-writable buffers, in chain order, as slices
// over guest memory. Do not keep them past the chain's life.
func (ch *Chain) Writable() [][]byte {
	c := ch.live()
	if ch.writable == nil {
		var n C.unsigned
		iov := C.vhu_chain_writable(c, &n)
		ch.writable = iovecSlices(iov, n)
	}
	return ch.writable
}

// ReadableLen returns the total length of the device-readable buffers.
func (ch *Chain) ReadableLen() int { return int(C.vhu_chain_readable_len(ch.live())) }

// WritableLen returns the total length of the device-writable buffers.
func (ch *Chain) WritableLen() int { return int(C.vhu_chain_writable_len(ch.live())) }

// ReadAt copies the readable buffers' bytes at offset off into p
// (io.ReaderAt: io.EOF when fewer than len(p) bytes were there).
func (ch *Chain) ReadAt(p []byte, off int64) (int, error) {
	if ch.c == nil {
		return 0, ErrStaleChain
	}
	if off < 0 {
		return 0, &Error{Op: "chain read", Code: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := int(C.vhu_chain_read(ch.c, C.size_t(off), unsafe.Pointer(&p[0]), C.size_t(len(p))))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt copies p into the writable buffers at offset off
// (io.WriterAt: io.ErrShortWrite when they end before p does).
func (ch *Chain) WriteAt(p []byte, off int64) (int, error) {
	if ch.c == nil {
		return 0, ErrStaleChain
	}
	if off < 0 {
		return 0, &Error{Op: "chain write", Code: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := int(C.vhu_chain_write(ch.c, C.size_t(off), unsafe.Pointer(&p[0]), C.size_t(len(p))))
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}
