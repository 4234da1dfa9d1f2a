//! Generates the C header from the Rust sources with cbindgen, and gives
//! the shared library its SONAME.
//!
//! The fresh header always goes to `$OUT_DIR/sock.h`; the test
//! `tests/header.rs` fails when the committed `include/sock.h` differs from
//! it. `make header` (SOCK_REGEN_HEADER=1) writes it into `include/`.
//!
//! `libsock.so` carries the SONAME `libsock.so.MAJOR` from 1.0 on and
//! `libsock.so.0.MINOR` before (cargo-c's rule: each 0.x minor release may
//! change the ABI), so programs linked against it look for that name at run
//! time; a symlink of that name next to the built library keeps in-tree
//! programs (tests, examples, benchmarks) running straight from `target/`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=SOCK_REGEN_HEADER");

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    set_soname(&out_dir);

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let fresh = out_dir.join("sock.h");
    bindings.write_to_file(&fresh);

    if env::var("SOCK_REGEN_HEADER").as_deref() == Ok("1") {
        let text = fs::read(&fresh).expect("fresh header is readable");
        let committed = crate_dir.join("include").join("sock.h");
        if fs::read(&committed).ok().as_deref() != Some(&text[..]) {
            fs::write(&committed, text).expect("include/sock.h is writable");
        }
    }
}

/// Links `libsock.so` with SONAME `libsock.so.MAJOR` (`libsock.so.0.MINOR`
/// while the major version is 0) and puts a `SONAME -> libsock.so` symlink
/// in the profile directory (`$OUT_DIR` is
/// `<target>/<profile>/build/<pkg>-<hash>/out`).
fn set_soname(out_dir: &std::path::Path) {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
    let minor = env::var("CARGO_PKG_VERSION_MINOR").expect("CARGO_PKG_VERSION_MINOR");
    let soname = if major == "0" {
        format!("libsock.so.0.{minor}")
    } else {
        format!("libsock.so.{major}")
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let link = profile_dir.join(&soname);
        if fs::symlink_metadata(&link).is_err() {
            // A failure here only affects running from target/; ignore it.
            let _ = std::os::unix::fs::symlink("libsock.so", &link);
        }
    }
}
