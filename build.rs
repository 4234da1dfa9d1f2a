//! Generates the C header from the Rust sources with cbindgen.
//!
//! The fresh header always goes to `$OUT_DIR/sock.h`; the test
//! `tests/header.rs` fails when the committed `include/sock.h` differs from
//! it. `make header` (SOCK_REGEN_HEADER=1) writes it into `include/`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=SOCK_REGEN_HEADER");

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
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
