"""A Cete cluster made of Docker containers, for the container cluster test.

Each node is a container of the image under test on a network of its own, reached by the others
under its short name (`cete1`, `cete2`, ...) and keeping its data on a named volume of its own.
The faults a test injects are the ones separate hosts suffer: a node cut off from the network
(`docker network disconnect`), a node partitioned away while it keeps running and keeps taking
clients (packet filters in its network namespace), a node killed (`docker kill`) and started
again on its volume.

Everything it creates carries one run id in its name, so concurrent runs do not collide and
`close()` removes exactly what this run made. Only the standard library is used.
"""

import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request

RAFT_PORT, HTTP_PORT, GRPC_PORT = 7000, 8000, 9000
# Where the nodes keep their data: the image's /var/lib/cete volume.
DATA_DIRECTORY = "/var/lib/cete/data"
POLL_SECONDS = 0.2


class Failure(Exception):
    """The cluster did not behave as Cete promises; the message says how."""


class SafetyViolation(Failure):
    """Something Raft must never allow happened; waiting longer cannot fix it."""


def docker(*args, check=True, timeout=120):
    """Runs the docker CLI and returns its stdout; a failure raises with docker's stderr."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise Failure(f"docker {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def wait_for(what, probe, timeout):
    """Polls `probe` until it returns (True, detail); raises with the last detail at the deadline.

    `probe` may raise OSError or Failure while the cluster is still settling; that counts as
    not yet, and its message becomes the detail. A SafetyViolation ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    detail = "never probed"
    while True:
        try:
            ok, detail = probe()
            if ok:
                return detail
        except SafetyViolation:
            raise
        except (OSError, Failure) as e:
            detail = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise Failure(f"{what}: not within {timeout:.0f}s; last seen: {detail}")
        time.sleep(POLL_SECONDS)


class Reply:
    def __init__(self, status, body):
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"HTTP {self.status} {self.body[:200]!r}"


class Node:
    """One container: its short name (also its host name and network alias) and Raft id."""

    def __init__(self, cluster, index):
        self.name = f"cete{index}"
        self.id = f"node{index}"
        self.container = f"{cluster.run_id}-{self.name}"
        self.volume = f"{cluster.run_id}-{self.name}"
        self.ip = str(cluster.subnet.network_address + 10 + index)
        self.cluster = cluster

    def __str__(self):
        return f"{self.name} ({self.id})"

    def start_command(self, peer):
        """`cete start` with every address given by container name, as a user would."""
        command = [
            "cete",
            "start",
            f"--id={self.id}",
            f"--raft-address={self.name}:{RAFT_PORT}",
            f"--grpc-address={self.name}:{GRPC_PORT}",
            f"--http-address={self.name}:{HTTP_PORT}",
            f"--data-directory={DATA_DIRECTORY}",
        ]
        if peer is not None:
            command.append(f"--peer-grpc-address={peer.name}:{GRPC_PORT}")
        return command

    def http(self, method, path, body=None, timeout=3.0):
        """One request to the node's HTTP API, straight to its address on the test network.

        Returns the reply whatever its status; raises OSError when no reply came in time.
        """
        request = urllib.request.Request(f"http://{self.ip}:{HTTP_PORT}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(response.status, response.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())

    def cli(self, *args):
        """A `cete` client command run inside the node's container."""
        return docker("exec", self.container, "cete", *args, f"--grpc-address={self.name}:{GRPC_PORT}")

    def put(self, key, value, timeout=3.0):
        return self.http("PUT", f"/v1/data/{key}", value.encode(), timeout=timeout)

    def local_get(self, key):
        """The value this node itself has applied for `key` (None when missing): no leader asked."""
        reply = self.http("GET", f"/v1/data/{key}?consistency=serializable")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise Failure(f"{self}: serializable GET {key}: {reply}")
        return reply.body.decode()

    def local_data(self):
        """Every key and value this node itself has applied (a serializable scan)."""
        reply = self.http("GET", "/v1/scan?consistency=serializable")
        if reply.status != 200:
            raise Failure(f"{self}: serializable scan: {reply}")
        return {pair["key"]: pair["value"] for pair in reply.json()["pairs"]}

    def ready(self):
        reply = self.http("GET", "/v1/readiness_check")
        return reply.status == 200, f"{self}: {reply}"

    def cluster_view(self):
        """(leader id or None, {id: state}) as this node reports the cluster."""
        reply = self.http("GET", "/v1/cluster")
        if reply.status != 200:
            raise Failure(f"{self}: GET /v1/cluster: {reply}")
        cluster = reply.json()["cluster"]
        states = {node_id: node.get("state", "?") for node_id, node in cluster.get("nodes", {}).items()}
        return cluster.get("leader") or None, states

    def logs(self):
        result = subprocess.run(["docker", "logs", self.container], capture_output=True, text=True)
        return (result.stdout + result.stderr).rstrip()


class DockerCluster:
    """The containers, their network and their volumes for one test run."""

    def __init__(self, image, size=3):
        self.image = image
        self.run_id = f"cete-test-{os.getpid()}-{random.randrange(16**4):04x}"
        self.network = self.run_id
        self.subnet = None
        self.nodes = []
        self.size = size
        self.created = {"containers": [], "volumes": [], "network": None}
        self.partitions = {}

    # ---- life cycle ----

    def create_network(self):
        """A bridge network with a subnet of our own choosing, so that each node keeps its
        address when it is reconnected or restarted (see `reconnect`)."""
        taken = self.host_networks()
        for _ in range(20):
            subnet = ipaddress.ip_network(f"10.{random.randint(100, 254)}.{random.randint(0, 255)}.0/24")
            if any(subnet.overlaps(net) for net in taken):
                continue
            result = subprocess.run(
                ["docker", "network", "create", "--driver", "bridge", "--subnet", str(subnet),
                 "--label", f"cete-test={self.run_id}", self.network],
                capture_output=True, text=True,
            )
            if result.returncode == 0:
                self.subnet = subnet
                self.created["network"] = self.network
                self.nodes = [Node(self, i) for i in range(1, self.size + 1)]
                return
            if "overlap" not in result.stderr.lower():
                raise Failure(f"docker network create: {result.stderr.strip()}")
        raise Failure("docker network create: every subnet tried overlaps one in use")

    @staticmethod
    def host_networks():
        if shutil.which("ip") is None:
            return []
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        networks = []
        for line in routes.splitlines():
            word = line.split()[0] if line.split() else ""
            try:
                networks.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
        return networks

    def start(self, node, peer=None):
        """Creates and starts the node's container on its own named volume."""
        docker("volume", "create", "--label", f"cete-test={self.run_id}", node.volume)
        self.created["volumes"].append(node.volume)
        self.created["containers"].append(node.container)
        docker(
            "run", "--detach", "--name", node.container, "--hostname", node.name,
            "--label", f"cete-test={self.run_id}",
            "--network", self.network, "--ip", node.ip, "--network-alias", node.name,
            "--volume", f"{node.volume}:/var/lib/cete",
            self.image, *node.start_command(peer),
        )

    def close(self):
        """Removes every container, network and volume this run created, whatever state
        they are in; reports what it could not remove instead of raising."""
        leftovers = []
        for container in self.created["containers"]:
            result = subprocess.run(["docker", "rm", "--force", "--volumes", container], capture_output=True, text=True)
            if result.returncode != 0 and "No such container" not in result.stderr:
                leftovers.append(container)
        if self.created["network"]:
            result = subprocess.run(["docker", "network", "rm", self.network], capture_output=True, text=True)
            if result.returncode != 0 and "not found" not in result.stderr:
                leftovers.append(self.network)
        for volume in self.created["volumes"]:
            result = subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, text=True)
            if result.returncode != 0:
                leftovers.append(volume)
        return leftovers

    # ---- faults ----

    def disconnect(self, node):
        docker("network", "disconnect", self.network, node.container)

    def reconnect(self, node):
        """Reconnects with the node's own address. The node listens on the address its name
        resolved to at start-up, so it must come back on that same address to be reachable."""
        docker("network", "connect", "--ip", node.ip, "--alias", node.name, self.network, node.container)

    def partition(self, node):
        """Cuts all traffic between `node` and the other nodes, in both directions, while the
        node keeps running and stays reachable from this host (its clients)."""
        rules = []
        for other in self.nodes:
            if other is not node:
                rules += [["INPUT", "-s", other.ip, "-j", "DROP"], ["OUTPUT", "-d", other.ip, "-j", "DROP"]]
        for rule in rules:
            self.iptables(node, "-I", *rule)
        self.partitions[node.name] = rules

    def heal(self, node):
        for rule in self.partitions.pop(node.name, []):
            self.iptables(node, "-D", *rule)

    def iptables(self, node, *args):
        """iptables inside the container's network namespace, with this host's tools (the image
        has none, and the node runs unprivileged)."""
        pid = docker("inspect", "--format", "{{.State.Pid}}", node.container).strip()
        command = ["nsenter", "--target", pid, "--net", "iptables", "-w", *args]
        if os.geteuid() != 0:
            command = ["sudo", "-n", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise Failure(f"{' '.join(command)}: {result.stderr.strip()}")

    def kill(self, node):
        docker("kill", node.container)

    def restart(self, node):
        """Starts the killed container again: same command, same volume, same address."""
        docker("start", node.container)

    # ---- what the cluster says ----

    def node_by_id(self, node_id):
        return next((node for node in self.nodes if node.id == node_id), None)

    def agreed_leader(self, among):
        """Probe: every node of `among` names the same leader, which is one of `among` and
        reports itself Leader."""
        views = {node.name: node.cluster_view()[0] for node in among}
        leaders = set(views.values())
        if len(leaders) != 1 or None in leaders:
            return False, f"leaders seen: {views}"
        leader = self.node_by_id(leaders.pop())
        if leader not in among:
            return False, f"leaders seen: {views} (not one of {[n.name for n in among]})"
        _, states = leader.cluster_view()
        if states.get(leader.id) != "Leader":
            return False, f"{leader} says it is {states.get(leader.id)}"
        return True, leader

    @staticmethod
    def preflight(image):
        """Clear messages for what this test needs from the machine, before it starts."""
        if shutil.which("docker") is None:
            raise Failure("the docker CLI is not installed")
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            raise Failure("`docker info` fails: no Docker engine to talk to")
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            raise Failure(f"image {image} is missing: run `make docker-build` first")
        for tool in ("nsenter", "iptables"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                raise Failure(f"{tool} is needed to partition a node (util-linux, iptables)")
        if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
            raise Failure("partitioning a node needs root (or passwordless sudo) for nsenter + iptables")
