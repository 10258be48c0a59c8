//! The cluster's identity: a random 64-bit id drawn when a cluster is created (a node forms
//! one, or `cete restore` builds one), kept in `<data>/cluster-id`, and carried by every
//! request between nodes as gRPC metadata (`cete-cluster-id`), as etcd's messages carry its
//! cluster ID. A node refuses a request from a node of another cluster, so two clusters never
//! mix, even where one reaches the other at an address a member of its own once had: a
//! cluster restored from a backup on the addresses of the cluster it came from, say, is never
//! taken for a member of it, nor it of the restored one.
//!
//! A node that holds no Raft state has no id: it takes the id of the first cluster that
//! sends it one (the cluster that is adding it). The one request a node of another cluster
//! may send is the one that asks a node to give up its own one-node cluster to join
//! ([`crate::cluster::peer::Forwarded::PrepareToJoin`]). A request without an id (from a build
//! before ids, or a cluster formed before them) is served as before, and a cluster formed
//! before ids keeps none.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cete_proto::raft::raft_client::RaftClient;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const FILE_NAME: &str = "cluster-id";

/// A client of a peer's Raft service whose every request carries this node's cluster id.
pub type PeerClient = RaftClient<InterceptedService<Channel, ClusterIdentity>>;
pub const METADATA_KEY: &str = "cete-cluster-id";

/// This node's cluster id, shared by everything that talks to peers or answers them.
#[derive(Clone, Debug)]
pub struct ClusterIdentity {
    path: PathBuf,
    id: Arc<Mutex<Option<u64>>>,
    /// When a refusal was last logged: one line per [`REFUSALS_LOGGED_EVERY`], not one per
    /// heartbeat of a stranger.
    refusal_logged: Arc<Mutex<Option<Instant>>>,
}

const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    (text.len() == 16).then(|| u64::from_str_radix(text, 16).ok()).flatten()
}

impl ClusterIdentity {
    /// The id recorded in data directory `dir`, if any.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse(&text).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{} does not hold a cluster id", path.display()))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(ClusterIdentity { path, id: Arc::new(Mutex::new(id)), refusal_logged: Arc::default() })
    }

    pub fn get(&self) -> Option<u64> {
        *self.held()
    }

    /// Draws the id of a new cluster and records it (durably) before answering it.
    pub fn create(&self) -> io::Result<u64> {
        let id = crate::random::random_u64().max(1);
        self.set(Some(id))?;
        Ok(id)
    }

    /// This node no longer belongs to a cluster (it gives its state up to join another).
    pub fn forget(&self) -> io::Result<()> {
        self.set(None)
    }

    fn held(&self) -> MutexGuard<'_, Option<u64>> {
        self.id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, id: Option<u64>) -> io::Result<()> {
        self.record(&mut self.held(), id)
    }

    /// Records `id` on disk, durably, then in `held` (the lock is held throughout, so that two
    /// requests cannot each record a different id).
    fn record(&self, held: &mut MutexGuard<'_, Option<u64>>, id: Option<u64>) -> io::Result<()> {
        match id {
            Some(id) => {
                let tmp = self.path.with_extension("tmp");
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(format!("{}\n", hex(id)).as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &self.path)?;
            }
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        **held = id;
        Ok(())
    }

    /// A client of the peer at the other end of `channel`, stamping every request.
    pub fn client(&self, channel: Channel) -> PeerClient {
        RaftClient::with_interceptor(channel, self.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Marks a request to a peer as coming from this cluster.
    pub fn stamp<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(id) = self.get() {
            if let Ok(value) = MetadataValue::try_from(hex(id)) {
                request.metadata_mut().insert(METADATA_KEY, value);
            }
        }
    }

    /// Whether a request from a peer with this metadata may be served: it is of this node's
    /// cluster, or says none; a node without an id takes the sender's.
    pub fn admit(&self, metadata: &MetadataMap) -> Result<(), tonic::Status> {
        let Some(value) = metadata.get(METADATA_KEY) else { return Ok(()) };
        let theirs = value
            .to_str()
            .ok()
            .and_then(parse)
            .ok_or_else(|| tonic::Status::invalid_argument(format!("{METADATA_KEY} is not a cluster id")))?;
        let mut held = self.held();
        match *held {
            Some(own) if own == theirs => Ok(()),
            Some(own) => {
                let why = format!(
                    "this node belongs to cluster {}, and the request came from a node of cluster {}: the two \
                     never mix (a node of one reaches the other at an address a member once had?)",
                    hex(own),
                    hex(theirs)
                );
                let mut logged = self.refusal_logged.lock().unwrap_or_else(|p| p.into_inner());
                if logged.is_none_or(|at| at.elapsed() >= REFUSALS_LOGGED_EVERY) {
                    log::warn!("refused a peer's request: {why}");
                    *logged = Some(Instant::now());
                }
                Err(tonic::Status::failed_precondition(why))
            }
            None => {
                self.record(&mut held, Some(theirs)).map_err(|e| {
                    tonic::Status::unavailable(format!("cannot record the cluster id in {}: {e}", self.path.display()))
                })?;
                log::info!("this node is now a member of cluster {}", hex(theirs));
                Ok(())
            }
        }
    }
}

impl tonic::service::Interceptor for ClusterIdentity {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.stamp(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_from(identity: &ClusterIdentity) -> MetadataMap {
        let mut request = tonic::Request::new(());
        identity.stamp(&mut request);
        request.metadata().clone()
    }

    #[test]
    fn a_node_serves_its_own_cluster_and_refuses_another() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ours = ClusterIdentity::open(a.path()).unwrap();
        let theirs = ClusterIdentity::open(b.path()).unwrap();
        assert_eq!(ours.get(), None);
        let id = ours.create().unwrap();
        theirs.create().unwrap();
        assert!(ours.admit(&request_from(&ours)).is_ok());
        let refused = ours.admit(&request_from(&theirs)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        // Requests without an id (earlier builds) are served.
        assert!(ours.admit(&MetadataMap::new()).is_ok());
        // It is on disk.
        assert_eq!(ClusterIdentity::open(a.path()).unwrap().get(), Some(id));
    }

    #[test]
    fn a_node_without_an_id_takes_the_first_clusters_and_can_forget_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cluster = ClusterIdentity::open(a.path()).unwrap();
        let id = cluster.create().unwrap();
        let joiner = ClusterIdentity::open(b.path()).unwrap();
        joiner.admit(&request_from(&cluster)).unwrap();
        assert_eq!(joiner.get(), Some(id));
        assert_eq!(ClusterIdentity::open(b.path()).unwrap().get(), Some(id));
        joiner.forget().unwrap();
        assert_eq!(ClusterIdentity::open(b.path()).unwrap().get(), None);
        let mut bad = MetadataMap::new();
        bad.insert(METADATA_KEY, MetadataValue::from_static("not-an-id"));
        assert_eq!(joiner.admit(&bad).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
