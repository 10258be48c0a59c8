//! `cete healthcheck`: print `{"alive":..,"ready":..}` and exit non-zero unless ready, so it
//! can serve as a container or load-balancer health probe. With `--grpc-health` it asks the
//! standard gRPC health service (`grpc.health.v1.Health`, as Kubernetes' gRPC probes and
//! grpc_health_probe do) for `kvs.KVS`, and adds its `status`.

use std::process::ExitCode;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Ask the standard gRPC health service (grpc.health.v1.Health) instead of kvs.KVS's own
    /// liveness and readiness calls
    #[arg(long)]
    pub grpc_health: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    if args.grpc_health {
        return grpc_health(&args.client).await;
    }
    let mut client = args.client.connect().await?;
    let alive = client.liveness_check(()).await.map_err(status_error)?.into_inner().alive;
    // A node may refuse the readiness call outright while it has no leader: that is "not
    // ready", the answer this command exists to give, not a failure of the command.
    let ready = match client.readiness_check(()).await {
        Ok(response) => response.into_inner().ready,
        Err(_) => false,
    };
    emit_json(&serde_json::json!({ "alive": alive, "ready": ready }))?;
    Ok(if alive && ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn grpc_health(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let mut health = HealthClient::new(args.channel_to(&args.grpc_address).await?);
    let request = HealthCheckRequest { service: "kvs.KVS".into() };
    let status = health.check(request).await.map_err(status_error)?.into_inner().status();
    let ready = status == ServingStatus::Serving;
    emit_json(&serde_json::json!({ "alive": true, "ready": ready, "status": status.as_str_name() }))?;
    Ok(if ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
