//! fleetset's patch of zmq-sys 0.12.0's build script: the vendored libzmq (zeromq-src) is built
//! with CURVE, its crypto from libsodium. `libsodium-sys-stable` (a normal dependency) compiles
//! libsodium from the source tarball it ships (its signature checked by its build script, no
//! download) and exports, through its `links = "sodium"` metadata, `include` and `lib`, which
//! cargo hands to this script as `DEP_SODIUM_INCLUDE` and `DEP_SODIUM_LIB`. Upstream passes
//! `with_libsodium(None)`, which compiles CURVE out; libzmq's bundled TweetNaCl was never audited
//! (libzmq issue 3006), libsodium is.

use std::env;

fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");
    println!("cargo:rerun-if-env-changed=DEP_SODIUM_INCLUDE");
    println!("cargo:rerun-if-env-changed=DEP_SODIUM_LIB");

    let include = env::var("DEP_SODIUM_INCLUDE")
        .expect("libsodium-sys-stable exports its include directory (DEP_SODIUM_INCLUDE)");
    let lib = env::var("DEP_SODIUM_LIB")
        .expect("libsodium-sys-stable exports its library directory (DEP_SODIUM_LIB)");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}

fn main() {
    configure()
}
