//! Compiles `proto/` with protox (no system `protoc`) into prost types and
//! their proto3 JSON mapping (pbjson).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/chorus/v1/client.proto",
        "proto/chorus/v1/store.proto",
        "proto/chorus/v1/raft.proto",
        "proto/chorus/v1/peer.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("chorus_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    prost_build::Config::new()
        // Carried from the received frame to the sessions' sockets without a copy.
        .bytes([".chorus.peer.v1.Delivery.frame"])
        .compile_fds(descriptors)?;

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .build(&[".chorus.v1", ".chorus.store.v1"])?;
    Ok(())
}
