//! The standard gRPC services beside `kvs.KVS` on `--grpc-address`: health checking
//! (`grpc.health.v1.Health`, tonic-health), SERVING only while the node is ready, so that
//! Kubernetes' gRPC probes and grpc_health_probe see what `/v1/readiness_check` says; and
//! server reflection (tonic-reflection, v1 and v1alpha), so that grpcurl, Postman and other
//! generic clients can call Cete without the .proto files.

use std::time::Duration;

use actix::Addr;
use cete_actors::cluster::{ClusterActor, Readiness};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::stopping::Stopping;

/// How often the health service asks whether the node is ready.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The services health is reported for: the server as a whole ("") and `kvs.KVS`.
const SERVICES: [&str; 2] = ["", "kvs.KVS"];

/// The health service, kept in step with the node's readiness until the node stops.
pub fn service(cluster: Addr<ClusterActor>, stopping: &Stopping) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(follow_readiness(reporter, cluster, stopping.clone()));
    service
}

async fn follow_readiness(reporter: HealthReporter, cluster: Addr<ClusterActor>, stopping: Stopping) {
    let stopped = stopping.wait();
    tokio::pin!(stopped);
    let mut told = None;
    loop {
        let status = match cluster.send(Readiness).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(_)) => ServingStatus::NotServing,
            // The node is going away.
            Err(_) => break,
        };
        if told != Some(status) {
            log::debug!("gRPC health: {status:?}");
            for name in SERVICES {
                reporter.set_service_status(name, status).await;
            }
            told = Some(status);
        }
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    for name in SERVICES {
        reporter.set_service_status(name, ServingStatus::NotServing).await;
    }
}

/// Server reflection over `kvs.proto` and the health service (with the well-known types they
/// import).
pub fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cete_proto::KVS_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
