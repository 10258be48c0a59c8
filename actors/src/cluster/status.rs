//! Every member's Raft progress, as `GET /v1/status` (and the dashboard) shows it: this node's
//! own from its metrics, the others' asked over their links at once. The question goes off
//! the forward stream ([`Ask`]), so a member of an earlier build refuses it without harm and
//! shows as not answering.

use std::collections::BTreeMap;

use actix::prelude::*;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use cete_proto::kvs;

use super::peer::{Ask, ForwardReply, Forwarded};
use super::{state_name, ClusterActor};

/// One node's Raft, as it sees itself. Indexes are 0 where there is none yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// Leader, Follower, Candidate, Learner, Removed or Shutdown.
    pub state: String,
    /// The leader it follows ("" when it knows none).
    pub leader: String,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
}

/// A member in the status: what it answered, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    #[serde(flatten)]
    pub raft: Option<RaftStatus>,
    /// Entries the leader committed that this member has not applied yet (known when both
    /// answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/status`: this node, then every member (this one included) by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub id: String,
    #[serde(flatten)]
    pub raft: RaftStatus,
    /// This node's store revision (left out while it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub members: BTreeMap<String, MemberStatus>,
}

impl StatusReport {
    /// Gathers the answers, and measures each member's lag against the leader's commit index
    /// (the leader's own answer, or failing it, the furthest any member says was committed).
    fn gather(id: String, raft: RaftStatus, answers: Vec<(String, Result<RaftStatus, String>)>) -> Self {
        let committed = answers
            .iter()
            .find_map(|(name, answer)| answer.as_ref().ok().filter(|s| s.state == "Leader" && s.leader == *name))
            .map(|leader| leader.committed_index)
            .or_else(|| answers.iter().filter_map(|(_, a)| a.as_ref().ok()).map(|s| s.committed_index).max());
        let members = answers
            .into_iter()
            .map(|(name, answer)| {
                let status = match answer {
                    Ok(raft) => MemberStatus {
                        lag: committed.map(|c| c.saturating_sub(raft.applied_index)),
                        raft: Some(raft),
                        error: None,
                    },
                    Err(error) => MemberStatus { raft: None, lag: None, error: Some(error) },
                };
                (name, status)
            })
            .collect();
        StatusReport { id, raft, revision: None, members }
    }
}

impl ClusterActor {
    fn raft_status(&self) -> RaftStatus {
        let m = &self.latest;
        let state = if self.standing.removed().is_some() { "Removed" } else { state_name(m.state) };
        RaftStatus {
            state: state.into(),
            leader: self.leader_id().and_then(|id| self.member_name(id)).unwrap_or_default(),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.local_committed.map(|c| c.index).unwrap_or(0),
            applied_index: m.last_applied.map(|a| a.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|s| s.index).unwrap_or(0),
        }
    }
}

/// This node's own Raft status (what a peer's [`Forwarded::RaftStatus`] asks).
#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct DescribeRaft;

impl Handler<DescribeRaft> for ClusterActor {
    type Result = MessageResult<DescribeRaft>;

    fn handle(&mut self, _: DescribeRaft, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.raft_status())
    }
}

/// Every member's status, asked of them all at once.
#[derive(Message)]
#[rtype(result = "StatusReport")]
pub struct DescribeStatus;

impl Handler<DescribeStatus> for ClusterActor {
    type Result = ResponseFuture<StatusReport>;

    fn handle(&mut self, _: DescribeStatus, _: &mut Self::Context) -> Self::Result {
        let (id, own) = (self.me.name.clone(), self.raft_status());
        let mut answers = vec![(id.clone(), Ok(own.clone()))];
        let mut asks = Vec::new();
        for (_, member) in self.membership().membership().nodes().filter(|(_, m)| m.name != self.me.name) {
            match self.links.get(&member.name) {
                Some((_, link)) => asks.push((member.name.clone(), link.clone())),
                None => answers.push((member.name.clone(), Err("no link to it yet".to_string()))),
            }
        }
        Box::pin(async move {
            let asked = join_all(asks.into_iter().map(|(name, link)| async move {
                let answer = match link.send(Ask(Forwarded::RaftStatus)).await {
                    Ok(Ok(ForwardReply::RaftStatus(status))) => Ok(status),
                    Ok(Ok(ForwardReply::NotSent(why))) => Err(format!("could not be reached: {why}")),
                    Ok(Ok(other)) => Err(format!("it answered {other:?}, not its status (an earlier build?)")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (name, answer)
            }));
            answers.extend(asked.await);
            StatusReport::gather(id, own, answers)
        })
    }
}

impl From<RaftStatus> for kvs::RaftStatus {
    fn from(s: RaftStatus) -> Self {
        kvs::RaftStatus {
            state: s.state,
            leader: s.leader,
            term: s.term,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
        }
    }
}

impl From<kvs::RaftStatus> for RaftStatus {
    fn from(s: kvs::RaftStatus) -> Self {
        RaftStatus {
            state: s.state,
            leader: s.leader,
            term: s.term,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
        }
    }
}

impl From<StatusReport> for kvs::StatusResponse {
    fn from(report: StatusReport) -> Self {
        let member = |m: MemberStatus| kvs::MemberStatus {
            raft: m.raft.map(Into::into),
            lag: m.lag,
            error: m.error.unwrap_or_default(),
        };
        kvs::StatusResponse {
            id: report.id,
            raft: Some(report.raft.into()),
            revision: report.revision,
            members: report.members.into_iter().map(|(name, m)| (name, member(m))).collect(),
        }
    }
}

/// What the gRPC answer says, as `/v1/status` shows it (for `cete status`).
impl From<kvs::StatusResponse> for StatusReport {
    fn from(response: kvs::StatusResponse) -> Self {
        let member = |m: kvs::MemberStatus| MemberStatus {
            raft: m.raft.map(Into::into),
            lag: m.lag,
            error: (!m.error.is_empty()).then_some(m.error),
        };
        StatusReport {
            id: response.id,
            raft: response.raft.map(Into::into).unwrap_or_default(),
            revision: response.revision,
            members: response.members.into_iter().map(|(name, m)| (name, member(m))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, leader: &str, committed: u64, applied: u64) -> RaftStatus {
        RaftStatus {
            state: state.into(),
            leader: leader.into(),
            term: 2,
            last_log_index: committed,
            committed_index: committed,
            applied_index: applied,
            snapshot_index: 0,
        }
    }

    #[test]
    fn lag_is_measured_against_the_leaders_commit_index() {
        let answers = vec![
            ("a".to_string(), Ok(status("Follower", "b", 90, 80))),
            ("b".to_string(), Ok(status("Leader", "b", 100, 100))),
            ("c".to_string(), Err("unreachable".to_string())),
        ];
        let gathered = StatusReport::gather("a".into(), status("Follower", "b", 90, 80), answers);
        assert_eq!(gathered.members["a"].lag, Some(20));
        assert_eq!(gathered.members["b"].lag, Some(0));
        assert_eq!(gathered.members["c"].lag, None);
        // Through the gRPC answer and back, it is the same.
        let back = StatusReport::from(kvs::StatusResponse::from(gathered.clone()));
        assert_eq!(back, gathered);
        let json = serde_json::to_value(&gathered).unwrap();
        assert_eq!(json["members"]["a"]["applied_index"], 80);
        assert_eq!(json["members"]["c"], serde_json::json!({"error": "unreachable"}));
        assert_eq!(json["state"], "Follower");
        assert_eq!(json["leader"], "b");
    }

    #[test]
    fn without_the_leaders_answer_the_furthest_commit_counts() {
        let answers =
            vec![("a".to_string(), Ok(status("Follower", "b", 90, 85))), ("b".to_string(), Err("down".to_string()))];
        let gathered = StatusReport::gather("a".into(), status("Follower", "b", 90, 85), answers);
        assert_eq!(gathered.members["a"].lag, Some(5));
    }
}
