//! Links the `fleetset-agent` executable as a position-dependent (non-PIE) executable on Linux
//! (`-no-pie`) unless the C runtime is linked statically (`+crt-static`: the container image's
//! static build, which stays static-pie). The code stays position-independent; only the link
//! changes: the dynamic linker then has almost no relocations to apply at start, so the
//! relocation table and the relocated read-only data are never paged in and dirtied. Measured
//! with `scripts/footprint.sh`: about 330 KiB less peak RSS (docs/benchmarks.md).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if os == "linux" && !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bin=fleetset-agent=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
