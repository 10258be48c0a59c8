#!/usr/bin/env python3
"""The container cluster test (`make test-docker`): Cete on three hosts that can be cut off.

Three containers of the image on a Docker network of their own form a cluster with Cete's own
commands (`cete start --peer-grpc-address`, every address by container name), then:

1. writes go through every node, and every node ends up with all of them;
2. a follower is disconnected from the network while writes go on, then reconnected, and
   catches up;
3. the leader is partitioned away: the majority elects a new leader and keeps taking writes;
   writes sent to the old leader are not acknowledged, and neither it nor anyone else applies
   them while it is cut off; after healing all three agree on every key;
4. a container is killed and started again on its volume: it rejoins under its old identity
   and catches up with what was written while it was down;
5. the whole cluster is killed at once and started again: its volumes alone bring every
   acknowledged write back.

At the end every acknowledged write is on every node (serializable reads, which each node
answers from its own state), and nothing else is, but for the writes sent to the cut-off
leader: their clients gave up on them, so they may still take effect once the partition heals
(a node that steps down hands its pending writes to the new leader), but then on every node
alike. Each wait polls against a deadline. On a failure the nodes' logs are printed; the
containers, network and volumes are removed whatever happens. Exits non-zero on failure; the
last line counts the steps passed and failed.

The nodes are reached from this host at their addresses on the test network (no published
ports): a node's address is fixed (`--ip`), so it is the same after a reconnect or a restart.

Usage: tests/docker/cluster_test.py [--image cete:latest]
Needs: a Docker engine on this host, and root (nsenter + iptables) to partition a node.
"""

import argparse
import os
import signal
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dockercluster import DockerCluster, Failure, SafetyViolation, wait_for  # noqa: E402

# Deadlines, in seconds. Elections take 1 to 2 s (the election timeout), so these are generous.
READY = 60
ELECTION = 30
CONVERGE = 30
# A write that gets no answer in this long is not acknowledged.
WRITE_TIMEOUT = 3


class Scenario:
    def __init__(self, cluster):
        self.cluster = cluster
        # Every write a node answered 200: key -> value. Keys are never reused.
        self.acked = {}
        # Writes whose client gave up without an answer: key -> value. Each may or may not
        # take effect, but it takes effect on every node or on none.
        self.unknown = {}
        self.started = time.monotonic()

    @property
    def nodes(self):
        return self.cluster.nodes

    def say(self, message):
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    # ---- helpers ----

    def write(self, node, key, deadline=CONVERGE):
        """Stores a fresh value through `node`, retrying (same key, same value: idempotent)
        until it is acknowledged; a cluster that cannot take it by the deadline fails."""
        value = f"{key}@{node.name}"

        def attempt():
            reply = node.put(key, value, timeout=WRITE_TIMEOUT)
            return reply.status == 200, f"PUT {key} through {node}: {reply}"

        wait_for(f"write {key} through {node}", attempt, deadline)
        self.acked[key] = value

    def converged(self, nodes):
        """Probe: each of `nodes` holds every acknowledged write, nothing that was never
        written, and the same data as the others. A value no client sent fails at once."""
        behind, seen = [], {}
        for node in nodes:
            try:
                data = seen[node.name] = node.local_data()
            except (OSError, Failure) as e:
                behind.append(f"{node}: no answer ({e})")
                continue
            for key, value in data.items():
                if self.acked.get(key, self.unknown.get(key)) != value:
                    raise SafetyViolation(f"{node} holds {key}={value!r}, which no client wrote")
            missing = [k for k, v in self.acked.items() if data.get(k) != v]
            if missing:
                behind.append(f"{node}: {len(missing)} acknowledged writes missing, e.g. {missing[:3]}")
        if not behind and len({tuple(sorted(d.items())) for d in seen.values()}) > 1:
            differ = {name: sorted(set(d) & set(self.unknown)) for name, d in seen.items()}
            behind.append(f"nodes disagree on the unacknowledged writes: {differ}")
        return not behind, "; ".join(behind)

    def wait_converged(self, nodes, why):
        wait_for(f"{why}: every node holds every acknowledged write", lambda: self.converged(nodes), CONVERGE)

    def leader(self, among=None):
        among = among or self.nodes
        return wait_for(
            f"one leader agreed by {[n.name for n in among]}", lambda: self.cluster.agreed_leader(among), ELECTION
        )

    # ---- steps ----

    def bring_up(self):
        first, *joiners = self.nodes
        self.cluster.start(first)
        wait_for(f"{first} ready", first.ready, READY)
        for node in joiners:
            self.cluster.start(node, peer=first)
        for node in self.nodes:
            wait_for(f"{node} ready", node.ready, READY)

        def members():
            views = {node.name: node.cluster_view()[1] for node in self.nodes}
            ok = all(set(states) == {n.id for n in self.nodes} for states in views.values())
            return ok, f"members seen: {views}"

        wait_for("every node lists all three members", members, READY)
        leader = self.leader()
        self.say(f"cluster up, leader {leader}; `cete cluster` in {first.container}:")
        print(first.cli("cluster").rstrip(), flush=True)

    def writes_through_every_node(self):
        for node in self.nodes:
            for i in range(4):
                self.write(node, f"every/{node.name}/{i}")
            # The client commands work inside the containers too.
            key = f"every/{node.name}/cli"
            node.cli("set", key, f"{key}@{node.name}")
            self.acked[key] = f"{key}@{node.name}"
        self.wait_converged(self.nodes, "after writes through every node")
        self.say(f"{len(self.acked)} writes through every node, on every node")

    def disconnected_follower_catches_up(self):
        leader = self.leader()
        follower = next(n for n in self.nodes if n is not leader)
        connected = [n for n in self.nodes if n is not follower]
        self.cluster.disconnect(follower)
        self.say(f"disconnected follower {follower} from the network")

        def leader_lost_it():
            state = leader.cluster_view()[1].get(follower.id)
            return state == "Shutdown", f"{leader} reports {follower} as {state}"

        wait_for(f"{leader} to notice {follower} is unreachable", leader_lost_it, ELECTION)
        for i in range(10):
            self.write(connected[i % 2], f"cut-follower/{i}")
        self.wait_converged(connected, "with a follower disconnected")
        self.say(f"{leader} reports {follower} unreachable; writes went on without it")
        self.cluster.reconnect(follower)
        self.say(f"reconnected {follower}")
        self.wait_converged(self.nodes, f"after {follower} came back")
        self.say(f"{follower} caught up")

    def partitioned_leader_commits_nothing(self):
        old = self.leader()
        majority = [n for n in self.nodes if n is not old]
        self.cluster.partition(old)
        self.say(f"partitioned leader {old} away from {[n.name for n in majority]}")
        new = self.leader(majority)
        self.say(f"the majority elected {new}")
        for i in range(10):
            self.write(majority[i % 2], f"majority/{i}")

        # The old leader still takes clients, but may acknowledge nothing: it cannot reach a
        # quorum. Sent concurrently so the step costs one timeout, not one per write.
        keys = [f"minority/{i}" for i in range(3)]
        self.unknown.update({key: f"{key}@{old.name}" for key in keys})

        def send(key):
            try:
                return key, old.put(key, f"{key}@{old.name}", timeout=WRITE_TIMEOUT)
            except OSError as e:
                return key, f"no answer ({e})"

        with ThreadPoolExecutor(len(keys)) as pool:
            answers = list(pool.map(send, keys))
        for key, answer in answers:
            if getattr(answer, "status", None) == 200:
                raise SafetyViolation(f"{old}, cut off from the majority, acknowledged PUT {key}")
            self.say(f"write to the old leader not acknowledged, as it must not be: {answer}")
        # Nor may it answer a linearizable read from its stale state: majority/0 exists now.
        try:
            stale = old.http("GET", "/v1/data/majority/0", timeout=WRITE_TIMEOUT)
        except OSError as e:
            stale = f"no answer ({e})"
        if getattr(stale, "status", None) in (200, 404):
            raise SafetyViolation(f"{old}, cut off, answered a linearizable read of majority/0: {stale}")
        self.say(f"linearizable read on the old leader refused, as it must be: {stale}")
        for node in self.nodes:
            applied = [key for key in keys if node.local_get(key) is not None]
            if applied:
                raise SafetyViolation(f"{node} applied {applied}, sent to {old} while it was cut off")
        if old.local_get("majority/0") is not None:
            raise SafetyViolation(f"{old} applied a write of the majority while cut off from it")

        self.cluster.heal(old)
        self.say(f"healed the partition around {old}")
        self.wait_converged(self.nodes, "after the partition healed")
        leader = self.leader()
        self.say(f"all three agree on every key; leader {leader}")

    def killed_node_rejoins_from_its_volume(self):
        victim = self.leader()
        survivors = [n for n in self.nodes if n is not victim]
        self.cluster.kill(victim)
        self.say(f"killed {victim}, the leader")
        new = self.leader(survivors)
        self.say(f"survivors elected {new}")
        for i in range(10):
            self.write(survivors[i % 2], f"while-down/{i}")
        self.cluster.restart(victim)
        self.say(f"started {victim} again on volume {victim.volume}")
        wait_for(f"{victim} ready after restart", victim.ready, READY)
        self.wait_converged(self.nodes, f"after {victim} restarted")
        _, states = victim.cluster_view()
        if set(states) != {n.id for n in self.nodes}:
            raise Failure(f"{victim} came back into a different cluster: {states}")
        self.say(f"{victim} rejoined as {victim.id} and caught up")

    def whole_cluster_restarts_from_volumes(self):
        for node in self.nodes:
            self.cluster.kill(node)
        self.say("killed all three containers")
        for node in self.nodes:
            self.cluster.restart(node)
        leader = self.leader()
        self.say(f"restarted all three; leader {leader}")
        self.wait_converged(self.nodes, "after the whole cluster restarted")
        self.write(leader, "after-restart/0")

    def every_acked_write_on_every_node(self):
        self.wait_converged(self.nodes, "at the end")
        for node in self.nodes:
            for key, value in self.acked.items():
                got = node.local_get(key)
                if got != value:
                    raise Failure(f"{node}: serializable GET {key} = {got!r}, acknowledged {value!r}")
        applied = sorted(set(self.nodes[0].local_data()) & set(self.unknown))
        self.say(
            f"all {len(self.acked)} acknowledged writes on all {len(self.nodes)} nodes, and nothing else; "
            f"of the {len(self.unknown)} unacknowledged, {len(applied)} took effect after the heal, on every node"
        )


# Log lines repeated every heartbeat while a peer is unreachable: a run of them is shown by
# its first line and a count.
NOISE = ("openraft::replication", "openraft::engine::handler::replication_handler")


def quieted(log):
    out, run = [], 0
    for line in log.splitlines():
        if any(source in line for source in NOISE):
            run += 1
            if run == 1:
                out.append(line)
            continue
        if run > 1:
            out.append(f"    [... {run - 1} more replication error lines ...]")
        run = 0
        out.append(line)
    if run > 1:
        out.append(f"    [... {run - 1} more replication error lines ...]")
    return "\n".join(out)


STEPS = [
    "bring_up",
    "writes_through_every_node",
    "disconnected_follower_catches_up",
    "partitioned_leader_commits_nothing",
    "killed_node_rejoins_from_its_volume",
    "whole_cluster_restarts_from_volumes",
    "every_acked_write_on_every_node",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="cete:latest")
    args = parser.parse_args()
    # `kill` or a CI timeout still removes what this run created.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    try:
        DockerCluster.preflight(args.image)
    except Failure as e:
        print(f"docker cluster test cannot run: {e}", file=sys.stderr)
        return 2

    cluster = DockerCluster(args.image)
    scenario = Scenario(cluster)
    passed, failed = 0, 0
    try:
        cluster.create_network()
        scenario.say(f"network {cluster.network} ({cluster.subnet}), image {args.image}")
        for step in STEPS:
            began = time.monotonic()
            scenario.say(f"--- {step}")
            try:
                getattr(scenario, step)()
            except Exception as e:
                failed += 1
                kind = "SAFETY VIOLATION" if isinstance(e, SafetyViolation) else "FAILED"
                scenario.say(f"{kind}: {step}: {e}")
                if not isinstance(e, Failure):
                    traceback.print_exc()
                break
            passed += 1
            scenario.say(f"ok {step} ({time.monotonic() - began:.1f}s)")
        if failed:
            for node in cluster.nodes:
                if node.container not in cluster.created["containers"]:
                    continue
                print(f"\n===== docker logs {node.container} =====", file=sys.stderr)
                print(quieted(node.logs()) or "(no output)", file=sys.stderr)
    finally:
        leftovers = cluster.close()
        if leftovers:
            print(f"could not remove: {leftovers}", file=sys.stderr)

    skipped = len(STEPS) - passed - failed
    print(f"\ndocker cluster test took {time.monotonic() - scenario.started:.0f}s")
    print(f"docker: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
