//! `cete start`: brings up a node — its actors, then its three listeners (Raft, gRPC, HTTP) —
//! joins or forms its cluster, and runs until SIGINT or SIGTERM, then shuts down in order.

use anyhow::Context;
use cete_actors::cluster::node::Metadata;
use cete_actors::cluster::WasRemoved;
use cete_actors::command::Member;
use cete_actors::deadlines::SHUTDOWN_GRACE;
use cete_actors::raft::Bootstrap;
use cete_actors::system::{start_node, NodeSettings};
use cete_actors::wire::address::listen_addr;
use cete_actors::wire::tls::ClientTls;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::Config;
use crate::stopping::StopSignal;

/// Runs a node until it is told to stop.
///
/// The node's core — Raft (openraft's tasks and the RaftActor), the ClusterActor, the peer
/// links and both gRPC servers with their connection actors — shares one thread: the hand-offs
/// between them are the hot path of every write and read, and on one thread they cost a queue
/// push instead of a futex wake-up and a context switch (measured: more writes and reads per
/// second than with a multi-threaded runtime, 3 nodes on 2 cores). The HTTP workers, the
/// StoreActor and the log's flush thread run beside it.
pub fn run(config: Config) -> anyhow::Result<()> {
    let system = actix_rt::System::new();
    system.block_on(run_node(config))
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    let raft_listen = listen_addr(&config.raft_address)?;
    let grpc_listen = listen_addr(&config.grpc_address)?;
    let http_listen = listen_addr(&config.http_address)?;

    let me = Member {
        name: config.id.clone(),
        raft_address: config.raft_address.clone(),
        metadata: Metadata { grpc_address: config.grpc_address.clone(), http_address: config.http_address.clone() },
    };
    let tls = NodeTls::load(&config)?;
    let settings = NodeSettings {
        me: me.clone(),
        data_directory: config.data_directory.clone(),
        snapshot_every: config.snapshot_every,
        history_retention: config.history_retention,
        max_value_bytes: config.max_value_bytes,
        peer_tls: tls.as_ref().map(|t| t.peers.clone()),
    };
    let node = start_node(settings).await.context("cannot start the node")?;
    log::info!("node {} starting with data in {}", config.id, config.data_directory.display());

    let (stop_signal, stopping) = StopSignal::new();
    let raft_server =
        crate::grpc::serve_raft(raft_listen, node.handles.clone(), tls.as_ref().map(|t| t.raft.clone()), &stopping)
            .with_context(|| format!("cannot listen for raft on {}", config.raft_address))?;
    let grpc_server =
        crate::grpc::serve_clients(grpc_listen, node.handles.clone(), tls.as_ref().map(|t| t.grpc.clone()), &stopping)
            .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_address))?;
    let http_server =
        crate::http::serve(http_listen, node.handles.clone(), tls.as_ref().map(|t| t.http.clone()), &stopping)
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_address))?;
    let http_handle = http_server.handle();
    let raft_task = tokio::spawn(raft_server);
    let grpc_task = tokio::spawn(grpc_server);
    let http_task = actix_rt::spawn(http_server);

    match peer_to_join(&config) {
        // It said so as it started, and serves only to say so: no joining, no resuming.
        _ if node.handles.cluster.send(WasRemoved).await?.is_some() => {}
        _ if node.handles.raft.send(cete_actors::raft::IsInitialized).await?? => {
            log::info!("resuming the cluster recorded in {}", config.data_directory.display());
        }
        Some(peer) => {
            crate::join::join_cluster(&peer, &me, tls.as_ref().map(|t| &t.peers)).await?;
            log::info!("joined the cluster through {peer}");
        }
        None => {
            node.handles.raft.send(Bootstrap).await??;
            log::info!("formed a new one-node cluster as {}", config.id);
        }
    }
    log::info!(
        "serving raft on {}, gRPC on {}, HTTP on {}",
        config.raft_address,
        config.grpc_address,
        config.http_address
    );

    wait_for_signal().await;
    log::info!("shutting down");
    hand_over_leadership(&node.handles).await;
    stop_signal.raise();
    // All three listeners drain at once. Long-lived streams (peers' replication and forward
    // streams, watches) end as the signal is raised; other calls in flight get a grace period,
    // and the few that may outlast it (a join waiting for a catch-up) are cut off after it.
    tokio::join!(http_handle.stop(true), drain("gRPC", grpc_task), drain("raft", raft_task));
    let _ = http_task.await;
    node.shutdown().await;
    log::info!("stopped");
    Ok(())
}

/// The peer to join through, if any. A peer address that dials this node's own gRPC listener
/// means "form the cluster", as it did in Go (whose README starts node1 with
/// `--peer-grpc-address` naming itself): asking oneself to be added would wait forever for a
/// leader that can never exist.
fn peer_to_join(config: &Config) -> Option<String> {
    let peer = config.peer_grpc_address.as_deref()?;
    if cete_actors::wire::address::dials_listener(peer, &config.grpc_address) {
        log::info!(
            "--peer-grpc-address {peer} is this node's own gRPC address ({}): forming the cluster here",
            config.grpc_address
        );
        return None;
    }
    Some(peer.to_string())
}

/// A leader that is asked to stop hands its leadership to the most up-to-date follower first,
/// while it still serves (writes that reach it meanwhile are routed to the new leader), so
/// that the cluster does not wait out an election timeout: a rolling restart sees no outage.
/// A follower, or a leader without another voter, goes on stopping at once.
async fn hand_over_leadership(handles: &cete_actors::connection::NodeHandles) {
    use cete_actors::deadlines::STOP_HANDOVER;
    use cete_actors::raft::{TransferLeader, WriteRejection};
    match handles.raft.send(TransferLeader { to: None, within: STOP_HANDOVER }).await {
        Ok(Ok(leader)) if leader != handles.me => log::info!("handed the leadership over to {leader} before stopping"),
        Ok(Ok(_)) | Ok(Err(WriteRejection::NotLeader { .. })) => {}
        Ok(Err(WriteRejection::Failed(cete_actors::CeteError::InvalidArgument(_)))) => {}
        Ok(Err(WriteRejection::Failed(e))) => log::warn!("stopping as the leader: {e}"),
        Err(e) => log::warn!("stopping as the leader: {e}"),
    }
}

async fn drain(name: &str, task: tokio::task::JoinHandle<anyhow::Result<()>>) {
    let abort = task.abort_handle();
    match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
        Ok(Ok(Err(e))) => log::warn!("{name} server: {e:#}"),
        Ok(Err(e)) if !e.is_cancelled() => log::warn!("{name} server task: {e}"),
        Err(_) => {
            log::warn!("{name} server still had calls in flight after {SHUTDOWN_GRACE:?}; closing them");
            abort.abort();
        }
        _ => {}
    }
}

/// TLS for all three listeners and for the node's own connections to its peers, when the
/// node has a certificate and key.
struct NodeTls {
    http: rustls::ServerConfig,
    /// The client API, which asks clients for a certificate with `--client-ca-file`.
    grpc: ServerTlsConfig,
    /// The node-to-node port, where peers are known by the node certificate they trust.
    raft: ServerTlsConfig,
    peers: ClientTls,
}

impl NodeTls {
    fn load(config: &Config) -> anyhow::Result<Option<Self>> {
        let (Some(certificate), Some(key)) = (&config.certificate_file, &config.key_file) else {
            return Ok(None);
        };
        let client_ca = config.client_ca_file.as_deref();
        let http = cete_actors::wire::tls::server_config(certificate, key, client_ca)?;
        let read =
            |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let raft = ServerTlsConfig::new().identity(Identity::from_pem(read(certificate)?, read(key)?));
        let grpc = match client_ca {
            Some(ca) => raft.clone().client_ca_root(Certificate::from_pem(read(ca)?)),
            None => raft.clone(),
        };
        // Peers present the same certificate; they are checked against --common-name. A node
        // that joins through another's client API shows it as its client certificate.
        let peers = ClientTls::new(certificate, config.common_name.as_deref())?.with_identity(certificate, key)?;
        Ok(Some(NodeTls { http, grpc, raft, peers }))
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            log::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
