// Command rng is a vhost-user virtio-rng device written with the Go
// binding: every device-writable buffer the driver posts on the request
// queue is filled from an entropy source (default /dev/urandom). It serves
// front-ends one after another until SIGINT or SIGTERM.
//
//	rng --socket-path=PATH [--source=FILE] [--verbose]
//
// A regular file as source is read in a loop (handy for tests); anything
// else (a character device, a pipe) is read as a stream.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"libvhostuser-cxx/bindings/go/vhostuser"
)

// rng is the device: one request queue, no configuration space.
type rng struct {
	src    *os.File
	isFile bool
}

func (r *rng) Features() uint64 { return vhostuser.DefaultFeatures }

// fill reads len(buf) bytes from the source, starting a regular file over
// at its end; it returns how many it got before an error.
func (r *rng) fill(buf []byte) int {
	done := 0
	for done < len(buf) {
		n, err := r.src.Read(buf[done:])
		done += n
		if err == io.EOF && r.isFile {
			if _, err := r.src.Seek(0, io.SeekStart); err != nil {
				return done
			}
			continue
		}
		if err != nil && n == 0 {
			return done
		}
	}
	return done
}

func (r *rng) HandleQueue(vr *vhostuser.Vring) {
	for {
		ch, err := vr.Pop()
		if ch == nil {
			if errors.Is(err, syscall.EIO) {
				fmt.Fprintf(os.Stderr, "rng: queue %d is broken; waiting for a reset\n", vr.Index())
			}
			break
		}
		written := 0
		for _, buf := range ch.Writable() {
			n := r.fill(buf)
			written += n
			if n < len(buf) {
				break
			}
		}
		if err := vr.Push(ch, written); err != nil {
			fmt.Fprintf(os.Stderr, "rng: push: %v\n", err)
		}
	}
	if _, err := vr.Notify(); err != nil {
		fmt.Fprintf(os.Stderr, "rng: notify: %v\n", err)
	}
}

func main() {
	fs := flag.NewFlagSet("rng", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: rng --socket-path=PATH [--source=FILE] [--verbose]
  --socket-path=PATH  unix socket to listen on for the front-end (QEMU:
                      -chardev socket,path=PATH -device vhost-user-rng-pci)
  --source=FILE       entropy source (default /dev/urandom); a regular
                      file is read in a loop
  --verbose           log protocol events to stderr
`)
	}
	sock := fs.String("socket-path", "", "unix socket to listen on")
	source := fs.String("source", "/dev/urandom", "entropy source")
	verbose := fs.Bool("verbose", false, "log protocol events")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *sock == "" || fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	os.Exit(run(*sock, *source, *verbose))
}

func run(sock, source string, verbose bool) int {
	src, err := os.Open(source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}
	r := &rng{src: src, isFile: st.Mode().IsRegular()}
	if r.isFile && st.Size() == 0 {
		fmt.Fprintf(os.Stderr, "rng: %s is empty\n", source)
		return 1
	}

	d, err := vhostuser.NewDaemon(r, vhostuser.Options{NumQueues: 1, MaxQueueSize: 1024})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}
	defer d.Close()
	level := vhostuser.LogWarning
	if verbose {
		level = vhostuser.LogDebug
	}
	if err := d.SetLog(func(l vhostuser.LogLevel, msg string) {
		fmt.Fprintf(os.Stderr, "rng: %s: %s\n", l, msg)
	}, level); err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}
	if err := d.Listen(sock); err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGPIPE)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		// Stop is a no-op on a daemon that does not run yet: repeat it
		// until Run has returned.
		for {
			d.Stop()
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	if err := d.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "rng: %v\n", err)
		return 1
	}
	return 0
}
