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

.PHONY: all build test unit e2e fuzz demo bench soak lint tools deps image clean

all: build

## build: the static agent binary, as the Dockerfile builds it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/logagent ./cmd/logagent

## demo: sample logs in the kubelet layout -> agent -> stdout, then its own counts
demo:
	$(GO) run ./cmd/logagent demo

## test: everything CI runs: lint, unit and real-component tests (race detector on), fuzz smoke
test: deps tools lint unit e2e fuzz

## unit: the main module's tests, including those on a real kube-apiserver and Prometheus
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

## e2e: the separate module of tests against third-party receivers
e2e:
	cd test/e2e && $(GO) test -race -count=1 -timeout 20m ./...

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@for f in $$($(GO) test -list '^Fuzz' ./collector/ | grep '^Fuzz'); do \
		echo "fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./collector/ || exit 1; \
	done

## bench: micro-benchmarks, then the end-to-end benchmark on genlogs data when ../shared has it
bench:
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench . -benchmem ./collector/ ./enrich/ ./output/
	GENLOGS=$(GENLOGS) $(GO) test -run '^$$' -bench 'Pipeline' -benchtime 1x -timeout 30m ./cmd/logagent/

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
