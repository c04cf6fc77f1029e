// SPDX-License-Identifier: Apache-2.0
//! Adds an rpath to the directory where vhostuser-sys found
//! libvhostuser-cxx, so this package's tests and programs run without
//! LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_VHOSTUSER_LIBDIR");
    if let Ok(dir) = std::env::var("DEP_VHOSTUSER_LIBDIR") {
        if !dir.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
