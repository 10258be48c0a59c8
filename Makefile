# Build, run and test Cete. `make` builds the release binary into ./bin/cete.

CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN_DIR := bin
BINARY := $(BIN_DIR)/cete
# Flags for `make start`, e.g. make start START_FLAGS='--id=node1 --data-directory=/tmp/cete/node1'
START_FLAGS ?=

.PHONY: all build start deps pydeps browser test fmt lint clean

all: build

build:
	$(CARGO) build --release --locked
	mkdir -p $(BIN_DIR)
	# Copy beside, then rename: replacing a binary that is running must not fail.
	cp $(TARGET_DIR)/release/cete $(BINARY).tmp
	mv -f $(BINARY).tmp $(BINARY)

start: build
	./$(BINARY) start $(START_FLAGS)

# What the tests need beyond the crates: only cargo for now; cargo-nextest is used when present.
deps:
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "cargo is required: https://rustup.rs" >&2; exit 1; }
	@$(CARGO) nextest --version >/dev/null 2>&1 || \
		echo "cargo-nextest not found (cargo install cargo-nextest --locked); using cargo test" >&2

# Python tools nobody on the project wrote (grpcio's health checking and reflection clients,
# openapi-spec-validator, schemathesis; from PyPI, versions in tests/python/requirements.txt), in
# a virtualenv of the project's own; the tests that run them find it through CETE_TEST_PYTHON
# and, under make test, fail without it.
PYENV := $(TARGET_DIR)/pyenv
$(PYENV)/.installed: tests/python/requirements.txt
	$(PYTHON) -m venv $(PYENV)
	$(PYENV)/bin/pip install --quiet -r tests/python/requirements.txt
	touch $@

pydeps: $(PYENV)/.installed

# A real browser for the dashboard's test: Debian's Chromium and its WebDriver, and NSS's
# certutil and pk12util for the browser's client certificate (mTLS), installed with apt-get
# where they are missing (as root, or through sudo); the test skips loudly without them.
CHROMIUM_PACKAGES := chromium chromium-driver libnss3-tools
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
		&& command -v certutil >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing $(CHROMIUM_PACKAGES) for the dashboard's browser test" >&2; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null \
			|| echo "could not install $(CHROMIUM_PACKAGES): the browser test will be skipped" >&2; \
	else echo "no apt-get: install Chromium and chromedriver for the browser test" >&2; fi

# The tests run against a build with the crash and fault points compiled in (tests/crash.rs
# arms them); release builds leave the feature off.
TEST_FEATURES := --features failpoints
TEST_ENV := CETE_TEST_PYTHON=$(abspath $(PYENV))/bin/python

test: deps pydeps browser
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(TEST_ENV) $(CARGO) nextest run --workspace $(TEST_FEATURES) --no-fail-fast; \
	else \
		$(TEST_ENV) $(CARGO) test --workspace $(TEST_FEATURES) --no-fail-fast; \
	fi

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(BIN_DIR)

# ---- Packaging: binary tarballs and the Docker image ----

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
HOST_TARGET := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
DIST_DIR := dist
PYTHON ?= python3
DOCKER ?= docker
DOCKER_IMAGE ?= cete:latest
# The image the Dockerfile starts FROM; `make docker-build` creates it when it is missing.
DOCKER_BASE_IMAGE := $(shell sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/p' Dockerfile | head -n1)

# `make dist` packages for TARGET, a Rust target triple (default: this host). Cete's Go
# Makefile took GOOS/GOARCH instead; those are accepted too and mapped to the triples below.
GO_TARGET_linux_amd64 := x86_64-unknown-linux-gnu
GO_TARGET_linux_arm64 := aarch64-unknown-linux-gnu
GO_TARGET_linux_386 := i686-unknown-linux-gnu
GO_TARGET_linux_arm := armv7-unknown-linux-gnueabihf
GO_TARGET_darwin_amd64 := x86_64-apple-darwin
GO_TARGET_darwin_arm64 := aarch64-apple-darwin
GO_TARGET_windows_amd64 := x86_64-pc-windows-msvc
GO_TARGET_windows_arm64 := aarch64-pc-windows-msvc
HOST_GOOS := $(if $(findstring -apple-,$(HOST_TARGET)),darwin,$(if $(findstring -windows-,$(HOST_TARGET)),windows,linux))
HOST_GOARCH := $(if $(filter aarch64-%,$(HOST_TARGET)),arm64,amd64)
TARGET ?= $(if $(GOOS)$(GOARCH),$(GO_TARGET_$(or $(GOOS),$(HOST_GOOS))_$(or $(GOARCH),$(HOST_GOARCH))),$(HOST_TARGET))
DIST_NAME := cete-$(VERSION)-$(TARGET)
DIST_EXE := cete$(if $(findstring -windows-,$(TARGET)),.exe)
# The host's own build is the one `make build` copies; any other target builds under target/TRIPLE/.
DIST_BINARY := $(TARGET_DIR)/$(if $(filter $(HOST_TARGET),$(TARGET)),,$(TARGET)/)release/$(DIST_EXE)

.PHONY: dist docker-build test-docker

# dist/cete-VERSION-TARGET.tar.gz: the binary (debug info stripped), README.md, LICENSE and
# config/cete.yaml, under one top directory of the same name.
dist:
	@test -n "$(TARGET)" || { echo "make dist: no Rust target for GOOS=$(GOOS) GOARCH=$(GOARCH); name one with TARGET=<triple>" >&2; exit 1; }
	@for f in README.md LICENSE config/cete.yaml; do \
		test -f $$f || { echo "make dist: $$f is missing; the tarball ships it" >&2; exit 1; }; done
	@if [ "$(TARGET)" != "$(HOST_TARGET)" ] && ! rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)'; then \
		echo "make dist: this toolchain cannot build $(TARGET); installed targets: $$(rustup target list --installed 2>/dev/null | tr '\n' ' ')" >&2; \
		echo "  elsewhere: rustup target add $(TARGET), plus a linker for it (see the README)" >&2; exit 1; fi
ifeq ($(TARGET),$(HOST_TARGET))
	$(CARGO) build --release --locked
else
	$(CARGO) build --release --locked --target $(TARGET)
endif
	rm -rf $(DIST_DIR)/$(DIST_NAME) $(DIST_DIR)/$(DIST_NAME).tar.gz
	mkdir -p $(DIST_DIR)/$(DIST_NAME)/config
	objcopy --strip-debug $(DIST_BINARY) $(DIST_DIR)/$(DIST_NAME)/$(DIST_EXE) 2>/dev/null || cp $(DIST_BINARY) $(DIST_DIR)/$(DIST_NAME)/$(DIST_EXE)
	cp README.md LICENSE $(DIST_DIR)/$(DIST_NAME)/
	cp config/cete.yaml $(DIST_DIR)/$(DIST_NAME)/config/
	tar -C $(DIST_DIR) --owner=0 --group=0 --numeric-owner -czf $(DIST_DIR)/$(DIST_NAME).tar.gz $(DIST_NAME)
	rm -rf $(DIST_DIR)/$(DIST_NAME)
	@echo "$(DIST_DIR)/$(DIST_NAME).tar.gz"

# cete:latest from the Dockerfile, with the release binary of this host stripped of debug
# info; the build context is that one file. On a machine that cannot pull images the base
# image is built first from Debian's packages (docker/base-image.sh: debootstrap, needs root).
docker-build:
	docker/base-image.sh $(DOCKER_BASE_IMAGE)
	$(CARGO) build --release --locked
	rm -rf $(DIST_DIR)/image
	mkdir -p $(DIST_DIR)/image
	objcopy --strip-debug $(TARGET_DIR)/release/cete $(DIST_DIR)/image/cete 2>/dev/null || cp $(TARGET_DIR)/release/cete $(DIST_DIR)/image/cete
	$(DOCKER) build --file Dockerfile --build-arg CETE_BINARY=cete --tag $(DOCKER_IMAGE) $(DIST_DIR)/image

# Three containers on a network of their own: writes everywhere, a follower cut off and
# caught up, the leader partitioned away, a node killed and restarted on its volume.
test-docker: docker-build
	$(PYTHON) tests/docker/cluster_test.py --image $(DOCKER_IMAGE)
	$(PYTHON) tests/docker/compose_test.py --image $(DOCKER_IMAGE)

# Cete against etcd 3.4, 3 nodes each on loopback, the same loads through their HTTP APIs; prints a
# table (benches/compare.sh; installs etcd-server when missing). BENCH_DURATION=10s by default.
.PHONY: bench-compare
bench-compare:
	bash benches/compare.sh

# The same two systems as the store grows: N keys loaded (SCALE_KEYS, default 1M), overwrites
# across them, memory and disk per node, snapshot and catch-up times (benches/scale.sh).
# SCALE_FLAT=3m instead runs mixed reads and writes over a fixed 10,000 keys and samples memory
# and file sizes every 30 s.
.PHONY: bench-scale
bench-scale:
	bash benches/scale.sh
