//! The leader that removed itself tells its successor to campaign (who that is, and when it
//! campaigns, is the Raft side: [`crate::raft::handover`]).

use crate::cluster::peer::{call_peer, ForwardReply, Forwarded};
use crate::command::Member;
use crate::deadlines::HAND_OVER;
use crate::wire::identity::ClusterIdentity;
use crate::wire::tls::ClientTls;

/// Tells `successor` that `leaving`, the leader, has left: it is to campaign.
pub async fn hand_over(successor: Member, leaving: String, tls: Option<ClientTls>, identity: ClusterIdentity) {
    let client = match crate::raft::network::peer_client(&successor.raft_address, tls.as_ref(), &identity) {
        Ok(client) => Some(client),
        Err(e) => {
            log::warn!("cannot hand the leadership over to {}: {e}", successor.name);
            return;
        }
    };
    let request = Forwarded::Campaign { leaving };
    match call_peer(client, &successor, &request, HAND_OVER).await {
        Ok(ForwardReply::Done) => log::info!("handed the leadership over to {}", successor.name),
        // The others elect a leader anyway, only later.
        other => log::warn!("{} did not take the leadership over: {other:?}", successor.name),
    }
}
