# syntax=docker/dockerfile:1
#
# logagent's container image: `make image` (docker build --build-arg VERSION=... .).
# A static binary built by the Makefile's own build target, on a final stage
# with no shell, no package manager and no libc: CA certificates (for TLS to
# Forward servers), /etc/passwd and the binary.

ARG GO_VERSION=1.26.8

# ---- build: the same `make build` as CI and developers run ----
# On the builder's platform, cross-compiling for the target's (buildx
# multi-platform builds need no emulation: the binary is pure Go).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context (see .dockerignore): the version comes in
# as a build argument, as `make image` passes it.
ARG VERSION=dev
ARG TARGETOS TARGETARCH
# make build = CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION)'
#              -o bin/logagent ./cmd/logagent
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} make build VERSION=${VERSION}

# ---- final: distroless static, no shell ----
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/logagent /logagent
# Non-root by default (distroless' "nonroot", 65532). The Kubernetes
# manifests run it as uid 0 with every capability but DAC_READ_SEARCH dropped,
# to read root-owned log files; see deploy/kubernetes/daemonset.yaml.
USER 65532:65532
EXPOSE 2020
ENTRYPOINT ["/logagent"]
CMD ["run"]
