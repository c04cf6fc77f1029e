// SPDX-License-Identifier: Apache-2.0
//! Checks the hand-written declarations against the installed C header: a
//! small C program compiled with `cc` and the flags pkg-config gave the build
//! script prints sizes, offsets and constant values; they must equal what
//! this crate declares.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use vhostuser_sys::*;

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <vhostuser/vhostuser.h>

#define SIZE(t) printf("sizeof %s %zu\n", #t, sizeof(t))
#define OFF(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(t, f))
#define CONST(c) printf("const %s %llu\n", #c, (unsigned long long)(c))

int main(void) {
  SIZE(vhu_backend_ops);
  OFF(vhu_backend_ops, struct_size);
  OFF(vhu_backend_ops, num_queues);
  OFF(vhu_backend_ops, max_queue_size);
  OFF(vhu_backend_ops, get_features);
  OFF(vhu_backend_ops, get_protocol_features);
  OFF(vhu_backend_ops, features_acked);
  OFF(vhu_backend_ops, get_config);
  OFF(vhu_backend_ops, set_config);
  OFF(vhu_backend_ops, handle_queue);
  OFF(vhu_backend_ops, queue_started);
  OFF(vhu_backend_ops, queue_stopped);
  OFF(vhu_backend_ops, memory_changed);
  OFF(vhu_backend_ops, device_reset);
  OFF(vhu_backend_ops, queue_num);
  SIZE(vhu_vring_stats);
  OFF(vhu_vring_stats, struct_size);
  OFF(vhu_vring_stats, chains);
  OFF(vhu_vring_stats, bytes_read);
  OFF(vhu_vring_stats, bytes_written);
  OFF(vhu_vring_stats, notifications);
  OFF(vhu_vring_stats, suppressed);
  OFF(vhu_vring_stats, kicks);
  OFF(vhu_vring_stats, errors);
  SIZE(struct iovec);
  OFF(struct iovec, iov_base);
  OFF(struct iovec, iov_len);
  SIZE(vhu_log_level);
  CONST(VHU_VERSION_MAJOR);
  CONST(VHU_VERSION_MINOR);
  CONST(VHU_VERSION_PATCH);
  CONST(VHU_VERSION);
  CONST(VHU_LOG_ERROR);
  CONST(VHU_LOG_WARNING);
  CONST(VHU_LOG_INFO);
  CONST(VHU_LOG_DEBUG);
  CONST(VHU_F_RING_INDIRECT_DESC);
  CONST(VHU_F_RING_EVENT_IDX);
  CONST(VHU_F_PROTOCOL_FEATURES);
  CONST(VHU_F_VERSION_1);
  CONST(VHU_PROTOCOL_F_MQ);
  CONST(VHU_PROTOCOL_F_REPLY_ACK);
  CONST(VHU_PROTOCOL_F_BACKEND_REQ);
  CONST(VHU_PROTOCOL_F_CONFIG);
  CONST(VHU_PROTOCOL_F_RESET_DEVICE);
  CONST(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
  CONST(VHU_PROTOCOL_F_STATUS);
  CONST(VHU_HAVE_SET_POLL);
  CONST(VHU_HAVE_PUSH_MANY);
  CONST(VHU_FD_LISTENING);
  CONST(VHU_FD_CONNECTED);
  CONST(VHU_WATCH_READ);
  CONST(VHU_WATCH_WRITE);
  return 0;
}
"#;

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles and runs the probe once; returns "kind name" -> value.
fn c_values() -> &'static HashMap<String, u64> {
    static VALUES: OnceLock<HashMap<String, u64>> = OnceLock::new();
    VALUES.get_or_init(probe)
}

fn probe() -> HashMap<String, u64> {
    let dir =
        TempDir(std::env::temp_dir().join(format!("vhostuser-sys-layout-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let src = dir.0.join("probe.c");
    let exe = dir.0.join("probe");
    std::fs::write(&src, PROBE).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .args(env!("VHOSTUSER_SYS_CFLAGS").split_whitespace())
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling the probe failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("running the probe");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut map = HashMap::new();
    for line in text.lines() {
        let (key, value) = line.rsplit_once(' ').expect("probe line: KEY VALUE");
        map.insert(key.to_string(), value.parse().expect("probe value"));
    }
    assert!(map.len() > 50, "probe printed too little:\n{text}");
    map
}

#[test]
fn struct_layouts_match_the_header() {
    let c = c_values();
    let mut checked = 0;
    let mut check = |key: &str, rust: usize| {
        let want = *c.get(key).unwrap_or_else(|| panic!("probe did not print {key}"));
        assert_eq!(rust as u64, want, "{key}: Rust {rust}, C {want}");
        checked += 1;
    };
    check("sizeof vhu_backend_ops", size_of::<vhu_backend_ops>());
    macro_rules! off {
        ($t:ident, $($f:ident),*) => {$(
            check(concat!("offsetof ", stringify!($t), ".", stringify!($f)), offset_of!($t, $f));
        )*};
    }
    off!(
        vhu_backend_ops,
        struct_size,
        num_queues,
        max_queue_size,
        get_features,
        get_protocol_features,
        features_acked,
        get_config,
        set_config,
        handle_queue,
        queue_started,
        queue_stopped,
        memory_changed,
        device_reset,
        queue_num
    );
    check("sizeof vhu_vring_stats", size_of::<vhu_vring_stats>());
    off!(
        vhu_vring_stats,
        struct_size,
        chains,
        bytes_read,
        bytes_written,
        notifications,
        suppressed,
        kicks,
        errors
    );
    check("sizeof struct iovec", size_of::<iovec>());
    check("offsetof struct iovec.iov_base", offset_of!(iovec, iov_base));
    check("offsetof struct iovec.iov_len", offset_of!(iovec, iov_len));
    check("sizeof vhu_log_level", size_of::<vhu_log_level>());
    assert_eq!(checked, 28);
    assert_eq!(vhu_backend_ops::zeroed().struct_size, size_of::<vhu_backend_ops>());
}

#[test]
fn constants_match_the_header() {
    let c = c_values();
    let consts: &[(&str, u64)] = &[
        ("VHU_VERSION_MAJOR", VHU_VERSION_MAJOR as u64),
        ("VHU_VERSION_MINOR", VHU_VERSION_MINOR as u64),
        ("VHU_VERSION_PATCH", VHU_VERSION_PATCH as u64),
        ("VHU_VERSION", VHU_VERSION as u64),
        ("VHU_LOG_ERROR", VHU_LOG_ERROR as u64),
        ("VHU_LOG_WARNING", VHU_LOG_WARNING as u64),
        ("VHU_LOG_INFO", VHU_LOG_INFO as u64),
        ("VHU_LOG_DEBUG", VHU_LOG_DEBUG as u64),
        ("VHU_F_RING_INDIRECT_DESC", VHU_F_RING_INDIRECT_DESC),
        ("VHU_F_RING_EVENT_IDX", VHU_F_RING_EVENT_IDX),
        ("VHU_F_PROTOCOL_FEATURES", VHU_F_PROTOCOL_FEATURES),
        ("VHU_F_VERSION_1", VHU_F_VERSION_1),
        ("VHU_PROTOCOL_F_MQ", VHU_PROTOCOL_F_MQ),
        ("VHU_PROTOCOL_F_REPLY_ACK", VHU_PROTOCOL_F_REPLY_ACK),
        ("VHU_PROTOCOL_F_BACKEND_REQ", VHU_PROTOCOL_F_BACKEND_REQ),
        ("VHU_PROTOCOL_F_CONFIG", VHU_PROTOCOL_F_CONFIG),
        ("VHU_PROTOCOL_F_RESET_DEVICE", VHU_PROTOCOL_F_RESET_DEVICE),
        ("VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS", VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
        ("VHU_PROTOCOL_F_STATUS", VHU_PROTOCOL_F_STATUS),
        ("VHU_HAVE_SET_POLL", VHU_HAVE_SET_POLL as u64),
        ("VHU_HAVE_PUSH_MANY", VHU_HAVE_PUSH_MANY as u64),
        ("VHU_FD_LISTENING", VHU_FD_LISTENING as u64),
        ("VHU_FD_CONNECTED", VHU_FD_CONNECTED as u64),
        ("VHU_WATCH_READ", VHU_WATCH_READ as u64),
        ("VHU_WATCH_WRITE", VHU_WATCH_WRITE as u64),
    ];
    for (name, rust) in consts {
        let key = format!("const {name}");
        let want = *c.get(&key).unwrap_or_else(|| panic!("probe did not print {key}"));
        assert_eq!(*rust, want, "{name}: Rust {rust:#x}, C {want:#x}");
    }
}

#[test]
fn linked_library_reports_a_0_x_version() {
    let (mut major, mut minor, mut patch) = (-1, -1, -1);
    // SAFETY: the three pointers are valid for writes.
    unsafe { vhu_version(&mut major, &mut minor, &mut patch) };
    assert_eq!(major, VHU_VERSION_MAJOR);
    assert!(minor >= VHU_VERSION_MINOR, "library {major}.{minor}.{patch}");
    assert!(patch >= 0);
    let pc = env!("VHOSTUSER_SYS_VERSION");
    assert_eq!(pc, format!("{major}.{minor}.{patch}"), "pkg-config version vs vhu_version()");
    // SAFETY: vhu_strerror never returns NULL and the string is static.
    let s = unsafe { std::ffi::CStr::from_ptr(vhu_strerror(-22)) };
    assert!(!s.to_bytes().is_empty());
}
