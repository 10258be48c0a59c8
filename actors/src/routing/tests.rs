//! The router on its own: this node's Raft, its ClusterActor and the other nodes are small
//! actors of the test's, scripted through one [`World`]. The other nodes apply what they are
//! sent with the state machine's own duplicate check ([`SessionTable`]), so "applied once" is
//! judged as a real cluster judges it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use openraft::vote::RaftLeaderId as _;

use super::ports::{ClusterPorts, RaftPorts};
use super::*;
use crate::cluster::peer::{Forward, ForwardReply, Forwarded};
use crate::cluster::{refusal, ForwardTo, MembersRead, PrepareJoiner, WasRemoved};
use crate::command::{Command, CommandResponse, LeaderId, LogId, Member};
use crate::error::{CeteError, CeteResult};
use crate::raft::{
    AddMember, AwaitApplied, AwaitLeader, AwaitNewLeader, ClientWrite, JoinPlan, LeaderElsewhere, PlanJoin,
    PromoteMember, ReadIndex, RemoveMember, TransferLeader, WriteRejection,
};
use crate::store::sessions::{RequestId, SessionTable};

const ME: &str = "node1";

fn member(name: &str) -> Member {
    Member { name: name.into(), raft_address: format!("{name}:7000"), ..Member::default() }
}

fn log_id(index: u64) -> Option<LogId> {
    Some(LogId::new(LeaderId::new(1, 0), index))
}

fn set(key: &str) -> Command {
    Command::Set { key: key.into(), value: Bytes::from_static(b"v"), content_type: None }
}

/// How another node answers what it is sent.
#[derive(Clone)]
enum Peer {
    /// It leads: applies writes, answers after `delay`.
    Leads { delay: Duration },
    /// It names another leader (the cluster elected it: this node's Raft names it too).
    NotLeader(Option<Member>),
    /// It cannot be connected to.
    Unreachable,
    /// It applies the write, then the connection breaks before the answer comes back.
    LosesReply,
    /// It never answers (paused, cut off).
    Silent,
}

/// The cluster as the test scripts it.
struct World {
    /// Whom this node's Raft names as the leader ([`ME`]: it leads).
    leader: Option<Member>,
    /// The leaders elected next, one per wait for a new leader.
    elections: VecDeque<Member>,
    peers: HashMap<String, Peer>,
    removed: Option<String>,
    /// Features some member's build does not read.
    unread: Vec<&'static str>,
    /// Every request that went over a link, with the peer it went to.
    sent: Vec<(String, Forwarded)>,
    /// How often this node's Raft was asked to write or give a read index.
    local_attempts: usize,
    /// The index each linearizable read waited to apply.
    awaited: Vec<Option<LogId>>,
    /// The commands that took effect, in the replicated state, in order.
    applied: Vec<Command>,
    _dir: tempfile::TempDir,
    store: redb::Database,
    index: u64,
}

type Shared = Arc<Mutex<World>>;

impl World {
    fn new(leader: &str) -> Shared {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = redb::Database::create(dir.path().join("store.redb")).expect("store");
        Arc::new(Mutex::new(World {
            leader: Some(member(leader)),
            elections: VecDeque::new(),
            peers: HashMap::new(),
            removed: None,
            unread: Vec::new(),
            sent: Vec::new(),
            local_attempts: 0,
            awaited: Vec::new(),
            applied: Vec::new(),
            _dir: dir,
            store,
            index: 0,
        }))
    }

    /// Applies `command` as the state machine does: a request id seen before is skipped.
    fn apply(&mut self, command: Command) {
        match command {
            Command::Batch(commands) => commands.into_iter().for_each(|c| self.apply(c)),
            Command::Request { id, command, low_water } => {
                self.index += 1;
                let txn = self.store.begin_write().expect("txn");
                let fresh = SessionTable::open(&txn).expect("table").admit(&id, low_water, self.index).expect("admit");
                txn.commit().expect("commit");
                if fresh {
                    self.apply(*command);
                }
            }
            command => self.applied.push(command),
        }
    }

    fn sent_to(&self) -> Vec<&str> {
        self.sent.iter().map(|(peer, _)| peer.as_str()).collect()
    }

    fn leads_here(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.name == ME)
    }

    fn not_here(&self) -> WriteRejection {
        WriteRejection::NotLeader { leader: self.leader.clone() }
    }
}

/// The request id of a routed write.
fn id_of(forwarded: &Forwarded) -> RequestId {
    match forwarded {
        Forwarded::Write(Command::Request { id, .. }) => *id,
        other => panic!("not a write under a request id: {other:?}"),
    }
}

// ---- This node's Raft ----

struct FakeRaft(Shared);

impl Actor for FakeRaft {
    type Context = Context<Self>;
}

impl Handler<ClientWrite> for FakeRaft {
    type Result = Result<CommandResponse, WriteRejection>;

    fn handle(&mut self, msg: ClientWrite, _: &mut Self::Context) -> Self::Result {
        let mut world = self.0.lock().unwrap();
        world.local_attempts += 1;
        if !world.leads_here() {
            return Err(world.not_here());
        }
        world.apply(msg.0);
        Ok(CommandResponse::Applied)
    }
}

impl Handler<ReadIndex> for FakeRaft {
    type Result = Result<Option<LogId>, WriteRejection>;

    fn handle(&mut self, _: ReadIndex, _: &mut Self::Context) -> Self::Result {
        let mut world = self.0.lock().unwrap();
        world.local_attempts += 1;
        if !world.leads_here() {
            return Err(world.not_here());
        }
        Ok(log_id(5))
    }
}

impl Handler<AwaitApplied> for FakeRaft {
    type Result = CeteResult<()>;

    fn handle(&mut self, msg: AwaitApplied, _: &mut Self::Context) -> Self::Result {
        self.0.lock().unwrap().awaited.push(msg.0);
        Ok(())
    }
}

impl Handler<AwaitLeader> for FakeRaft {
    type Result = Option<Member>;

    fn handle(&mut self, _: AwaitLeader, _: &mut Self::Context) -> Self::Result {
        self.0.lock().unwrap().leader.clone()
    }
}

/// An election takes a moment; with none scripted, the wait gives up.
impl Handler<AwaitNewLeader> for FakeRaft {
    type Result = ResponseFuture<Option<Member>>;

    fn handle(&mut self, _: AwaitNewLeader, _: &mut Self::Context) -> Self::Result {
        let world = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut world = world.lock().unwrap();
            let next = world.elections.pop_front();
            if next.is_some() {
                world.leader = next.clone();
            }
            next
        })
    }
}

impl Handler<TransferLeader> for FakeRaft {
    type Result = Result<String, WriteRejection>;

    fn handle(&mut self, _: TransferLeader, _: &mut Self::Context) -> Self::Result {
        Err(self.0.lock().unwrap().not_here())
    }
}

impl Handler<PlanJoin> for FakeRaft {
    type Result = Result<JoinPlan, WriteRejection>;

    fn handle(&mut self, _: PlanJoin, _: &mut Self::Context) -> Self::Result {
        Err(self.0.lock().unwrap().not_here())
    }
}

impl Handler<AddMember> for FakeRaft {
    type Result = Result<(), WriteRejection>;

    fn handle(&mut self, _: AddMember, _: &mut Self::Context) -> Self::Result {
        Err(self.0.lock().unwrap().not_here())
    }
}

impl Handler<PromoteMember> for FakeRaft {
    type Result = Result<(), WriteRejection>;

    fn handle(&mut self, _: PromoteMember, _: &mut Self::Context) -> Self::Result {
        Err(self.0.lock().unwrap().not_here())
    }
}

impl Handler<RemoveMember> for FakeRaft {
    type Result = Result<(), WriteRejection>;

    fn handle(&mut self, _: RemoveMember, _: &mut Self::Context) -> Self::Result {
        Err(self.0.lock().unwrap().not_here())
    }
}

// ---- This node's ClusterActor, and the links to the others ----

struct FakeCluster(Shared);

impl Actor for FakeCluster {
    type Context = Context<Self>;
}

impl Handler<ForwardTo> for FakeCluster {
    type Result = ResponseFuture<CeteResult<ForwardReply>>;

    fn handle(&mut self, msg: ForwardTo, _: &mut Self::Context) -> Self::Result {
        if let Some(reason) = &self.0.lock().unwrap().removed {
            return Box::pin(std::future::ready(Err(refusal(reason))));
        }
        let peer = FakePeer { name: msg.to.name, world: self.0.clone() }.start();
        Box::pin(async move { peer.send(Forward { request: msg.request, within: msg.within }).await? })
    }
}

impl Handler<WasRemoved> for FakeCluster {
    type Result = Option<String>;

    fn handle(&mut self, _: WasRemoved, _: &mut Self::Context) -> Self::Result {
        self.0.lock().unwrap().removed.clone()
    }
}

impl Handler<MembersRead> for FakeCluster {
    type Result = bool;

    fn handle(&mut self, msg: MembersRead, _: &mut Self::Context) -> Self::Result {
        !self.0.lock().unwrap().unread.contains(&msg.0)
    }
}

impl Handler<PrepareJoiner> for FakeCluster {
    type Result = CeteResult<()>;

    fn handle(&mut self, _: PrepareJoiner, _: &mut Self::Context) -> Self::Result {
        Ok(())
    }
}

/// The far end of a link: another node, answering as the world says.
struct FakePeer {
    name: String,
    world: Shared,
}

impl Actor for FakePeer {
    type Context = Context<Self>;
}

impl Handler<Forward> for FakePeer {
    type Result = ResponseFuture<CeteResult<ForwardReply>>;

    fn handle(&mut self, msg: Forward, _: &mut Self::Context) -> Self::Result {
        let world = self.world.clone();
        let mut w = world.lock().unwrap();
        w.sent.push((self.name.clone(), msg.request.clone()));
        let peer = w.peers.get(&self.name).cloned().unwrap_or(Peer::Unreachable);
        if let Peer::NotLeader(Some(leader)) = &peer {
            w.leader = Some(leader.clone());
        }
        drop(w);
        // Applies what was sent, answering as a leader whose store counts revisions: each
        // applied write is a revision, a batch answers one response per write.
        let apply = move |forwarded: Forwarded| {
            let mut world = world.lock().unwrap();
            let written = |world: &mut World, command: Command| {
                world.apply(command);
                CommandResponse::Written { revision: world.applied.len() as u64 }
            };
            match forwarded {
                Forwarded::Write(command) => Some(written(&mut world, command)),
                Forwarded::WriteBatch(commands) => {
                    Some(CommandResponse::Batch(commands.into_iter().map(|c| written(&mut world, c)).collect()))
                }
                _ => None,
            }
        };
        Box::pin(async move {
            match peer {
                Peer::Leads { delay } => {
                    tokio::time::sleep(delay).await;
                    let read_index = matches!(msg.request, Forwarded::ReadIndex);
                    Ok(match apply(msg.request) {
                        _ if read_index => ForwardReply::ReadIndex(log_id(9)),
                        Some(response) => ForwardReply::Applied(response),
                        None => ForwardReply::Done,
                    })
                }
                Peer::NotLeader(leader) => Ok(ForwardReply::NotLeader(leader)),
                Peer::Unreachable => Ok(ForwardReply::NotSent("connection refused".into())),
                Peer::LosesReply => {
                    apply(msg.request);
                    Err(CeteError::Unavailable("lost contact with the leader while it handled the request".into()))
                }
                Peer::Silent => std::future::pending().await,
            }
        })
    }
}

/// A router of node [`ME`] in `world`.
fn router(world: &Shared) -> Addr<RouterActor> {
    let raft = FakeRaft(world.clone()).start();
    let cluster = FakeCluster(world.clone()).start();
    let batcher = LeaderBatcher::new(cluster.clone().recipient()).start();
    // Nothing is applied: every read waits through AwaitApplied, which the tests record.
    let raft_ports = RaftPorts::of(&raft, tokio::sync::watch::channel(0).1);
    let cluster_ports = ClusterPorts::of(&cluster);
    RouterActor::new(ME.into(), raft_ports, cluster_ports, batcher.recipient()).start()
}

fn peer(world: &Shared, name: &str, peer: Peer) {
    world.lock().unwrap().peers.insert(name.into(), peer);
}

fn leads() -> Peer {
    Peer::Leads { delay: Duration::ZERO }
}

#[actix::test]
async fn the_leader_here_serves_writes_and_read_indexes_itself() {
    let world = World::new(ME);
    let router = router(&world);
    router.send(Write(set("a"))).await.unwrap().expect("written");
    router.send(LinearizableRead).await.unwrap().expect("read");
    let world = world.lock().unwrap();
    assert!(world.sent.is_empty(), "nothing went over a link");
    assert_eq!(world.applied, vec![set("a")], "applied here, as it came: no request id needed");
    assert_eq!(world.awaited, vec![log_id(5)]);
}

#[actix::test]
async fn the_leader_proposes_a_transaction_only_once_every_member_reads_it() {
    let world = World::new(ME);
    world.lock().unwrap().unread.push(crate::cluster::features::TRANSACTIONS);
    let router = router(&world);
    let txn = Command::Txn(crate::command::Txn::default());
    let refused = router.send(Write(txn.clone())).await.unwrap().expect_err("an older member cannot read it");
    assert!(matches!(refused, crate::CeteError::Unavailable(_)), "{refused:?}");
    router.send(Write(set("a"))).await.unwrap().expect("plain writes need nothing");
    world.lock().unwrap().unread.clear();
    router.send(Write(txn.clone())).await.unwrap().expect("every member reads it now");
    assert_eq!(world.lock().unwrap().applied, vec![set("a"), txn]);
}

#[actix::test]
async fn a_leader_elsewhere_is_sent_writes_under_request_ids_and_asked_for_read_indexes() {
    let world = World::new("node2");
    peer(&world, "node2", leads());
    let router = router(&world);
    router.send(Write(set("a"))).await.unwrap().expect("written");
    router.send(LinearizableRead).await.unwrap().expect("read");
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2", "node2"]);
    id_of(&world.sent[0].1);
    assert!(matches!(world.sent[1].1, Forwarded::ReadIndex));
    assert_eq!(world.applied, vec![set("a")]);
    assert_eq!(world.awaited, vec![log_id(9)], "the read waited for the leader's index");
}

#[actix::test]
async fn a_follower_that_knows_the_leader_sends_writes_and_reads_straight_to_it() {
    let world = World::new("node2");
    peer(&world, "node2", leads());
    let router = router(&world);
    router.send(LeaderElsewhere(Some(member("node2")))).await.unwrap();
    router.send(Write(set("a"))).await.unwrap().expect("written");
    router.send(LinearizableRead).await.unwrap().expect("read");
    let world = world.lock().unwrap();
    assert_eq!(world.local_attempts, 0, "no attempt here that Raft could only turn away");
    assert_eq!(world.sent_to(), ["node2", "node2"]);
    assert_eq!(world.applied, vec![set("a")]);
}

#[actix::test]
async fn a_leader_view_gone_stale_costs_one_round_trip() {
    // Raft last said node2 leads; it is this node now, and node2 says so.
    let world = World::new(ME);
    peer(&world, "node2", Peer::NotLeader(Some(member(ME))));
    let router = router(&world);
    router.send(LeaderElsewhere(Some(member("node2")))).await.unwrap();
    router.send(Write(set("a"))).await.unwrap().expect("written");
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2"]);
    assert_eq!(world.applied, vec![set("a")], "served here, once");
}

#[actix::test]
async fn writes_and_reads_for_a_busy_leader_wait_and_go_in_one_batch_each() {
    let world = World::new("node2");
    peer(&world, "node2", Peer::Leads { delay: Duration::from_millis(100) });
    let router = router(&world);
    let writes = (0..5).map(|i| router.send(Write(set(&format!("k{i}")))));
    let reads = (0..5).map(|_| router.send(LinearizableRead));
    let (writes, reads) = futures::join!(futures::future::join_all(writes), futures::future::join_all(reads));
    assert!(reads.into_iter().all(|answer| matches!(answer, Ok(Ok(())))));
    // Each write is answered its own revision, batched or not.
    let mut revisions: Vec<u64> = writes
        .into_iter()
        .map(|answer| answer.expect("sent").expect("written").revision().expect("a revision"))
        .collect();
    revisions.sort();
    assert_eq!(revisions, [1, 2, 3, 4, 5]);
    let world = world.lock().unwrap();
    let kinds: Vec<String> = world
        .sent
        .iter()
        .map(|(_, sent)| match sent {
            Forwarded::Write(_) => "write".to_string(),
            Forwarded::WriteBatch(batch) => format!("batch of {}", batch.len()),
            Forwarded::ReadIndex => "read index".to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    // The first of each goes at once; the rest wait for it, then go together.
    let mut expected = ["write", "batch of 4", "read index", "read index"].map(String::from).to_vec();
    let mut got = kinds.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "sent: {kinds:?}");
    assert_eq!(world.applied.len(), 5);
}

#[actix::test]
async fn a_leader_change_on_the_way_is_followed_with_the_same_request_id() {
    let world = World::new("node2");
    peer(&world, "node2", Peer::NotLeader(Some(member("node3"))));
    peer(&world, "node3", leads());
    let router = router(&world);
    router.send(Write(set("a"))).await.unwrap().expect("written");
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2", "node3"]);
    assert_eq!(id_of(&world.sent[0].1), id_of(&world.sent[1].1));
    assert_eq!(world.applied, vec![set("a")]);
}

#[actix::test]
async fn leadership_that_came_here_on_the_way_is_served_here() {
    let world = World::new("node2");
    peer(&world, "node2", Peer::NotLeader(Some(member(ME))));
    let router = router(&world);
    router.send(Write(set("a"))).await.unwrap().expect("written");
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2"]);
    assert_eq!(world.applied, vec![set("a")]);
}

/// A write sent to node2, the leader, which fails it as `first` while node3 is elected.
async fn write_through_a_failover(first: Peer) -> Shared {
    let world = World::new("node2");
    peer(&world, "node2", first);
    peer(&world, "node3", leads());
    world.lock().unwrap().elections.push_back(member("node3"));
    router(&world).send(Write(set("a"))).await.unwrap().expect("written");
    world
}

#[actix::test]
async fn an_unreachable_leader_is_waited_out_until_another_is_elected() {
    let world = write_through_a_failover(Peer::Unreachable).await;
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2", "node3"]);
    assert_eq!(world.applied, vec![set("a")]);
}

#[actix::test]
async fn a_write_sent_again_after_its_answer_was_lost_is_applied_once() {
    let world = write_through_a_failover(Peer::LosesReply).await;
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2", "node3"], "sent again to the next leader");
    assert_eq!(id_of(&world.sent[0].1), id_of(&world.sent[1].1), "under the same request id");
    assert_eq!(world.applied, vec![set("a")], "applied by the first leader only");
}

#[actix::test]
async fn a_write_is_sent_again_when_the_leader_goes_silent_with_it() {
    let world = write_through_a_failover(Peer::Silent).await;
    let world = world.lock().unwrap();
    assert_eq!(world.sent_to(), ["node2", "node3"]);
    assert_eq!(world.applied, vec![set("a")]);
}

#[actix::test]
async fn a_join_whose_answer_was_lost_is_not_sent_again() {
    let world = World::new("node2");
    peer(&world, "node2", Peer::LosesReply);
    world.lock().unwrap().elections.push_back(member("node3"));
    let router = router(&world);
    let answer = router.send(Join(member("node4"))).await.unwrap();
    assert!(matches!(answer, Err(CeteError::Unavailable(_))), "{answer:?}");
    assert_eq!(world.lock().unwrap().sent_to(), ["node2"]);
}

#[actix::test]
async fn a_removed_node_passes_nothing_on() {
    let world = World::new("node2");
    peer(&world, "node2", leads());
    let reason = "node1 was removed from the cluster (test)".to_string();
    world.lock().unwrap().removed = Some(reason.clone());
    let router = router(&world);
    let answer = router.send(Write(set("a"))).await.unwrap();
    assert_eq!(answer, Err(refusal(&reason)));
    assert!(world.lock().unwrap().sent.is_empty());
}

#[actix::test]
async fn a_request_a_peer_sent_here_is_served_here_or_turned_away_never_routed_on() {
    let world = World::new("node2");
    peer(&world, "node2", leads());
    let router = router(&world);
    let answer = router.send(ServeHere(LeaderRequest::Write(set("a")))).await.unwrap();
    assert!(matches!(answer, Err(RouteError::NotLeader(Some(ref l))) if l.name == "node2"), "{answer:?}");
    assert!(world.lock().unwrap().sent.is_empty());
    world.lock().unwrap().leader = Some(member(ME));
    let answer = router.send(ServeHere(LeaderRequest::ReadIndex)).await.unwrap();
    assert_eq!(answer.expect("served"), Served::ReadIndex(log_id(5)));
}

#[test]
fn leader_requests_map_to_the_wire_and_back() {
    let requests = [
        LeaderRequest::Write(set("a")),
        LeaderRequest::WriteBatch(vec![set("a"), set("b")]),
        LeaderRequest::ReadIndex,
        LeaderRequest::Join(member("node4")),
        LeaderRequest::Leave("node4".into()),
        LeaderRequest::TransferLeader(Some("node2".into())),
    ];
    for request in requests {
        let wire = Forwarded::from(request.clone());
        let bytes = crate::command::encode(&wire).expect("encode");
        let back: Forwarded = crate::command::decode(&bytes).expect("decode");
        let back = LeaderRequest::try_from(back).expect("a leader request");
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
    }
    assert!(LeaderRequest::try_from(Forwarded::Poll).is_err());
}
