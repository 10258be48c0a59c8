//! `cete healthcheck`: print `{"alive":..,"ready":..}` and exit non-zero unless ready, so it
//! can serve as a container or load-balancer health probe.

use std::process::ExitCode;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
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
