# etcdop developer targets. Every target works on a fresh machine (it installs what it needs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := $(BIN)/python -m e2e.localcluster

.PHONY: dev infra lint test test-unit test-integration test-e2e cluster-up cluster-down demo demo-down image e2e-kind clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

## dev: a .venv with etcdop (editable) and the dev tools; idempotent
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

## infra: build the Go test binaries into the cache (~/.cache/etcdop), only what is missing
infra:
	bash e2e/localcluster/build.sh all

## lint: ruff and mypy --strict on src/
lint: dev
	$(BIN)/ruff check src tests e2e
	$(BIN)/ruff format --check src
	$(BIN)/mypy src

test-unit: dev
	$(BIN)/pytest tests/unit -q

## test: everything CI runs: lint, unit, integration and e2e suites on the local cluster, whose
## nodes are upstream kubelets running the product image (built first: member pods run its agent)
test: dev infra image lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

cluster-up: dev infra image
	$(LOCAL) up
	@$(LOCAL) env

cluster-down:
	$(LOCAL) down

## demo: the main job: local cluster up, etcdop installed from the chart (operator Pods), a
## 3-member etcd cluster created, keys written, a backup to S3 taken and verified
demo: dev infra image
	$(BIN)/python -m e2e.demo up

## demo-down: delete what the demo made (its namespaces, the release, the CRDs), then the cluster
demo-down: dev
	$(BIN)/python -m e2e.demo down

## image: build the image from the Dockerfile with no registry (a local base, host-built wheels),
## lint it (hadolint), run `etcdop --help`, `etcdop agent --help`, `etcdutl version` and the
## operator (against a local control plane, read-only root) in it, print its size
image: dev
	PY=$(BIN)/python bash bench/image.sh

## e2e-kind: where Docker and kind work: image, kind cluster, chart, a 3-member cluster Available.
## Elsewhere (here) it stops with the reason and fails.
e2e-kind:
	bash e2e/kind.sh

clean: cluster-down
	rm -rf $(VENV)
