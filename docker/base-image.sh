#!/usr/bin/env bash
# Makes sure the base image of Cete's Dockerfile exists in the local Docker engine, building it
# when it is missing. Elsewhere `docker build` pulls debian:bookworm-slim from Docker Hub; on a
# machine with a Docker engine but no registry to pull from, this builds an equivalent image
# from Debian's own packages: debootstrap (variant minbase) into a temporary directory, trimmed
# the way the official -slim images are, then `docker import`ed under the same name.
#
# Usage: docker/base-image.sh [IMAGE]      (default debian:bookworm-slim)
# Environment: DEBIAN_MIRROR overrides the mirror, which is otherwise the one apt uses here.
set -euo pipefail

image=${1:-debian:bookworm-slim}
# The Debian release is the tag up to its first '-': debian:bookworm-slim -> bookworm.
tag=${image##*:}
suite=${tag%%-*}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image: present"
    exit 0
fi

say() { echo "base image $image: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    die "missing, and building it with debootstrap needs root: run 'sudo $0 $image' (or docker pull $image where a registry is reachable)"
fi

# The mirror apt already uses on this host (deb822 .sources files or one-line .list files),
# skipping the security archive, which has no full release to bootstrap from.
apt_mirror() {
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    local uri
    uri=$(
        cat "${files[@]}" 2>/dev/null |
            sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
                -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' |
            tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n1
    ) || true
    echo "${uri:-http://deb.debian.org/debian}"
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}

if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "missing, and debootstrap is not installed (nor apt-get to install it)"
    say "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cete-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir "$rootfs"

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
say "debootstrap $suite ($arch, minbase) from $mirror"
debootstrap --variant=minbase --arch="$arch" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed"
}

# What the official slim images do: no docs, man pages or translations, now or on later
# installs; apt keeps no package lists or downloaded .debs in the image; no services start.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
CFG
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/ldconfig/aux-cache \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# The official images point apt at the main, updates and security archives of the release.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
: >"$rootfs/etc/machine-id"
echo localhost >"$rootfs/etc/hostname"

say "importing"
# Through a file, not a pipe: a failed tar must not leave an empty image under the name.
tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
docker import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $suite from $mirror" "$work/rootfs.tar" "$image" >/dev/null
say "built ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
