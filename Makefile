# Build, run and test Cete. `make` builds the release binary into ./bin/cete.

CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN_DIR := bin
BINARY := $(BIN_DIR)/cete
# Flags for `make start`, e.g. make start START_FLAGS='--id=node1 --data-directory=/tmp/cete/node1'
START_FLAGS ?=

.PHONY: all build start deps test fmt lint clean

all: build

build:
	$(CARGO) build --release --locked
	mkdir -p $(BIN_DIR)
	cp $(TARGET_DIR)/release/cete $(BINARY)

start: build
	./$(BINARY) start $(START_FLAGS)

# What the tests need beyond the crates: only cargo for now; cargo-nextest is used when present.
deps:
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "cargo is required: https://rustup.rs" >&2; exit 1; }
	@$(CARGO) nextest --version >/dev/null 2>&1 || \
		echo "cargo-nextest not found (cargo install cargo-nextest --locked); using cargo test" >&2

test: deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(BIN_DIR)
