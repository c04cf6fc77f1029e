// SPDX-License-Identifier: Apache-2.0
//! Safe Rust interface to libvhostuser-cxx, a framework for vhost-user
//! back-end daemons.
//!
//! Implement [`Backend`] for your device, hand it to [`Daemon::new`], listen
//! on a unix socket and run:
//!
//! ```no_run
//! use vhostuser::{Backend, Daemon, Vring};
//!
//! struct Zeroes;
//! impl Backend for Zeroes {
//!     fn num_queues(&self) -> u16 {
//!         1
//!     }
//!     fn handle_queue(&self, vring: &Vring<'_>) {
//!         while let Ok(Some(mut chain)) = vring.pop() {
//!             let mut written = 0;
//!             for buf in chain.writable() {
//!                 buf.fill(0);
//!                 written += buf.len() as u32;
//!             }
//!             let _ = vring.push(chain, written);
//!         }
//!         let _ = vring.notify();
//!     }
//! }
//!
//! let mut daemon = Daemon::new(Zeroes).unwrap();
//! daemon.listen("/tmp/zero.sock").unwrap();
//! daemon.stop_on_signals(&[vhostuser::SIGINT, vhostuser::SIGTERM]).unwrap();
//! daemon.run().unwrap();
//! ```
//!
//! The backend is boxed and owned by the C library, which drops it exactly
//! once when the [`Daemon`] is dropped. Its callbacks run on the daemon's
//! control thread and worker threads (hence `Send + Sync`); a panic in one
//! of them is caught at the C boundary, logged, and turned into an error
//! reply (or nothing, for callbacks without a result).
//!
//! Chains ([`DescChain`]) and the guest-memory slices they hand out borrow
//! from the handler call that popped them: they cannot be kept after it
//! returns, sent to another thread, or used after being pushed (all of this
//! is checked at compile time).

use std::any::Any;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use vhostuser_sys as sys;

// ---- Errors ------------------------------------------------------------------

/// errno values the library and back-ends commonly use.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const EIO: i32 = 5;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EFAULT: i32 = 14;
    pub const EBUSY: i32 = 16;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOTSUP: i32 = 95;
    pub const ENOTCONN: i32 = 107;
    pub const ETIMEDOUT: i32 = 110;
}

/// An error from the library or a back-end: an errno value and a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    message: String,
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn strerror(status: c_int) -> String {
    // SAFETY: vhu_strerror never returns NULL and the string is static.
    unsafe { CStr::from_ptr(sys::vhu_strerror(status)) }.to_string_lossy().into_owned()
}

impl Error {
    /// An error for `errno` (positive or negative) with the library's
    /// description of it as message.
    pub fn from_errno(errno: i32) -> Error {
        let errno = errno.abs();
        Error { errno, message: strerror(-errno) }
    }

    /// An error for `errno` (positive or negative) with a message of yours.
    pub fn new(errno: i32, message: impl Into<String>) -> Error {
        Error { errno: errno.abs(), message: message.into() }
    }

    /// The errno value (positive, e.g. `EINVAL`).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The status code as the C API returns it (negative errno).
    pub fn code(&self) -> i32 {
        -self.errno
    }

    /// The detailed message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Turns a status (0 or negative errno) into a Result.
    fn check(status: c_int) -> Result<()> {
        if status >= 0 {
            Ok(())
        } else {
            Err(Error::from_errno(status))
        }
    }

    /// Turns a status plus the `vhu_error` out-parameter into a Result and
    /// frees the `vhu_error`.
    fn take(status: c_int, err: *mut sys::vhu_error) -> Result<()> {
        let result = if status >= 0 {
            Ok(())
        } else if err.is_null() {
            Err(Error::from_errno(status))
        } else {
            // SAFETY: err came from the library and is freed only below.
            let (code, msg) =
                unsafe { (sys::vhu_error_code(err), CStr::from_ptr(sys::vhu_error_message(err))) };
            let code = if code < 0 { code } else { status };
            Err(Error::new(code, msg.to_string_lossy()))
        };
        // SAFETY: NULL is accepted; otherwise freed exactly once here.
        unsafe { sys::vhu_error_free(err) };
        result
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error {{ errno: {}, message: {:?} }}", self.errno, self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(e.raw_os_error().unwrap_or(errno::EIO), e.to_string())
    }
}

// ---- Constants -------------------------------------------------------------------

/// Virtio feature bits used by the API.
pub mod features {
    use super::sys;
    pub const RING_INDIRECT_DESC: u64 = sys::VHU_F_RING_INDIRECT_DESC;
    pub const RING_EVENT_IDX: u64 = sys::VHU_F_RING_EVENT_IDX;
    pub const PROTOCOL_FEATURES: u64 = sys::VHU_F_PROTOCOL_FEATURES;
    pub const VERSION_1: u64 = sys::VHU_F_VERSION_1;
    /// What the library offers when a back-end does not say.
    pub const DEFAULT: u64 = VERSION_1 | RING_INDIRECT_DESC | RING_EVENT_IDX;
}

/// vhost-user protocol feature bits.
pub mod protocol_features {
    use super::sys;
    pub const MQ: u64 = sys::VHU_PROTOCOL_F_MQ;
    pub const REPLY_ACK: u64 = sys::VHU_PROTOCOL_F_REPLY_ACK;
    pub const BACKEND_REQ: u64 = sys::VHU_PROTOCOL_F_BACKEND_REQ;
    pub const CONFIG: u64 = sys::VHU_PROTOCOL_F_CONFIG;
    pub const RESET_DEVICE: u64 = sys::VHU_PROTOCOL_F_RESET_DEVICE;
    pub const CONFIGURE_MEM_SLOTS: u64 = sys::VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS;
    pub const STATUS: u64 = sys::VHU_PROTOCOL_F_STATUS;
    /// Everything the library implements (CONFIG is dropped by the library
    /// unless the back-end has a configuration space).
    pub const ALL: u64 =
        MQ | REPLY_ACK | BACKEND_REQ | CONFIG | RESET_DEVICE | CONFIGURE_MEM_SLOTS | STATUS;
}

/// Signal numbers for [`Daemon::stop_on_signals`] (Linux).
pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGUSR1: i32 = 10;
pub const SIGUSR2: i32 = 12;
pub const SIGTERM: i32 = 15;

/// The run-time version (major, minor, patch) of the loaded C library.
pub fn library_version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: valid out-pointers.
    unsafe { sys::vhu_version(&mut a, &mut b, &mut c) };
    (a, b, c)
}

// ---- Logging -------------------------------------------------------------------

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Error = 0,
    Warning = 1,
    Info = 2,
    Debug = 3,
}

impl LogLevel {
    fn from_raw(level: sys::vhu_log_level) -> LogLevel {
        match level {
            sys::VHU_LOG_ERROR => LogLevel::Error,
            sys::VHU_LOG_WARNING => LogLevel::Warning,
            sys::VHU_LOG_INFO => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }

    /// "error", "warning", "info" or "debug".
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

type LogFn = dyn Fn(LogLevel, &str) + Send + Sync;

// ---- The back-end trait -----------------------------------------------------------

/// A vhost-user device. Only [`num_queues`](Backend::num_queues) and
/// [`handle_queue`](Backend::handle_queue) are required; every other hook has
/// the library's default behaviour.
///
/// Callbacks run on the daemon's control thread (negotiation, config,
/// memory, reset) and on its worker threads (queue hooks), possibly at the
/// same time, so shared state needs interior mutability (`Mutex`, atomics).
pub trait Backend: Send + Sync + 'static {
    /// Whether the device has a configuration space: when true,
    /// [`get_config`](Backend::get_config) is installed and the CONFIG
    /// protocol feature can be negotiated.
    const HAS_CONFIG: bool = false;

    /// Number of virtqueues (1..=256). Read once, by [`Daemon::new`].
    fn num_queues(&self) -> u16;

    /// Largest queue size the front-end may set (a power of two up to
    /// 32768); 0 means 1024. Read once, by [`Daemon::new`].
    fn max_queue_size(&self) -> u16 {
        0
    }

    /// The answer to GET_QUEUE_NUM in the device type's unit (queue pairs
    /// for virtio-net); 0 means `num_queues`. Read once, by [`Daemon::new`].
    fn queue_num(&self) -> u16 {
        0
    }

    /// Device feature bits offered to the front-end.
    fn features(&self) -> u64 {
        features::DEFAULT
    }

    /// Protocol features the device wants (intersected with what the
    /// library implements).
    fn protocol_features(&self) -> u64 {
        protocol_features::ALL
    }

    /// The front-end acknowledged `features`; an error fails SET_FEATURES.
    fn features_acked(&self, _features: u64) -> Result<()> {
        Ok(())
    }

    /// GET_CONFIG: fill `buf` with configuration space from `offset`. Used
    /// only when [`HAS_CONFIG`](Backend::HAS_CONFIG) is true.
    fn get_config(&self, _offset: u32, _buf: &mut [u8]) -> Result<()> {
        Err(Error::from_errno(errno::ENOTSUP))
    }

    /// SET_CONFIG: the front-end wrote `data` at `offset` (`flags` 0 for a
    /// driver write, 1 for live migration).
    fn set_config(&self, _offset: u32, _data: &[u8], _flags: u32) -> Result<()> {
        Err(Error::from_errno(errno::ENOTSUP))
    }

    /// The data path: `vring` has work. Pop chains, push them, notify.
    fn handle_queue(&self, vring: &Vring<'_>);

    /// The queue was started (worker thread).
    fn queue_started(&self, _vring: &Vring<'_>) {}

    /// The queue is being stopped; finish in-flight work before returning.
    fn queue_stopped(&self, _vring: &Vring<'_>) {}

    /// The guest memory table changed.
    fn memory_changed(&self) {}

    /// The device was reset or the front-end went away.
    fn device_reset(&self) {}
}

/// What the library owns as user_data: the backend and a way to report
/// panics through the daemon's log callback.
struct Shared<B> {
    backend: B,
    log: Mutex<Option<(Arc<LogFn>, LogLevel)>>,
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

impl<B> Shared<B> {
    fn report_panic(&self, hook: &str, payload: &(dyn Any + Send)) {
        let msg = format!("panic in Backend::{hook}: {}", panic_text(payload));
        let log = self.log.lock().map(|g| g.clone()).unwrap_or(None);
        // The logger itself may panic: never let that unwind either.
        let logged = match log {
            Some((f, _)) => catch_unwind(AssertUnwindSafe(|| f(LogLevel::Error, &msg))).is_ok(),
            None => false,
        };
        if !logged {
            eprintln!("vhostuser: {msg}");
        }
    }
}

/// Runs `f` with the backend; a panic is reported and `on_panic` returned.
///
/// # Safety
/// `ud` must be the `Shared<B>` pointer handed to vhu_daemon_new.
unsafe fn call<B: Backend, R>(
    ud: *mut c_void,
    hook: &str,
    on_panic: R,
    f: impl FnOnce(&B) -> R,
) -> R {
    let shared = &*(ud as *const Shared<B>);
    match catch_unwind(AssertUnwindSafe(|| f(&shared.backend))) {
        Ok(r) => r,
        Err(payload) => {
            shared.report_panic(hook, &*payload);
            // Dropping a payload can panic too; forget it in that case.
            if catch_unwind(AssertUnwindSafe(move || drop(payload))).is_err() {
                eprintln!("vhostuser: panic while dropping a panic payload");
            }
            on_panic
        }
    }
}

fn status(r: Result<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) if e.errno > 0 => -e.errno,
        Err(_) => -errno::EIO,
    }
}

mod trampolines {
    use super::*;

    pub unsafe extern "C" fn get_features<B: Backend>(ud: *mut c_void) -> u64 {
        call::<B, _>(ud, "features", features::DEFAULT, |b| b.features())
    }
    pub unsafe extern "C" fn get_protocol_features<B: Backend>(ud: *mut c_void) -> u64 {
        call::<B, _>(ud, "protocol_features", protocol_features::ALL, |b| b.protocol_features())
    }
    pub unsafe extern "C" fn features_acked<B: Backend>(features: u64, ud: *mut c_void) -> c_int {
        call::<B, _>(ud, "features_acked", -errno::EIO, |b| status(b.features_acked(features)))
    }
    pub unsafe extern "C" fn get_config<B: Backend>(
        offset: u32,
        buf: *mut c_void,
        size: u32,
        ud: *mut c_void,
    ) -> c_int {
        call::<B, _>(ud, "get_config", -errno::EIO, |b| {
            let buf: &mut [u8] = if size == 0 || buf.is_null() {
                &mut []
            } else {
                // SAFETY: the library passes `size` writable bytes.
                unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, size as usize) }
            };
            status(b.get_config(offset, buf))
        })
    }
    pub unsafe extern "C" fn set_config<B: Backend>(
        offset: u32,
        buf: *const c_void,
        size: u32,
        flags: u32,
        ud: *mut c_void,
    ) -> c_int {
        call::<B, _>(ud, "set_config", -errno::EIO, |b| {
            let data: &[u8] = if size == 0 || buf.is_null() {
                &[]
            } else {
                // SAFETY: the library passes `size` readable bytes.
                unsafe { std::slice::from_raw_parts(buf as *const u8, size as usize) }
            };
            status(b.set_config(offset, data, flags))
        })
    }
    pub unsafe extern "C" fn handle_queue<B: Backend>(vr: *mut sys::vhu_vring, ud: *mut c_void) {
        let vring = Vring::from_raw(vr);
        let ok = call::<B, _>(ud, "handle_queue", false, |b| {
            b.handle_queue(&vring);
            true
        });
        if !ok {
            // Chains the handler held were pushed back (empty) as the panic
            // unwound; tell the driver about them.
            let _ = vring.notify();
        }
    }
    pub unsafe extern "C" fn queue_started<B: Backend>(vr: *mut sys::vhu_vring, ud: *mut c_void) {
        let vring = Vring::from_raw(vr);
        call::<B, _>(ud, "queue_started", (), |b| b.queue_started(&vring))
    }
    pub unsafe extern "C" fn queue_stopped<B: Backend>(vr: *mut sys::vhu_vring, ud: *mut c_void) {
        let vring = Vring::from_raw(vr);
        call::<B, _>(ud, "queue_stopped", (), |b| b.queue_stopped(&vring))
    }
    pub unsafe extern "C" fn memory_changed<B: Backend>(ud: *mut c_void) {
        call::<B, _>(ud, "memory_changed", (), |b| b.memory_changed())
    }
    pub unsafe extern "C" fn device_reset<B: Backend>(ud: *mut c_void) {
        call::<B, _>(ud, "device_reset", (), |b| b.device_reset())
    }
    pub unsafe extern "C" fn free<B: Backend>(ud: *mut c_void) {
        // SAFETY: ud is the Box<Shared<B>> leaked in Daemon::new; the
        // library calls this exactly once.
        let shared = unsafe { Box::from_raw(ud as *mut Shared<B>) };
        if catch_unwind(AssertUnwindSafe(move || drop(shared))).is_err() {
            eprintln!("vhostuser: panic while dropping the backend");
        }
    }
    pub unsafe extern "C" fn log(level: sys::vhu_log_level, msg: *const c_char, ud: *mut c_void) {
        // SAFETY: ud is the Box<Arc<LogFn>> owned by the Daemon, which
        // outlives the C daemon.
        let f = unsafe { &*(ud as *const Arc<LogFn>) };
        let text = if msg.is_null() {
            std::borrow::Cow::Borrowed("")
        } else {
            unsafe { CStr::from_ptr(msg) }.to_string_lossy()
        };
        if catch_unwind(AssertUnwindSafe(|| f(LogLevel::from_raw(level), &text))).is_err() {
            eprintln!("vhostuser: panic in the log callback");
        }
    }
}

// ---- Vrings and chains ------------------------------------------------------------------

/// A virtqueue, borrowed for the duration of one callback.
///
/// Not `Send`/`Sync`: a queue is served only by the thread that owns it.
pub struct Vring<'a> {
    raw: NonNull<sys::vhu_vring>,
    _call: PhantomData<&'a mut sys::vhu_vring>,
}

/// A copy of a queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VringStats {
    pub chains: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub notifications: u64,
    pub suppressed: u64,
    pub kicks: u64,
    pub errors: u64,
}

fn read_stats(vr: *const sys::vhu_vring) -> Result<VringStats> {
    let mut s = sys::vhu_vring_stats {
        struct_size: std::mem::size_of::<sys::vhu_vring_stats>(),
        ..Default::default()
    };
    // SAFETY: vr is a live vring; s is a valid out-struct with struct_size.
    Error::check(unsafe { sys::vhu_vring_get_stats(vr, &mut s) })?;
    Ok(VringStats {
        chains: s.chains,
        bytes_read: s.bytes_read,
        bytes_written: s.bytes_written,
        notifications: s.notifications,
        suppressed: s.suppressed,
        kicks: s.kicks,
        errors: s.errors,
    })
}

impl<'a> Vring<'a> {
    /// # Safety
    /// `raw` must be a vring the library passed to the current callback.
    unsafe fn from_raw(raw: *mut sys::vhu_vring) -> Vring<'a> {
        Vring { raw: NonNull::new(raw).expect("NULL vring"), _call: PhantomData }
    }

    fn ptr(&self) -> *mut sys::vhu_vring {
        self.raw.as_ptr()
    }

    /// The queue's index.
    pub fn index(&self) -> u16 {
        unsafe { sys::vhu_vring_index(self.ptr()) }
    }
    /// The queue size the front-end set.
    pub fn size(&self) -> u16 {
        unsafe { sys::vhu_vring_size(self.ptr()) }
    }
    pub fn is_started(&self) -> bool {
        unsafe { sys::vhu_vring_is_started(self.ptr()) != 0 }
    }
    pub fn is_enabled(&self) -> bool {
        unsafe { sys::vhu_vring_is_enabled(self.ptr()) != 0 }
    }
    /// A hostile or corrupt ring was seen; nothing is done on it until the
    /// front-end sets it up again.
    pub fn is_broken(&self) -> bool {
        unsafe { sys::vhu_vring_is_broken(self.ptr()) != 0 }
    }

    /// The next available chain: `Ok(None)` when there is none, `Err` with
    /// EIO when the ring is broken, ENOTCONN when it is not started.
    pub fn pop(&self) -> Result<Option<DescChain<'a>>> {
        let mut c = ptr::null_mut();
        // SAFETY: live vring on its own thread; c is a valid out-pointer.
        let rc = unsafe { sys::vhu_vring_pop(self.ptr(), &mut c) };
        if rc == -errno::EAGAIN {
            return Ok(None);
        }
        Error::check(rc)?;
        Ok(Some(DescChain {
            raw: NonNull::new(c).expect("vhu_vring_pop returned NULL"),
            vring: self.raw,
            _call: PhantomData,
        }))
    }

    /// Returns `chain` to the driver with `written` bytes written into its
    /// writable buffers.
    pub fn push(&self, chain: DescChain<'a>, written: u32) -> Result<()> {
        let c = chain.into_raw(self);
        // SAFETY: c was popped from this vring and is pushed once (the
        // DescChain was consumed).
        Error::check(unsafe { sys::vhu_vring_push(self.ptr(), c, written) })
    }

    /// Pushes several chains and publishes them with one used-index update
    /// (all visible to the driver at once).
    pub fn push_many(&self, chains: Vec<(DescChain<'a>, u32)>) -> Result<()> {
        let n = chains.len();
        if chains.iter().any(|(c, _)| c.vring != self.raw) {
            // Dropping `chains` hands every chain back to its own vring.
            return Err(Error::new(errno::EINVAL, "a chain was popped from another vring"));
        }
        let mut raw = Vec::with_capacity(n);
        let mut written = Vec::with_capacity(n);
        for (c, w) in chains {
            raw.push(c.into_raw(self));
            written.push(w);
        }
        // SAFETY: every chain was popped from this vring and consumed here.
        Error::check(unsafe {
            sys::vhu_vring_push_many(self.ptr(), raw.as_ptr(), written.as_ptr(), n as c_uint)
        })
    }

    /// Puts `chain` back so the next pop returns it again (newest first).
    /// On error the chain is handed back.
    pub fn unpop(&self, chain: DescChain<'a>) -> std::result::Result<(), (Error, DescChain<'a>)> {
        let c = chain.raw.as_ptr();
        // SAFETY: c is outstanding on this vring.
        let rc = unsafe { sys::vhu_vring_unpop(self.ptr(), c) };
        if rc < 0 {
            Err((Error::from_errno(rc), chain))
        } else {
            std::mem::forget(chain);
            Ok(())
        }
    }

    /// Signals the driver if it wants an interrupt; true when it signalled.
    pub fn notify(&self) -> Result<bool> {
        let rc = unsafe { sys::vhu_vring_notify(self.ptr()) };
        Error::check(rc).map(|()| rc > 0)
    }

    /// Enables or disables driver kicks (for polling loops).
    pub fn set_kicks(&self, enable: bool) -> Result<()> {
        Error::check(unsafe { sys::vhu_vring_set_kicks(self.ptr(), enable as c_int) })
    }

    /// Whether the driver made chains available that were not popped.
    pub fn pending(&self) -> bool {
        unsafe { sys::vhu_vring_pending(self.ptr()) > 0 }
    }

    /// Copies guest memory at guest-physical address `gpa` into `buf`.
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        Error::check(unsafe {
            sys::vhu_vring_read_guest(self.ptr(), gpa, buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<()> {
        Error::check(unsafe {
            sys::vhu_vring_write_guest(self.ptr(), gpa, data.as_ptr().cast(), data.len())
        })
    }

    /// The queue's counters.
    pub fn stats(&self) -> Result<VringStats> {
        read_stats(self.ptr())
    }
}

/// A descriptor chain popped from a [`Vring`]; its buffers are guest memory.
///
/// Give it back with [`Vring::push`] (or [`Vring::unpop`]). A chain dropped
/// without either is pushed with 0 bytes written, so the driver gets it back.
///
/// The compiler holds you to the rules of the C API. A chain cannot outlive
/// the handler call that popped it:
///
/// ```compile_fail
/// use std::cell::RefCell;
/// use vhostuser::{Backend, DescChain, Vring};
/// thread_local!(static HELD: RefCell<Option<DescChain<'static>>> = RefCell::new(None));
/// struct Keep;
/// impl Backend for Keep {
///     fn num_queues(&self) -> u16 { 1 }
///     fn handle_queue(&self, vring: &Vring<'_>) {
///         if let Ok(Some(c)) = vring.pop() {
///             HELD.with(|h| *h.borrow_mut() = Some(c)); // error: escapes the call
///         }
///     }
/// }
/// ```
///
/// nor be used once pushed:
///
/// ```compile_fail
/// # use vhostuser::{Backend, Vring};
/// # struct Twice;
/// # impl Backend for Twice {
/// #   fn num_queues(&self) -> u16 { 1 }
///     fn handle_queue(&self, vring: &Vring<'_>) {
///         if let Ok(Some(c)) = vring.pop() {
///             vring.push(c, 0).unwrap();
///             let _ = c.head(); // error: use of a moved value
///         }
///     }
/// # }
/// ```
///
/// and neither can a guest-memory slice taken from it:
///
/// ```compile_fail
/// # use vhostuser::{Backend, Vring};
/// # struct Slice;
/// # impl Backend for Slice {
/// #   fn num_queues(&self) -> u16 { 1 }
///     fn handle_queue(&self, vring: &Vring<'_>) {
///         if let Ok(Some(c)) = vring.pop() {
///             let data = c.readable().next().unwrap();
///             vring.push(c, 0).unwrap(); // error: `c` is still borrowed
///             let _ = data[0];
///         }
///     }
/// # }
/// ```
///
/// A chain (like a [`Vring`]) stays on the queue's thread:
///
/// ```compile_fail
/// # use vhostuser::{Backend, Vring};
/// # struct Move;
/// # impl Backend for Move {
/// #   fn num_queues(&self) -> u16 { 1 }
///     fn handle_queue(&self, vring: &Vring<'_>) {
///         if let Ok(Some(c)) = vring.pop() {
///             std::thread::scope(|s| {
///                 s.spawn(move || drop(c)); // error: DescChain is not Send
///             });
///         }
///     }
/// # }
/// ```
///
/// The same handler written correctly compiles:
///
/// ```no_run
/// # use vhostuser::{Backend, Vring};
/// # struct Echo;
/// # impl Backend for Echo {
/// #   fn num_queues(&self) -> u16 { 1 }
///     fn handle_queue(&self, vring: &Vring<'_>) {
///         while let Ok(Some(mut c)) = vring.pop() {
///             let mut msg = vec![0u8; c.readable_len()];
///             c.read_at(0, &mut msg);
///             let n = c.write_at(0, &msg);
///             vring.push(c, n as u32).unwrap();
///         }
///         vring.notify().unwrap();
///     }
/// # }
/// ```
pub struct DescChain<'a> {
    raw: NonNull<sys::vhu_chain>,
    vring: NonNull<sys::vhu_vring>,
    _call: PhantomData<&'a mut sys::vhu_chain>,
}

fn iov_slice<'c>(p: *const sys::iovec, n: c_uint) -> &'c [sys::iovec] {
    if p.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: the library returns `n` iovecs valid while the chain is.
        unsafe { std::slice::from_raw_parts(p, n as usize) }
    }
}

impl<'a> DescChain<'a> {
    fn into_raw(self, vring: &Vring<'a>) -> *mut sys::vhu_chain {
        assert_eq!(self.vring, vring.raw, "chain pushed to a vring it was not popped from");
        let c = self.raw.as_ptr();
        std::mem::forget(self);
        c
    }

    fn ptr(&self) -> *mut sys::vhu_chain {
        self.raw.as_ptr()
    }

    /// The head descriptor index.
    pub fn head(&self) -> u16 {
        unsafe { sys::vhu_chain_head(self.ptr()) }
    }

    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> usize {
        unsafe { sys::vhu_chain_readable_len(self.ptr()) }
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> usize {
        unsafe { sys::vhu_chain_writable_len(self.ptr()) }
    }

    /// The device-readable (driver to device) buffers, in chain order.
    ///
    /// The bytes are guest memory: the driver may change them while you
    /// look (a well-behaved one does not); copy what you validate.
    pub fn readable(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut n = 0;
        let iov = iov_slice(unsafe { sys::vhu_chain_readable(self.ptr(), &mut n) }, n);
        iov.iter().map(|v| {
            if v.iov_len == 0 || v.iov_base.is_null() {
                &[][..]
            } else {
                // SAFETY: mapped guest memory, valid while the chain is
                // (the borrow of self ends before push/unpop can consume it).
                unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }
            }
        })
    }

    /// The device-writable (device to driver) buffers, in chain order.
    pub fn writable(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        let mut n = 0;
        let iov = iov_slice(unsafe { sys::vhu_chain_writable(self.ptr(), &mut n) }, n);
        iov.iter().map(|v| {
            if v.iov_len == 0 || v.iov_base.is_null() {
                &mut [][..]
            } else {
                // SAFETY: as readable(); the writable iovecs of one chain
                // are distinct, and &mut self keeps anyone else out.
                unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, v.iov_len) }
            }
        })
    }

    /// Copies readable bytes from `offset` into `buf`; returns how many.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> usize {
        unsafe { sys::vhu_chain_read(self.ptr(), offset, buf.as_mut_ptr().cast(), buf.len()) }
    }

    /// Copies `data` into the writable buffers at `offset`; returns how many
    /// bytes fitted.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        unsafe { sys::vhu_chain_write(self.ptr(), offset, data.as_ptr().cast(), data.len()) }
    }
}

impl Drop for DescChain<'_> {
    fn drop(&mut self) {
        // SAFETY: the chain is still outstanding on its vring (push and
        // unpop forget it), and we are inside the callback that popped it.
        unsafe { sys::vhu_vring_push(self.vring.as_ptr(), self.raw.as_ptr(), 0) };
    }
}

// ---- Daemon --------------------------------------------------------------------------

/// A vhost-user back-end daemon serving one [`Backend`].
pub struct Daemon {
    raw: NonNull<sys::vhu_daemon>,
    // Owned here, referenced by the C daemon as log user_data: dropped only
    // after vhu_daemon_free. Boxed: the C side needs a thin pointer that
    // stays put while the Vec grows.
    #[allow(clippy::vec_box)]
    logs: Vec<Box<Arc<LogFn>>>,
    shared_log: *const Mutex<Option<(Arc<LogFn>, LogLevel)>>,
    signals: Vec<i32>,
}

// SAFETY: the daemon's thread-safe calls take &self; configuration takes
// &mut self. The backend it holds is Send + Sync.
unsafe impl Send for Daemon {}
unsafe impl Sync for Daemon {}

fn cpath(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(errno::EINVAL, "path contains a NUL byte"))
}

impl Daemon {
    /// Creates a daemon for `backend`. The backend is dropped when the
    /// daemon is (or right away if creation fails).
    pub fn new<B: Backend>(backend: B) -> Result<Daemon> {
        let ops = sys::vhu_backend_ops {
            num_queues: backend.num_queues(),
            max_queue_size: backend.max_queue_size(),
            queue_num: backend.queue_num(),
            get_features: Some(trampolines::get_features::<B>),
            get_protocol_features: Some(trampolines::get_protocol_features::<B>),
            features_acked: Some(trampolines::features_acked::<B>),
            get_config: if B::HAS_CONFIG { Some(trampolines::get_config::<B>) } else { None },
            set_config: Some(trampolines::set_config::<B>),
            handle_queue: Some(trampolines::handle_queue::<B>),
            queue_started: Some(trampolines::queue_started::<B>),
            queue_stopped: Some(trampolines::queue_stopped::<B>),
            memory_changed: Some(trampolines::memory_changed::<B>),
            device_reset: Some(trampolines::device_reset::<B>),
            ..sys::vhu_backend_ops::zeroed()
        };
        let shared = Box::into_raw(Box::new(Shared { backend, log: Mutex::new(None) }));
        let shared_log = unsafe { &(*shared).log } as *const _;
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: ops is a complete table; the library owns `shared` from
        // here on and frees it through trampolines::free, also on failure.
        let rc = unsafe {
            sys::vhu_daemon_new(
                &ops,
                shared.cast(),
                Some(trampolines::free::<B>),
                &mut out,
                &mut err,
            )
        };
        Error::take(rc, err)?;
        Ok(Daemon {
            raw: NonNull::new(out).expect("vhu_daemon_new returned NULL"),
            logs: Vec::new(),
            shared_log,
            signals: Vec::new(),
        })
    }

    /// Installs a log callback for messages up to `max_level`. Panics in
    /// backend callbacks are reported here too (at Error level).
    pub fn set_log<F>(&mut self, max_level: LogLevel, f: F) -> Result<()>
    where
        F: Fn(LogLevel, &str) + Send + Sync + 'static,
    {
        let f: Arc<LogFn> = Arc::new(f);
        let boxed = Box::new(f.clone());
        let ud = &*boxed as *const Arc<LogFn> as *mut c_void;
        // SAFETY: ud stays alive in self.logs until after vhu_daemon_free.
        Error::check(unsafe {
            sys::vhu_daemon_set_log(
                self.raw.as_ptr(),
                Some(trampolines::log),
                max_level as sys::vhu_log_level,
                ud,
            )
        })?;
        self.logs.push(boxed);
        // SAFETY: the Shared<B> lives until vhu_daemon_free, i.e. longer
        // than self's use of it.
        if let Ok(mut g) = unsafe { &*self.shared_log }.lock() {
            *g = Some((f, max_level));
        }
        Ok(())
    }

    /// Number of worker threads (0 serves queues on the control thread).
    pub fn set_workers(&mut self, workers: u32) -> Result<()> {
        Error::check(unsafe { sys::vhu_daemon_set_workers(self.raw.as_ptr(), workers) })
    }

    /// Assigns queue `queue` to worker `worker`.
    pub fn assign_queue(&mut self, queue: u16, worker: u32) -> Result<()> {
        Error::check(unsafe { sys::vhu_daemon_assign_queue(self.raw.as_ptr(), queue, worker) })
    }

    /// Busy-poll mode.
    pub fn set_poll(&mut self, enable: bool) -> Result<()> {
        Error::check(unsafe { sys::vhu_daemon_set_poll(self.raw.as_ptr(), enable as c_int) })
    }

    /// Listens on a unix socket at `path` (the daemon unlinks it when freed).
    pub fn listen(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = cpath(path.as_ref())?;
        let mut err = ptr::null_mut();
        let rc = unsafe { sys::vhu_daemon_listen(self.raw.as_ptr(), p.as_ptr(), &mut err) };
        Error::take(rc, err)
    }

    /// Client mode: connects to a front-end listening at `path`.
    pub fn connect(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = cpath(path.as_ref())?;
        let mut err = ptr::null_mut();
        let rc = unsafe { sys::vhu_daemon_connect(self.raw.as_ptr(), p.as_ptr(), &mut err) };
        Error::take(rc, err)
    }

    /// Runs the control loop in this thread until [`stop`](Daemon::stop)
    /// (listening) or until the front-end hangs up (connected).
    pub fn run(&self) -> Result<()> {
        let mut err = ptr::null_mut();
        let rc = unsafe { sys::vhu_daemon_run(self.raw.as_ptr(), &mut err) };
        Error::take(rc, err)
    }

    /// Runs the control loop in a background thread; see [`wait`](Daemon::wait).
    pub fn start(&self) -> Result<()> {
        let mut err = ptr::null_mut();
        let rc = unsafe { sys::vhu_daemon_start(self.raw.as_ptr(), &mut err) };
        Error::take(rc, err)
    }

    /// Waits for a daemon started with [`start`](Daemon::start).
    pub fn wait(&self) -> Result<()> {
        let mut err = ptr::null_mut();
        let rc = unsafe { sys::vhu_daemon_wait(self.raw.as_ptr(), &mut err) };
        Error::take(rc, err)
    }

    /// Asks a running daemon to stop (any thread).
    pub fn stop(&self) {
        unsafe { sys::vhu_daemon_stop(self.raw.as_ptr()) }
    }

    /// Whether a front-end is connected now.
    pub fn is_connected(&self) -> bool {
        unsafe { sys::vhu_daemon_is_connected(self.raw.as_ptr()) != 0 }
    }

    /// Virtio features acknowledged in the current session.
    pub fn acked_features(&self) -> u64 {
        unsafe { sys::vhu_daemon_acked_features(self.raw.as_ptr()) }
    }

    /// Protocol features negotiated in the current session.
    pub fn protocol_features(&self) -> u64 {
        unsafe { sys::vhu_daemon_protocol_features(self.raw.as_ptr()) }
    }

    /// Tells the front-end the configuration space changed.
    pub fn config_changed(&self) -> Result<()> {
        Error::check(unsafe { sys::vhu_daemon_config_changed(self.raw.as_ptr()) })
    }

    /// Counters of queue `index` (any thread).
    pub fn vring_stats(&self, index: u16) -> Result<VringStats> {
        let vr = unsafe { sys::vhu_daemon_get_vring(self.raw.as_ptr(), index) };
        if vr.is_null() {
            return Err(Error::new(errno::EINVAL, format!("no queue {index}")));
        }
        read_stats(vr)
    }

    /// Copies guest memory at guest-physical address `gpa` into `buf`.
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        Error::check(unsafe {
            sys::vhu_daemon_read_guest(self.raw.as_ptr(), gpa, buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<()> {
        Error::check(unsafe {
            sys::vhu_daemon_write_guest(self.raw.as_ptr(), gpa, data.as_ptr().cast(), data.len())
        })
    }

    /// Makes the given signals (e.g. [`SIGINT`], [`SIGTERM`]) stop this
    /// daemon, so that [`run`](Daemon::run) returns. One daemon per process
    /// can do this at a time (EBUSY otherwise); the signals get their
    /// default action back when the daemon is dropped.
    pub fn stop_on_signals(&mut self, signals: &[i32]) -> Result<()> {
        signal_stop::install(self.raw.as_ptr(), signals)?;
        self.signals.extend_from_slice(signals);
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.signals.is_empty() {
            signal_stop::uninstall(self.raw.as_ptr(), &self.signals);
        }
        // SAFETY: not on one of the daemon's threads (it has no handle to
        // itself); frees the backend through trampolines::free. The log
        // boxes in self.logs are dropped after this.
        unsafe { sys::vhu_daemon_free(self.raw.as_ptr()) };
    }
}

/// Stopping a daemon from a signal handler: vhu_daemon_stop is
/// async-signal-safe; the handler reads the daemon from an atomic and counts
/// itself in, so that uninstall can wait for a handler still running.
mod signal_stop {
    use super::*;

    static DAEMON: AtomicPtr<sys::vhu_daemon> = AtomicPtr::new(ptr::null_mut());
    static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

    const SIG_DFL: usize = 0;
    const SIG_ERR: usize = usize::MAX;

    extern "C" {
        // glibc's signal(): BSD semantics (handler stays, SA_RESTART).
        fn signal(signum: c_int, handler: usize) -> usize;
    }

    extern "C" fn on_signal(_sig: c_int) {
        IN_HANDLER.fetch_add(1, Ordering::SeqCst);
        let d = DAEMON.load(Ordering::SeqCst);
        if !d.is_null() {
            // SAFETY: uninstall clears DAEMON and waits for IN_HANDLER to
            // drop to 0 before the daemon is freed.
            unsafe { sys::vhu_daemon_stop(d) };
        }
        IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn install(d: *mut sys::vhu_daemon, signals: &[i32]) -> Result<()> {
        if let Err(cur) =
            DAEMON.compare_exchange(ptr::null_mut(), d, Ordering::SeqCst, Ordering::SeqCst)
        {
            if cur != d {
                return Err(Error::new(errno::EBUSY, "another daemon handles the signals"));
            }
        }
        for &s in signals {
            let handler = on_signal as extern "C" fn(c_int) as usize;
            // SAFETY: on_signal is async-signal-safe.
            if unsafe { signal(s, handler) } == SIG_ERR {
                return Err(Error::new(errno::EINVAL, format!("cannot handle signal {s}")));
            }
        }
        Ok(())
    }

    pub fn uninstall(d: *mut sys::vhu_daemon, signals: &[i32]) {
        if DAEMON.compare_exchange(d, ptr::null_mut(), Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            for &s in signals {
                unsafe { signal(s, SIG_DFL) };
            }
        }
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
}
