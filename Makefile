# flagger-rs: `make demo` runs the main job, `make test` runs every test tier.
# Both install what they need on a fresh machine (Rust toolchain components, Go tools for the local
# cluster, Debian packages for Prometheus and Alertmanager).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

# CI runs on a fresh clone: reuse registry crates and build outputs across runs when the cache is
# there, never depend on it.
ifeq ($(CI),true)
export CARGO_TARGET_DIR ?= $(HOME)/.cache/flagger-rs/target
endif
export CARGO_TERM_COLOR ?= never

BIN = $(or $(CARGO_TARGET_DIR),target)/debug/flagger-rs

.PHONY: help demo test setup build lint test-unit fuzz-build test-fuzz fuzz test-monitoring test-install test-e2e crds bench mutants cluster-up cluster-down image

help:
	@echo "make demo   - the main job: build, then show flagger-rs on the examples and the local cluster"
	@echo "make test   - every test tier: fmt, clippy, unit/table/property tests, e2e on the local cluster"
	@echo "make fuzz   - 10^6 generated manifests and 10^5 templates in the shipped profile (see docs/testing.md)"
	@echo "make crds   - regenerate deploy/crds/flagger.yaml from the API types"
	@echo "make image  - the OCI image (static binary, no base image) under <target dir>/image"

setup:
	@hack/setup

build: setup
	$(CARGO) build --locked -p flagger-rs

demo: build
	@echo "==> flagger-rs validate examples/  (every manifest, every problem with its field path)"
	$(BIN) validate examples/
	@echo "==> flagger-rs plan examples/canary.yaml  (what this Canary will do, before it runs)"
	$(BIN) plan examples/canary.yaml
	@hack/demo

test: setup lint test-unit test-fuzz test-monitoring test-install test-e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test-unit:
	$(CARGO) test --locked --workspace

# Generated manifests and templates through the code flagger-rs runs on them, in the shipped profile
# (docs/testing.md). `make test` gives it FUZZ_SECONDS; `make fuzz` runs the full counts.
# Built exactly as hack/image builds the shipped binary (same profile, target and flags), so the two
# share every dependency's build.
FUZZ = $(or $(CARGO_TARGET_DIR),target)/x86_64-unknown-linux-gnu/dist/flagger-fuzz
FUZZ_SECONDS ?= 90

fuzz-build:
	RUSTFLAGS="$${RUSTFLAGS:-} -C target-feature=+crt-static" $(CARGO) build --locked --profile dist --target x86_64-unknown-linux-gnu -p flagger-fuzz

test-fuzz: fuzz-build
	$(FUZZ) --seconds $(FUZZ_SECONDS)

fuzz: fuzz-build
	$(FUZZ) --manifests 1000000 --templates 100000

test-monitoring:
	@hack/test-monitoring

test-install:
	@hack/test-install

# The image test (tests/e2e/tests/image.rs) runs the image's entrypoint on the e2e cluster.
test-e2e:
	@image=$$(hack/image | tail -n 1); FLAGGER_RS_IMAGE="$$image" hack/e2e

image: setup
	@hack/image

# kustomize loads nothing from outside a base's directory, so the base keeps a copy (hack/test-install checks it).
crds: build
	$(BIN) crds > deploy/crds/flagger.yaml
	cp deploy/crds/flagger.yaml deploy/kustomize/base/flagger-rs/crd.yaml

bench:
	$(CARGO) bench --locked -p flagger-core

# 24 proptest cases per mutant keep a full run near an hour on two cores; the score in the README uses this.
mutants:
	PROPTEST_CASES=24 $(CARGO) mutants -p flagger-core -j 1

cluster-up:
	@hack/cluster/up

cluster-down:
	@hack/cluster/down
