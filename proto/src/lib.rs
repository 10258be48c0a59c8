//! Cete's protobuf surface, generated from `proto/*.proto` at build time.
//!
//! `kvs` is the public API (package `kvs`, service `KVS`) that existing Cete clients speak;
//! `raft` is the node-to-node service on `--raft-address`.

#![allow(clippy::all, missing_docs)]

pub mod codec;

pub mod kvs {
    tonic::include_proto!("kvs");
    include!(concat!(env!("OUT_DIR"), "/kvs_server/kvs.rs"));
}

pub mod raft {
    tonic::include_proto!("cete.raft");
}

/// The encoded descriptor set of every Cete proto.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// The encoded descriptor set of `kvs.proto` and what it imports: what gRPC reflection on
/// `--grpc-address` describes.
pub const KVS_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kvs_descriptors.bin"));

/// The type URL under which a message is packed into `google.protobuf.Any`.
pub fn type_url(message: &str) -> String {
    format!("type.googleapis.com/kvs.{message}")
}

/// gRPC request metadata selecting read consistency: `linearizable` (default) or `serializable`.
pub const CONSISTENCY_METADATA: &str = "cete-consistency";

/// gRPC request metadata restricting a Watch to keys under a prefix.
pub const WATCH_PREFIX_METADATA: &str = "cete-watch-prefix";

/// gRPC request metadata starting a Watch at a past revision: every change from it on is
/// replayed from the history, then live ones follow.
pub const WATCH_START_REVISION_METADATA: &str = "cete-watch-start-revision";

/// Response metadata of `Set` and `Delete`: the store's revision after the write (once the
/// cluster counts revisions).
pub const REVISION_METADATA: &str = "cete-revision";

/// Request metadata of a conditional `Set` or `Delete`: apply it only if the key's mod revision
/// is this one (0: the key does not exist).
pub const IF_MOD_REVISION_METADATA: &str = "cete-if-mod-revision";

/// Request metadata of a conditional `Set` or `Delete`: apply it only if the key exists.
pub const IF_EXISTS_METADATA: &str = "cete-if-exists";

/// Request metadata of a conditional `Set`: apply it only if the key does not exist.
pub const IF_ABSENT_METADATA: &str = "cete-if-absent";
