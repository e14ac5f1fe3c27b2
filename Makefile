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

export LOGAGENT_KUBE_ASSETS ?= $(TOOLS)/bin

.PHONY: all build test unit e2e fuzz demo bench lint tools deps image clean

all: build

## build: the static agent binary, as the Dockerfile builds it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/logagent ./cmd/logagent

## demo: sample logs in the kubelet layout -> agent -> stdout, then its own counts
demo:
	$(GO) run ./cmd/logagent demo

## test: everything CI runs: lint, unit and real-component tests (race detector on); the
## fuzz targets' seed corpora run as ordinary tests (random exploration: make fuzz)
test: deps tools lint unit e2e

## unit: the main module's tests, including those on a real kube-apiserver and Prometheus
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

## e2e: the separate module of tests against third-party receivers
e2e:
	cd test/e2e && $(GO) test -race -count=1 -timeout 20m ./...

## fuzz: random exploration, each fuzz target for FUZZTIME (outside make test and CI)
fuzz:
	@for p in ./collector/ ./output/; do \
		for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "fuzz $$p $$f for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

## bench: micro-benchmarks, then the agent as its own process: the bulk pipeline (genlogs data
## when ../shared has it, enriched from a real kube-apiserver when the test tools are built),
## many files (300 and 2,000 at 10k lines/s), freshness (20k lines/s with rotation) and idle
## cost (500 quiet files). LOGAGENT_BENCH_BIN=path measures another build of the agent.
bench:
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench . -benchmem ./collector/ ./enrich/ ./output/
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench 'Pipeline|Node' -benchtime 1x -timeout 60m ./cmd/logagent/

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

## deps: system packages the tests use (Debian's prometheus, for promtool and a real scrape)
deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
		echo "installing Debian's prometheus package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
		service prometheus stop >/dev/null 2>&1 || true; }

## image: the container image (needs a Docker engine)
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf bin
