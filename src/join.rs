//! Joining a cluster at start-up (`--peer-grpc-address`): ask any node of the cluster, over
//! its public gRPC API, to add this one. The node asked routes the request to the leader,
//! which adds this node as a learner, lets it catch up, and makes it a voter.

use std::time::{Duration, Instant};

use anyhow::Context;
use cete_actors::cluster::node::NodeInfo;
use cete_actors::command::Member;
use cete_actors::deadlines::JOIN_RETRY_FOR;
use cete_actors::wire::tls::{refused_by_tls, ClientTls};
use cete_proto::kvs::{kvs_client::KvsClient, JoinRequest};

pub async fn join_cluster(peer: &str, me: &Member, tls: Option<&ClientTls>) -> anyhow::Result<()> {
    let channel = cete_actors::wire::tls::channel(peer, tls, Duration::from_secs(3))
        .with_context(|| format!("bad peer address {peer:?}"))?;
    let node = NodeInfo { raft_address: me.raft_address.clone(), metadata: me.metadata.clone(), state: String::new() };
    let request = JoinRequest { id: me.name.clone(), node: Some(node.into()) };
    let deadline = Instant::now() + JOIN_RETRY_FOR;
    let mut pause = Duration::from_millis(200);
    loop {
        let attempt = async {
            let mut client = KvsClient::new(channel.clone());
            client.join(request.clone()).await?;
            Ok::<_, anyhow::Error>(())
        };
        let error = match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // A certificate the other side refuses (or that this side refuses) stays refused.
        if refused_by_tls(error.as_ref()) {
            return Err(error).with_context(|| format!("cannot join the cluster at {peer}: TLS refused"));
        }
        // A refusal (the node holds data, a name clash) will not change by retrying.
        if let Some(status) = error.downcast_ref::<tonic::Status>() {
            if matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition) {
                anyhow::bail!("the cluster at {peer} refused to add {}: {}", me.name, status.message());
            }
        }
        if Instant::now() + pause > deadline {
            return Err(error).with_context(|| format!("cannot join the cluster at {peer}"));
        }
        log::warn!("joining through {peer} failed ({error:#}); retrying in {pause:?}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
