//! fleetset's patch of zmq-sys 0.12.0's build script: the vendored libzmq (zeromq-src) is built
//! with CURVE, its crypto from libsodium. `libsodium-sys-stable` (a normal dependency) compiles
//! libsodium from the source tarball it ships (its signature checked by its build script, no
//! download) and exports, through its `links = "sodium"` metadata, `include` and `lib`, which
//! cargo hands to this script as `DEP_SODIUM_INCLUDE` and `DEP_SODIUM_LIB`. Upstream passes
//! `with_libsodium(None)`, which compiles CURVE out; libzmq's bundled TweetNaCl was never audited
//! (libzmq issue 3006), libsodium is.
//!
//! libzmq's C++ runtime (libstdc++) is linked statically: the binaries then need no libstdc++ on
//! the host or in a `FROM scratch` image, and the agent maps only the libstdc++ objects libzmq
//! uses instead of the whole shared library (about 1.4 MiB of its resident set). zeromq-src
//! builds with `cc`, which reads `CXXSTDLIB_STATIC` (cc 1.11 in Cargo.lock; emitted as
//! `static:-bundle=stdc++`, found by the final link in the C++ toolchain's own directories).

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
    // This script's process only: read by cc inside zeromq-src's build().
    env::set_var("CXXSTDLIB_STATIC", "1");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}

fn main() {
    configure()
}
