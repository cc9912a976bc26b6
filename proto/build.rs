//! Generates the prost messages and tonic services for `proto/fleetset/v1/fleetset.proto`, and
//! the OpAMP messages of `proto/opamp/` (package `opamp.proto`), with protox (pure Rust), so
//! builds need no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["fleetset/v1/fleetset.proto"], ["proto"])?;
    // The encoded descriptor set serves gRPC server reflection (grpcurl and friends).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("fleetset_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    let opamp = protox::compile(["opamp.proto"], ["proto/opamp"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_fds(opamp)?;
    Ok(())
}
