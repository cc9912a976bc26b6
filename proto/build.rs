//! Generates the prost messages and tonic service for `proto/fleetset/v1/fleetset.proto`
//! with protox (pure Rust), so builds need no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["fleetset/v1/fleetset.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
