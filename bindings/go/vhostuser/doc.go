// Package vhostuser writes vhost-user back-end daemons in Go on top of
// libvhostuser-cxx (linked with `#cgo pkg-config: vhostuser`).
//
// A device is a Backend: Features and HandleQueue, plus any of the optional
// hook interfaces (ProtocolFeaturer, FeaturesAcker, ConfigReader,
// ConfigWriter, QueueStarter, QueueStopper, MemoryWatcher, Resetter). The
// library calls only the hooks the value has; a back-end without
// ConfigReader, for example, does not offer the CONFIG protocol feature.
//
//	d, err := vhostuser.NewDaemon(dev, vhostuser.Options{NumQueues: 1})
//	if err != nil { ... }
//	defer d.Close()
//	if err := d.Listen("/tmp/dev.sock"); err != nil { ... }
//	go func() { <-sigs; d.Stop() }()
//	err = d.Run() // serves front-ends one after another until Stop
//
// The data path:
//
//	func (dev *device) HandleQueue(vr *vhostuser.Vring) {
//		for {
//			ch, err := vr.Pop()
//			if ch == nil { break } // err != nil: the ring is broken or stopped
//			n := 0
//			for _, buf := range ch.Writable() { n += fill(buf) }
//			vr.Push(ch, n)
//		}
//		vr.Notify()
//	}
//
// # Threads and lifetimes
//
// Hooks run on the library's threads: Features, the feature, configuration,
// memory and reset hooks on the control thread, HandleQueue, QueueStarted
// and QueueStopped on the worker that owns the queue. A Vring's ring
// operations (Pop, Push, Unpop, Notify, ...) work only inside a callback of
// that queue and in the goroutine it runs in; called elsewhere they return
// ErrNotInCallback. (Another goroutine calling them while the callback runs
// is not detected: don't.)
//
// A Chain's buffers are guest memory, viewed as byte slices without a copy
// (unsafe.Slice over the library's iovecs). A chain is valid until it is
// pushed or put back, and at the latest until the callback that popped it
// returns; chains the callback did not push are then put back (popped again
// later). A stale chain is rejected: Push, Unpop, ReadAt and WriteAt return
// ErrStaleChain, Head, Readable, Writable, ReadableLen and WritableLen
// panic. Slices obtained from Readable or Writable must not be kept past
// the chain's life: the binding cannot revoke them.
//
// # Errors
//
// Library failures are *Error values carrying the operation, the errno as a
// syscall.Errno (errors.Is(err, syscall.EBUSY) works) and the library's
// message. Errors returned by hooks become negative errnos for the library
// through Status: a syscall.Errno or *Error anywhere in the wrapped chain
// gives its code, any other error gives EIO.
//
// # Handles
//
// Each daemon hands the library a runtime/cgo.Handle as its user data; the
// library releases it through its user_data_free destructor when the
// daemon is closed (or when NewDaemon fails). LiveHandles counts the
// handles not yet released, so a test can check that nothing leaked.
package vhostuser
