// SPDX-License-Identifier: Apache-2.0
//! Raw declarations of the libvhostuser-cxx C API, written by hand from
//! `include/vhostuser/vhostuser.h` (version 0.1). Every item mirrors the
//! header one to one; see the header for the semantics of each call. The
//! safe interface is the `vhostuser` crate.
//!
//! The layouts of the structs are checked against the installed header by
//! this crate's tests (`tests/layout.rs`).
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_int, c_uint, c_void};

// ---- Version ---------------------------------------------------------------

pub const VHU_VERSION_MAJOR: c_int = 0;
pub const VHU_VERSION_MINOR: c_int = 1;
pub const VHU_VERSION_PATCH: c_int = 0;
/// `VHU_MAKE_VERSION(major, minor, patch)`.
pub const fn vhu_make_version(major: c_int, minor: c_int, patch: c_int) -> c_int {
    major * 10000 + minor * 100 + patch
}
pub const VHU_VERSION: c_int =
    vhu_make_version(VHU_VERSION_MAJOR, VHU_VERSION_MINOR, VHU_VERSION_PATCH);

// ---- Opaque handles ----------------------------------------------------------

macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _data: [u8; 0],
            // Neither Send, Sync nor Unpin: only ever used behind pointers.
            _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
        }
    )*};
}
opaque!(vhu_error, vhu_daemon, vhu_vring, vhu_chain, vhu_watch);

/// `struct iovec` from `<sys/uio.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct iovec {
    pub iov_base: *mut c_void,
    pub iov_len: usize,
}

// ---- Logging -----------------------------------------------------------------

pub type vhu_log_level = c_uint;
pub const VHU_LOG_ERROR: vhu_log_level = 0;
pub const VHU_LOG_WARNING: vhu_log_level = 1;
pub const VHU_LOG_INFO: vhu_log_level = 2;
pub const VHU_LOG_DEBUG: vhu_log_level = 3;

pub type vhu_log_fn = Option<
    unsafe extern "C" fn(level: vhu_log_level, message: *const c_char, user_data: *mut c_void),
>;

// ---- Virtio constants ----------------------------------------------------------

pub const VHU_F_RING_INDIRECT_DESC: u64 = 1 << 28;
pub const VHU_F_RING_EVENT_IDX: u64 = 1 << 29;
pub const VHU_F_PROTOCOL_FEATURES: u64 = 1 << 30;
pub const VHU_F_VERSION_1: u64 = 1 << 32;

pub const VHU_PROTOCOL_F_MQ: u64 = 1 << 0;
pub const VHU_PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;
pub const VHU_PROTOCOL_F_BACKEND_REQ: u64 = 1 << 5;
pub const VHU_PROTOCOL_F_CONFIG: u64 = 1 << 9;
pub const VHU_PROTOCOL_F_RESET_DEVICE: u64 = 1 << 13;
pub const VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS: u64 = 1 << 15;
pub const VHU_PROTOCOL_F_STATUS: u64 = 1 << 16;

// ---- The back-end callback table -------------------------------------------------

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vhu_backend_ops {
    pub struct_size: usize,
    pub num_queues: u16,
    pub max_queue_size: u16,
    pub get_features: Option<unsafe extern "C" fn(user_data: *mut c_void) -> u64>,
    pub get_protocol_features: Option<unsafe extern "C" fn(user_data: *mut c_void) -> u64>,
    pub features_acked:
        Option<unsafe extern "C" fn(features: u64, user_data: *mut c_void) -> c_int>,
    pub get_config: Option<
        unsafe extern "C" fn(
            offset: u32,
            buf: *mut c_void,
            size: u32,
            user_data: *mut c_void,
        ) -> c_int,
    >,
    pub set_config: Option<
        unsafe extern "C" fn(
            offset: u32,
            buf: *const c_void,
            size: u32,
            flags: u32,
            user_data: *mut c_void,
        ) -> c_int,
    >,
    pub handle_queue: Option<unsafe extern "C" fn(vring: *mut vhu_vring, user_data: *mut c_void)>,
    pub queue_started: Option<unsafe extern "C" fn(vring: *mut vhu_vring, user_data: *mut c_void)>,
    pub queue_stopped: Option<unsafe extern "C" fn(vring: *mut vhu_vring, user_data: *mut c_void)>,
    pub memory_changed: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub device_reset: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    pub queue_num: u16,
}

impl vhu_backend_ops {
    /// A table with `struct_size` set and every other member zero/NULL.
    pub const fn zeroed() -> Self {
        vhu_backend_ops {
            struct_size: core::mem::size_of::<vhu_backend_ops>(),
            num_queues: 0,
            max_queue_size: 0,
            get_features: None,
            get_protocol_features: None,
            features_acked: None,
            get_config: None,
            set_config: None,
            handle_queue: None,
            queue_started: None,
            queue_stopped: None,
            memory_changed: None,
            device_reset: None,
            queue_num: 0,
        }
    }
}

// ---- Daemon ------------------------------------------------------------------------

pub const VHU_HAVE_SET_POLL: c_int = 1;
pub const VHU_FD_LISTENING: c_int = 0;
pub const VHU_FD_CONNECTED: c_int = 1;

pub const VHU_WATCH_READ: u32 = 0x1;
pub const VHU_WATCH_WRITE: u32 = 0x2;

pub type vhu_watch_fn =
    Option<unsafe extern "C" fn(fd: c_int, events: u32, user_data: *mut c_void)>;

pub const VHU_HAVE_PUSH_MANY: c_int = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vhu_vring_stats {
    pub struct_size: usize,
    pub chains: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub notifications: u64,
    pub suppressed: u64,
    pub kicks: u64,
    pub errors: u64,
}

extern "C" {
    pub fn vhu_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);

    pub fn vhu_strerror(status: c_int) -> *const c_char;
    pub fn vhu_error_code(err: *const vhu_error) -> c_int;
    pub fn vhu_error_message(err: *const vhu_error) -> *const c_char;
    pub fn vhu_error_free(err: *mut vhu_error);

    pub fn vhu_daemon_new(
        ops: *const vhu_backend_ops,
        user_data: *mut c_void,
        user_data_free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
        out: *mut *mut vhu_daemon,
        err: *mut *mut vhu_error,
    ) -> c_int;
    pub fn vhu_daemon_free(daemon: *mut vhu_daemon);
    pub fn vhu_daemon_set_log(
        daemon: *mut vhu_daemon,
        fn_: vhu_log_fn,
        max_level: vhu_log_level,
        user_data: *mut c_void,
    ) -> c_int;
    pub fn vhu_daemon_set_workers(daemon: *mut vhu_daemon, workers: c_uint) -> c_int;
    pub fn vhu_daemon_assign_queue(daemon: *mut vhu_daemon, queue: u16, worker: c_uint) -> c_int;
    pub fn vhu_daemon_set_poll(daemon: *mut vhu_daemon, enable: c_int) -> c_int;
    pub fn vhu_daemon_listen(
        daemon: *mut vhu_daemon,
        path: *const c_char,
        err: *mut *mut vhu_error,
    ) -> c_int;
    pub fn vhu_daemon_connect(
        daemon: *mut vhu_daemon,
        path: *const c_char,
        err: *mut *mut vhu_error,
    ) -> c_int;
    pub fn vhu_daemon_adopt_fd(
        daemon: *mut vhu_daemon,
        fd: c_int,
        kind: c_int,
        err: *mut *mut vhu_error,
    ) -> c_int;
    pub fn vhu_daemon_run(daemon: *mut vhu_daemon, err: *mut *mut vhu_error) -> c_int;
    pub fn vhu_daemon_start(daemon: *mut vhu_daemon, err: *mut *mut vhu_error) -> c_int;
    pub fn vhu_daemon_wait(daemon: *mut vhu_daemon, err: *mut *mut vhu_error) -> c_int;
    pub fn vhu_daemon_stop(daemon: *mut vhu_daemon);
    pub fn vhu_daemon_is_connected(daemon: *const vhu_daemon) -> c_int;
    pub fn vhu_daemon_acked_features(daemon: *const vhu_daemon) -> u64;
    pub fn vhu_daemon_protocol_features(daemon: *const vhu_daemon) -> u64;
    pub fn vhu_daemon_get_vring(daemon: *mut vhu_daemon, index: u16) -> *mut vhu_vring;
    pub fn vhu_daemon_config_changed(daemon: *mut vhu_daemon) -> c_int;
    pub fn vhu_daemon_read_guest(
        daemon: *mut vhu_daemon,
        gpa: u64,
        buf: *mut c_void,
        len: usize,
    ) -> c_int;
    pub fn vhu_daemon_write_guest(
        daemon: *mut vhu_daemon,
        gpa: u64,
        buf: *const c_void,
        len: usize,
    ) -> c_int;

    pub fn vhu_daemon_add_watch(
        daemon: *mut vhu_daemon,
        worker: c_uint,
        fd: c_int,
        events: u32,
        fn_: vhu_watch_fn,
        user_data: *mut c_void,
        out: *mut *mut vhu_watch,
    ) -> c_int;
    pub fn vhu_daemon_add_timer(
        daemon: *mut vhu_daemon,
        worker: c_uint,
        period_us: u64,
        fn_: vhu_watch_fn,
        user_data: *mut c_void,
        out: *mut *mut vhu_watch,
    ) -> c_int;
    pub fn vhu_watch_free(watch: *mut vhu_watch);

    pub fn vhu_vring_index(vring: *const vhu_vring) -> u16;
    pub fn vhu_vring_size(vring: *const vhu_vring) -> u16;
    pub fn vhu_vring_is_started(vring: *const vhu_vring) -> c_int;
    pub fn vhu_vring_is_enabled(vring: *const vhu_vring) -> c_int;
    pub fn vhu_vring_is_broken(vring: *const vhu_vring) -> c_int;
    pub fn vhu_vring_daemon(vring: *mut vhu_vring) -> *mut vhu_daemon;
    pub fn vhu_vring_pop(vring: *mut vhu_vring, out: *mut *mut vhu_chain) -> c_int;
    pub fn vhu_vring_push(vring: *mut vhu_vring, chain: *mut vhu_chain, written: u32) -> c_int;
    pub fn vhu_vring_push_many(
        vring: *mut vhu_vring,
        chains: *const *mut vhu_chain,
        written: *const u32,
        n: c_uint,
    ) -> c_int;
    pub fn vhu_vring_unpop(vring: *mut vhu_vring, chain: *mut vhu_chain) -> c_int;
    pub fn vhu_vring_notify(vring: *mut vhu_vring) -> c_int;
    pub fn vhu_vring_set_kicks(vring: *mut vhu_vring, enable: c_int) -> c_int;
    pub fn vhu_vring_pending(vring: *mut vhu_vring) -> c_int;
    pub fn vhu_vring_read_guest(
        vring: *mut vhu_vring,
        gpa: u64,
        buf: *mut c_void,
        len: usize,
    ) -> c_int;
    pub fn vhu_vring_write_guest(
        vring: *mut vhu_vring,
        gpa: u64,
        buf: *const c_void,
        len: usize,
    ) -> c_int;
    pub fn vhu_vring_get_stats(vring: *const vhu_vring, stats: *mut vhu_vring_stats) -> c_int;

    pub fn vhu_chain_head(chain: *const vhu_chain) -> u16;
    pub fn vhu_chain_readable(chain: *const vhu_chain, count: *mut c_uint) -> *const iovec;
    pub fn vhu_chain_writable(chain: *const vhu_chain, count: *mut c_uint) -> *const iovec;
    pub fn vhu_chain_readable_len(chain: *const vhu_chain) -> usize;
    pub fn vhu_chain_writable_len(chain: *const vhu_chain) -> usize;
    pub fn vhu_chain_read(
        chain: *const vhu_chain,
        offset: usize,
        buf: *mut c_void,
        len: usize,
    ) -> usize;
    pub fn vhu_chain_write(
        chain: *mut vhu_chain,
        offset: usize,
        buf: *const c_void,
        len: usize,
    ) -> usize;
}
