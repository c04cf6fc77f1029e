package vhostuser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A few vhost-user requests, spoken by hand to reach the configuration
// and feature hooks (vhu-check does not use the configuration space).
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetConfig           = 24
	reqSetConfig           = 25

	flagVersion   = 0x1
	flagReply     = 0x4
	flagNeedReply = 0x8
)

type wireConn struct {
	t *testing.T
	c net.Conn
}

func dialBackend(t *testing.T, sock string) *wireConn {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &wireConn{t: t, c: c}
}

func (w *wireConn) send(req, flags uint32, payload []byte) {
	w.t.Helper()
	msg := binary.LittleEndian.AppendUint32(nil, req)
	msg = binary.LittleEndian.AppendUint32(msg, flagVersion|flags)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(payload)))
	if _, err := w.c.Write(append(msg, payload...)); err != nil {
		w.t.Fatalf("sending request %d: %v", req, err)
	}
}

func (w *wireConn) recv(req uint32) []byte {
	w.t.Helper()
	var hdr [12]byte
	if _, err := io.ReadFull(w.c, hdr[:]); err != nil {
		w.t.Fatalf("reply to request %d: %v", req, err)
	}
	got := binary.LittleEndian.Uint32(hdr[0:])
	flags := binary.LittleEndian.Uint32(hdr[4:])
	body := make([]byte, binary.LittleEndian.Uint32(hdr[8:]))
	if _, err := io.ReadFull(w.c, body); err != nil {
		w.t.Fatalf("reply body to request %d: %v", req, err)
	}
	if got != req || flags&flagReply == 0 {
		w.t.Fatalf("reply header: request %d flags %#x, want request %d with the reply flag", got, flags, req)
	}
	return body
}

func (w *wireConn) getU64(req uint32) uint64 {
	w.t.Helper()
	w.send(req, 0, nil)
	body := w.recv(req)
	if len(body) != 8 {
		w.t.Fatalf("request %d: %d-byte reply, want 8", req, len(body))
	}
	return binary.LittleEndian.Uint64(body)
}

// setU64 sends a u64 request asking for an ack and returns the ack (0 ok).
func (w *wireConn) setU64(req uint32, v uint64) uint64 {
	w.t.Helper()
	w.send(req, flagNeedReply, binary.LittleEndian.AppendUint64(nil, v))
	body := w.recv(req)
	if len(body) != 8 {
		w.t.Fatalf("ack of request %d: %d bytes", req, len(body))
	}
	return binary.LittleEndian.Uint64(body)
}

func configPayload(offset, size, flags uint32, data []byte) []byte {
	p := binary.LittleEndian.AppendUint32(nil, offset)
	p = binary.LittleEndian.AppendUint32(p, size)
	p = binary.LittleEndian.AppendUint32(p, flags)
	if data == nil {
		data = make([]byte, size)
	}
	return append(p, data...)
}

// getConfig returns the configuration bytes, or nil for an error reply.
func (w *wireConn) getConfig(offset, size uint32) []byte {
	w.t.Helper()
	w.send(reqGetConfig, 0, configPayload(offset, size, 0, nil))
	body := w.recv(reqGetConfig)
	if len(body) == 0 {
		return nil
	}
	if len(body) != 12+int(size) {
		w.t.Fatalf("GET_CONFIG reply of %d bytes for size %d", len(body), size)
	}
	return body[12:]
}

func (w *wireConn) setConfig(offset uint32, data []byte, flags uint32) uint64 {
	w.t.Helper()
	w.send(reqSetConfig, flagNeedReply, configPayload(offset, uint32(len(data)), flags, data))
	body := w.recv(reqSetConfig)
	return binary.LittleEndian.Uint64(body)
}

const deviceBit = 1 << 5 // a device-specific feature bit

// configBackend has a 64-byte configuration space and every feature hook.
type configBackend struct {
	mu     sync.Mutex
	space  [64]byte
	writes []string
	acked  atomic.Uint64
	resets atomic.Int64
}

func (b *configBackend) Features() uint64   { return DefaultFeatures | deviceBit }
func (b *configBackend) HandleQueue(*Vring) {}
func (b *configBackend) ProtocolFeatures() uint64 {
	return ProtocolConfig | ProtocolReplyAck | ProtocolStatus
}

// FeaturesAcked refuses a driver that does not take the device bit.
func (b *configBackend) FeaturesAcked(f uint64) error {
	if f&deviceBit == 0 {
		return fmt.Errorf("the device needs feature bit 5: %w", syscall.EPERM)
	}
	b.acked.Store(f)
	return nil
}

func (b *configBackend) ReadConfig(offset uint32, buf []byte) error {
	if offset+uint32(len(buf)) > uint32(len(b.space)) {
		return syscall.ERANGE
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(buf, b.space[offset:])
	return nil
}

func (b *configBackend) WriteConfig(offset uint32, data []byte, flags uint32) error {
	if offset+uint32(len(data)) > uint32(len(b.space)) {
		return errors.New("past the configuration space")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(b.space[offset:], data)
	b.writes = append(b.writes, fmt.Sprintf("%d+%d/%d", offset, len(data), flags))
	return nil
}

func (b *configBackend) DeviceReset() { b.resets.Add(1) }

func startDaemon(t *testing.T, b Backend) (*Daemon, string) {
	t.Helper()
	d, err := NewDaemon(b, Options{NumQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "cfg.sock")
	if err := d.Listen(sock); err != nil {
		d.Close()
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		d.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if err := d.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
		d.Close()
	})
	return d, sock
}

func TestConfigSpaceAndFeatureHooks(t *testing.T) {
	b := &configBackend{}
	for i := range b.space {
		b.space[i] = byte(0x80 + i)
	}
	initial := b.space // a copy, made before the daemon's threads touch it
	d, sock := startDaemon(t, b)
	w := dialBackend(t, sock)
	defer w.c.Close()

	f := w.getU64(reqGetFeatures)
	if want := DefaultFeatures | deviceBit | FeatureProtocolFeatures; f != want {
		t.Errorf("GET_FEATURES = %#x, want %#x", f, want)
	}
	pf := w.getU64(reqGetProtocolFeatures)
	if want := ProtocolConfig | ProtocolReplyAck | ProtocolStatus; pf != want {
		t.Errorf("GET_PROTOCOL_FEATURES = %#x, want %#x (what ProtocolFeatures asked for)", pf, want)
	}
	w.send(reqSetProtocolFeatures, 0, binary.LittleEndian.AppendUint64(nil, pf))
	w.send(reqSetOwner, 0, nil)

	// FeaturesAcked: an error becomes a failed request, nil accepts.
	if ack := w.setU64(reqSetFeatures, FeatureVersion1|FeatureProtocolFeatures); ack == 0 {
		t.Error("SET_FEATURES without the device bit was acked although FeaturesAcked refused it")
	}
	if ack := w.setU64(reqSetFeatures, f); ack != 0 {
		t.Errorf("SET_FEATURES %#x: ack %d", f, ack)
	}
	if got := b.acked.Load(); got != f {
		t.Errorf("FeaturesAcked saw %#x, want %#x", got, f)
	}
	if got := d.AckedFeatures(); got != f {
		t.Errorf("AckedFeatures() = %#x, want %#x", got, f)
	}
	if got := d.ProtocolFeatures(); got != pf {
		t.Errorf("ProtocolFeatures() = %#x, want %#x", got, pf)
	}
	if !d.Connected() {
		t.Error("Connected() is false with a front-end connected")
	}

	// ReadConfig fills what GET_CONFIG returns.
	if got := w.getConfig(0, 64); !bytes.Equal(got, initial[:]) {
		t.Errorf("GET_CONFIG 0+64 = % x", got)
	}
	if got := w.getConfig(10, 4); !bytes.Equal(got, []byte{0x8a, 0x8b, 0x8c, 0x8d}) {
		t.Errorf("GET_CONFIG 10+4 = % x", got)
	}
	// ReadConfig's error: an error reply (empty body).
	if got := w.getConfig(60, 8); got != nil {
		t.Errorf("GET_CONFIG 60+8 past the space = % x, want an error reply", got)
	}
	// WriteConfig sees SET_CONFIG; a later GET_CONFIG reads it back.
	if ack := w.setConfig(4, []byte("go!"), 0); ack != 0 {
		t.Errorf("SET_CONFIG ack %d", ack)
	}
	if ack := w.setConfig(62, []byte("xyz"), 1); ack == 0 {
		t.Error("SET_CONFIG past the space was acked although WriteConfig failed")
	}
	if got := w.getConfig(3, 5); !bytes.Equal(got, []byte{0x83, 'g', 'o', '!', 0x87}) {
		t.Errorf("GET_CONFIG after SET_CONFIG = % x", got)
	}
	b.mu.Lock()
	writes := fmt.Sprint(b.writes)
	b.mu.Unlock()
	if writes != "[4+3/0]" {
		t.Errorf("WriteConfig calls: %s, want [4+3/0]", writes)
	}

	// Hanging up resets the device.
	w.c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for b.resets.Load() == 0 || d.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("after the front-end hung up: %d resets, connected %v", b.resets.Load(), d.Connected())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoConfigReaderNoConfigFeature(t *testing.T) {
	_, sock := startDaemon(t, &nopBackend{})
	w := dialBackend(t, sock)
	defer w.c.Close()
	if pf := w.getU64(reqGetProtocolFeatures); pf&ProtocolConfig != 0 {
		t.Errorf("GET_PROTOCOL_FEATURES = %#x offers CONFIG without a ConfigReader", pf)
	}
	if f := w.getU64(reqGetFeatures); f != DefaultFeatures|FeatureProtocolFeatures {
		t.Errorf("GET_FEATURES = %#x, want %#x", f, DefaultFeatures|FeatureProtocolFeatures)
	}
}
