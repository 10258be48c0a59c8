//! Compiles the .proto files without a system protoc: protox parses them (well-known
//! types included) and tonic-prost-build generates the messages, clients and servers.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["kvs.proto", "raft.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().bytes(".").compile_fds(descriptors)?;
    Ok(())
}
