# logagent — make targets. `make demo` and `make test` are the two commands
# the README promises work on a fresh machine.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
TOOLS     := $(CURDIR)/.cache/tools
STATICCHECK_VERSION := v0.8.2
FUZZTIME  ?= 10s
GENLOGS   ?= $(abspath $(firstword $(wildcard ../shared/bench/genlogs.py)))
IMAGE     ?= logagent:$(VERSION)
IMAGE_BASES  ?= auto
IMAGE_ENGINE ?=

export LOGAGENT_KUBE_ASSETS ?= $(TOOLS)/bin

.PHONY: all build test unit e2e fuzz demo bench soak lint tools deps image-deps image test-image clean

all: build

## build: the static agent binary, as the Dockerfile builds it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/logagent ./cmd/logagent

## demo: sample logs in the kubelet layout -> agent -> stdout, then its own counts
demo:
	$(GO) run ./cmd/logagent demo

## test: everything CI runs: lint, the image build, unit and real-component tests (race detector
## on). Deterministic: the fuzz targets run their seed corpora and saved inputs (testdata/fuzz) as
## ordinary tests in `unit`; random exploration is `make fuzz`, outside `make test` and CI.
test: deps tools lint test-image unit e2e

## unit: the main module's tests, including those on a real kube-apiserver and Prometheus
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

## e2e: the separate module of tests against third-party receivers
e2e:
	cd test/e2e && $(GO) test -race -count=1 -timeout 20m ./...

## fuzz: random exploration: every fuzz target of the main module for FUZZTIME each. Not part of
## `make test` or CI. A failing input is written to the package's testdata/fuzz/<target>/: commit it
## with the fix, and it runs in every `make test` from then on.
fuzz:
	@set -e; $(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do \
		for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$dir"/*_test.go 2>/dev/null); do \
			echo "fuzz $$pkg $$f for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

## bench: micro-benchmarks, then the agent as its own process: the bulk pipeline (genlogs data
## when ../shared has it, enriched from a real kube-apiserver when the test tools are built),
## many files (300 and 2,000 at 10k lines/s), freshness (20k lines/s with rotation), idle
## cost (500 quiet files), long records (100 files of 1,000 KiB records: peak RSS) and a noisy
## neighbour held by its rate limit. LOGAGENT_BENCH_BIN=path measures another build of the agent.
bench:
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench . -benchmem ./collector/ ./enrich/ ./output/
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench 'Pipeline|Node|LongRecords|RateLimitFlood' -benchtime 1x -timeout 60m ./cmd/logagent/

## soak: randomized fault soak of the agent binary, outside `make test`: kills, stops, receiver
## outages, rotation storms, copytruncate, pod churn; prints lines written, lost and duplicated.
## SOAK_DURATION (default 10m), SOAK_SEED (default: from the clock, printed) make a run repeatable.
SOAK_DURATION ?= 10m
soak:
	SOAK_DURATION=$(SOAK_DURATION) SOAK_SEED=$(SOAK_SEED) $(GO) test -tags soak -count=1 -run '^TestSoak$$' -v -timeout 0 ./cmd/logagent/

## lint: go vet and staticcheck
lint: $(TOOLS)/bin/staticcheck
	$(GO) vet ./...
	cd test/e2e && $(GO) vet ./...
	$(TOOLS)/bin/staticcheck ./...

$(TOOLS)/bin/staticcheck:
	GOBIN=$(TOOLS)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## tools: kube-apiserver, etcd, kubectl, helm built from the Go module proxy (cached in .cache/tools)
tools:
	test/tools/build.sh

## deps: system packages the tests use (Debian's prometheus, for promtool and a real scrape;
##       those of image-deps)
deps: image-deps
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
		echo "installing Debian's prometheus package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
		service prometheus stop >/dev/null 2>&1 || true; }

## image-deps: what make image and TestImage need: podman and runc unless a Docker engine
##             answers, and mmdebstrap for the stand-in base images (Debian packages)
image-deps:
	@need=; \
	if ! { command -v docker >/dev/null && timeout 30 docker info >/dev/null 2>&1; }; then \
		command -v podman >/dev/null || need="$$need podman"; \
		command -v runc >/dev/null || need="$$need runc"; \
	fi; \
	command -v mmdebstrap >/dev/null || need="$$need mmdebstrap"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "image-deps: no apt-get: install$$need yourself, or TestImage is skipped"; exit 0; fi; \
	echo "installing$$need (make image, TestImage)"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need

## test-image: the image TestImage runs (deploy/image_test.go builds it the same way), so that
##             the cold build (2-6 min: stand-ins, modules, compile) is paid outside go test's timeout
test-image:
	@if command -v podman >/dev/null || { command -v docker >/dev/null && timeout 30 docker info >/dev/null 2>&1; }; then \
		$(MAKE) image IMAGE=localhost/logagent:test VERSION=test IMAGE_BASES=local; \
	else echo "test-image: neither podman nor a Docker engine: TestImage is skipped"; fi

## image: the container image, with Docker when an engine answers, else podman
##        (IMAGE_BASES=upstream|local|auto, IMAGE_ENGINE=docker|podman: see deploy/image/build.sh)
image:
	IMAGE='$(IMAGE)' VERSION='$(VERSION)' IMAGE_BASES='$(IMAGE_BASES)' IMAGE_ENGINE='$(IMAGE_ENGINE)' deploy/image/build.sh

clean:
	rm -rf bin
