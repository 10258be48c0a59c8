# Cete's container image: the `cete` binary on Debian bookworm-slim, run as the unprivileged
# user `cete` (uid 1000).
#
# The binary is built outside the image (`make build`, or `make docker-build`, which also
# strips it and makes sure the base image exists), so the image holds no toolchain:
#
#   make docker-build                 # or, by hand:  make build && docker build -t cete:latest .
#   docker run --rm --name cete-node1 -p 7000:7000 -p 8000:8000 -p 9000:9000 cete:latest \
#       cete start --id=node1 --raft-address=:7000 --grpc-address=:9000 --http-address=:8000 \
#       --data-directory=/tmp/cete/node1
#   docker exec -it cete-node1 cete node --grpc-address=:9000
#
# The binary links only glibc, libm and libgcc_s, so it must be built on a system whose glibc
# is not newer than bookworm's (2.36), e.g. on Debian 12 itself.
FROM debian:bookworm-slim

# Which file becomes /usr/local/bin/cete, relative to the build context.
ARG CETE_BINARY=bin/cete

# /var/lib/cete is the home of the `cete` user and the data directory of the default command;
# /tmp/cete is where Cete's own defaults and walkthroughs put data. Both belong to `cete` so
# the node can write there, and both are volumes so the data outlives the container's
# filesystem: an empty named volume mounted on either starts with this ownership.
RUN groupadd --gid 1000 cete \
    && useradd --uid 1000 --gid cete --home-dir /var/lib/cete --no-create-home --shell /usr/sbin/nologin cete \
    && install -d -o cete -g cete -m 0750 /var/lib/cete \
    && install -d -o cete -g cete -m 0755 /tmp/cete

COPY ${CETE_BINARY} /usr/local/bin/cete

USER cete
WORKDIR /var/lib/cete
VOLUME ["/var/lib/cete", "/tmp/cete"]

# Raft (node to node), HTTP API, gRPC API.
EXPOSE 7000 8000 9000

LABEL org.opencontainers.image.title="cete" \
      org.opencontainers.image.description="A strongly consistent, Raft-replicated key-value store" \
      org.opencontainers.image.licenses="Apache-2.0"

# A one-node cluster listening on every interface, its data on the /var/lib/cete volume.
# Nodes of a multi-node cluster need addresses the others can reach, e.g. the container's name:
#   cete start --id=node2 --raft-address=cete2:7000 --grpc-address=cete2:9000 \
#       --http-address=cete2:8000 --peer-grpc-address=cete1:9000 --data-directory=/var/lib/cete/data
CMD ["cete", "start", "--data-directory=/var/lib/cete/data"]
