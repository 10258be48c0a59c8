#!/usr/bin/env python3
"""The compose test (`make test-docker`): `docker compose up` of the top-level
docker-compose.yml brings up the README's 3-node cluster from the image, each node healthy
by the gRPC health service; a write through one published port is read through another; then
`docker compose down -v` removes it all (also on failure).

Usage: tests/docker/compose_test.py [--image cete:latest]
Needs: a Docker engine and Compose (the `docker compose` plugin, or Compose v1's
`docker-compose`), and the host ports 8000-8002 and 9000-9002 free.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEALTHY = 120
SERVICES = ["cete1", "cete2", "cete3"]


def compose_command():
    """`docker compose` where the plugin is installed, else Compose v1, else None."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def http(method, url, body=None):
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read()


def wait_for(what, seconds, check):
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
            if found:
                return found
        except Exception as error:  # not up yet
            found = error
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} within {seconds}s (last: {found!r})")
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default="cete:latest")
    args = parser.parse_args()
    compose = compose_command()
    if compose is None:
        print("#" * 78, file=sys.stderr)
        print("## SKIPPED: the compose test: neither `docker compose` nor `docker-compose` is installed", file=sys.stderr)
        print("#" * 78, file=sys.stderr)
        return 0
    project = f"cete-compose-test-{os.getpid()}"
    env = dict(os.environ, CETE_IMAGE=args.image)
    run = lambda *words, **kw: subprocess.run(  # noqa: E731
        [*compose, "-p", project, "-f", os.path.join(ROOT, "docker-compose.yml"), *words],
        env=env, check=True, capture_output=True, text=True, **kw)
    try:
        run("up", "-d")

        def healthy():
            ids = run("ps", "-q").stdout.split()
            states = [subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", cid],
                                     capture_output=True, text=True).stdout.strip() for cid in ids]
            return len(ids) == 3 and all(state == "healthy" for state in states) and states

        print("healthy:", wait_for("3 healthy nodes", HEALTHY, healthy))
        cluster = wait_for("a cluster of 3 with a leader", 60, lambda: (
            lambda c: len(c["cluster"]["nodes"]) == 3 and c["cluster"].get("leader") and c)(
            json.loads(http("GET", "http://127.0.0.1:8000/v1/cluster")[1])))
        print("leader:", cluster["cluster"]["leader"])
        status, _ = http("PUT", "http://127.0.0.1:8001/v1/data/compose/hello", b"from node2's port")
        assert status == 200, status
        status, value = http("GET", "http://127.0.0.1:8002/v1/data/compose/hello")
        assert (status, value) == (200, b"from node2's port"), (status, value)
        print("compose test: passed")
        return 0
    except (subprocess.CalledProcessError, AssertionError, SystemExit) as failure:
        print(f"compose test: FAILED: {failure}", file=sys.stderr)
        if isinstance(failure, subprocess.CalledProcessError):
            print(failure.stdout, failure.stderr, file=sys.stderr)
        logs = subprocess.run([*compose, "-p", project, "-f", os.path.join(ROOT, "docker-compose.yml"),
                               "logs", "--no-color"], env=env, capture_output=True, text=True)
        print(logs.stdout[-20000:], file=sys.stderr)
        return 1
    finally:
        subprocess.run([*compose, "-p", project, "-f", os.path.join(ROOT, "docker-compose.yml"), "down", "-v"],
                       env=env, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
