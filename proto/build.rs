//! Compiles the .proto files without a system protoc: protox parses them (well-known
//! types included) and tonic-prost-build generates the messages, clients and servers.
use prost::Message;
use prost_types::FileDescriptorSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["kvs.proto", "raft.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    // One of the two protos with what it imports (prost needs the imported descriptors).
    let only = |name: &str| FileDescriptorSet {
        file: descriptors
            .file
            .iter()
            .filter(|file| file.name() == name || !protos.contains(&file.name()))
            .cloned()
            .collect(),
    };
    // What clients on --grpc-address may reflect on: kvs.proto and its imports (the Raft
    // service is served on --raft-address, to peers only).
    std::fs::write(out_dir.join("kvs_descriptors.bin"), only("kvs.proto").encode_to_vec())?;
    tonic_prost_build::configure().bytes(".").compile_fds(only("raft.proto"))?;
    // kvs.KVS in two parts: the messages and the client as tonic-prost makes them, and the
    // server with a codec of its own (src/codec.rs), which reports a request it cannot decode
    // as the client's fault. The server refers to the messages of the first part.
    tonic_prost_build::configure().bytes(".").build_server(false).compile_fds(only("kvs.proto"))?;
    let server_dir = out_dir.join("kvs_server");
    std::fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(false)
        .extern_path(".kvs", "crate::kvs")
        .codec_path("crate::codec::RequestCodec")
        .out_dir(&server_dir)
        .compile_fds(only("kvs.proto"))?;
    Ok(())
}
