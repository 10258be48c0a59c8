//! The gRPC front doors: `kvs.KVS` for clients on `--grpc-address` (beside the standard
//! health and reflection services, [`health`]), and the node-to-node `cete.raft.Raft` service
//! on `--raft-address`.
//!
//! Every accepted client connection gets its own ConnectionActor: the accepted socket is
//! wrapped in [`ConnectionIo`], whose connect info (copied by tonic into every request's
//! extensions) carries the actor's address, and whose drop — when hyper lets go of the
//! connection — stops the actor.

mod backup;
mod health;
mod kvs;
mod lease;
mod limit;
mod raft;
pub mod txn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::prelude::*;
use cete_actors::connection::{CloseConnection, ConnectionActor, NodeHandles};
use cete_actors::CeteError;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpIncoming, TlsConnectInfo};
use tonic::transport::{Server, ServerTlsConfig};
use tonic::Status;

pub use self::kvs::KvsService;
pub use self::raft::RaftService;
use crate::stopping::Stopping;

/// Maps the domain error to a gRPC status, once for every service.
pub fn status(err: CeteError) -> Status {
    let message = err.to_string();
    match err {
        CeteError::InvalidArgument(_) => Status::invalid_argument(message),
        CeteError::NotFound(_) => Status::not_found(message),
        CeteError::TooLarge { .. } => Status::resource_exhausted(message),
        CeteError::Conflict(_) => Status::failed_precondition(message),
        CeteError::Unavailable(_) => Status::unavailable(message),
        CeteError::Internal(_) => Status::internal(message),
        CeteError::ConditionFailed { .. } => Status::failed_precondition(message),
        CeteError::Compacted { .. } => Status::out_of_range(message),
    }
}

/// What a request knows about the connection it came on.
#[derive(Clone)]
pub struct ConnectionInfo {
    pub actor: Addr<ConnectionActor>,
}

/// Stops the connection's actor when the connection is dropped.
struct CloseOnDrop(Addr<ConnectionActor>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.do_send(CloseConnection);
    }
}

/// An accepted client socket, tied to its ConnectionActor.
pub struct ConnectionIo {
    io: TcpStream,
    info: ConnectionInfo,
    _close: CloseOnDrop,
}

impl Connected for ConnectionIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connection of a request, whether it came in plain or over TLS.
pub fn connection_of<T>(request: &tonic::Request<T>) -> Result<Addr<ConnectionActor>, Status> {
    let extensions = request.extensions();
    if let Some(info) = extensions.get::<ConnectionInfo>() {
        return Ok(info.actor.clone());
    }
    if let Some(info) = extensions.get::<TlsConnectInfo<ConnectionInfo>>() {
        return Ok(info.get_ref().actor.clone());
    }
    Err(Status::internal("request without a connection"))
}

/// Accepts client connections on `listen`, starting a ConnectionActor for each on the node's
/// own thread, beside the Raft and cluster actors its requests go to: a message between them
/// is a queue push, not a wake-up of another thread.
fn accept_connections(
    listen: SocketAddr,
    handles: NodeHandles,
    door: &'static str,
) -> std::io::Result<impl Stream<Item = std::io::Result<ConnectionIo>>> {
    let arbiter = Arbiter::current();
    let incoming = TcpIncoming::bind(listen)?.with_nodelay(Some(true));
    Ok(incoming.map(move |accepted| {
        let io = accepted?;
        let remote = io.peer_addr().ok();
        let handles = handles.clone();
        let actor = ConnectionActor::start_in_arbiter(&arbiter, move |_| ConnectionActor::new(handles, door, remote));
        Ok(ConnectionIo { io, info: ConnectionInfo { actor: actor.clone() }, _close: CloseOnDrop(actor) })
    }))
}

/// The limits every Cete gRPC server runs with: bounded streams per connection, keepalive to
/// notice dead peers, and no connection living forever.
fn server_builder(tls: Option<ServerTlsConfig>) -> anyhow::Result<Server> {
    let mut server = Server::builder()
        .max_concurrent_streams(1024)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_connection_age(Duration::from_secs(3600))
        .max_connection_age_grace(Duration::from_secs(30));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    Ok(server)
}

/// Binds `listen` for `kvs.KVS`; the returned future serves until the node is stopping (and
/// its calls have drained).
pub fn serve_clients(
    listen: SocketAddr,
    handles: NodeHandles,
    tls: Option<ServerTlsConfig>,
    stopping: &Stopping,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let max_message = handles.max_value_bytes.saturating_add(1 << 20);
    let handles_cluster = handles.cluster.clone();
    let incoming = accept_connections(listen, handles, "grpc")?;
    let shutdown = stopping.clone().wait();
    // tonic's own limit stays as a backstop; MessageLimit refuses first, with the right code.
    let service = cete_proto::kvs::kvs_server::KvsServer::new(KvsService::new(stopping.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let service = limit::MessageLimit::new(service, max_message);
    let health = health::service(handles_cluster, stopping);
    let (reflection, reflection_v1alpha) = health::reflection()?;
    let router = server_builder(tls)?
        .add_service(service)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha);
    Ok(async move {
        let result = router.serve_with_incoming_shutdown(incoming, shutdown).await;
        Ok(result?)
    })
}

/// Binds `listen` for the node-to-node Raft service (each peer connection with its own
/// connection actor, for the requests peers route here); the returned future serves until the
/// node is stopping (and its calls have drained).
pub fn serve_raft(
    listen: SocketAddr,
    handles: NodeHandles,
    tls: Option<ServerTlsConfig>,
    stopping: &Stopping,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let (raft, identity) = (handles.raft.clone(), handles.identity.clone());
    let incoming = accept_connections(listen, handles, "peer")?;
    let shutdown = stopping.clone().wait();
    let service = cete_proto::raft::raft_server::RaftServer::new(RaftService::new(raft, identity, stopping.clone()))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let router = server_builder(tls)?.add_service(service);
    Ok(async move {
        let result = router.serve_with_incoming_shutdown(incoming, shutdown).await;
        Ok(result?)
    })
}
