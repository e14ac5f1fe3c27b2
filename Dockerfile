#
# logagent's container image: `make image` (deploy/image/build.sh), with
# Docker when an engine answers, else with podman; the same file either way.
# A static binary built by the Makefile's own build target, on a final stage
# with no shell, no package manager and no libc: CA certificates (for TLS to
# Forward servers), /etc/passwd and the binary.
#
# No `# syntax=` line: the frontend built into Docker (BuildKit: Docker 23 and
# later, or DOCKER_BUILDKIT=1) and podman's both read this file, so a build
# pulls nothing but the two base images below.
#
# The base images, pinned by digest (a tag can be moved, a digest cannot), as
# build arguments so that machines without a registry can build on local
# stand-ins (deploy/image/standins.sh; `make image IMAGE_BASES=local`):
#   BUILD_IMAGE   Docker's official Go image (the multi-platform index).
#                 Stand-in: a Debian bookworm root filesystem made by
#                 mmdebstrap from Debian's packages (essential, make,
#                 ca-certificates) plus the same Go release as the
#                 golang.org/toolchain module from the Go module proxy.
#   RUNTIME_IMAGE distroless static, Debian 12, nonroot variant (index).
#                 Stand-in: Debian's CA bundle, distroless' /etc/passwd and
#                 /etc/group (root, nobody, nonroot 65532), /etc/nsswitch.conf,
#                 /tmp and /home/nonroot. Without tzdata, which distroless
#                 carries and the agent does not use.
# To move a pin: change the version and the digest together (the stand-ins
# follow the version read from here).
ARG BUILD_IMAGE=docker.io/library/golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab

# ---- build: the same `make build` as CI and developers run ----
# On the builder's platform, cross-compiling for the target's (buildx
# multi-platform builds need no emulation: the binary is pure Go).
FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context (see .dockerignore): the version comes in
# as a build argument, as `make image` passes it.
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# make build = CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION)'
#              -o bin/logagent ./cmd/logagent
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} make build VERSION=${VERSION}

# ---- final: distroless static, no shell ----
FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
# Which base this image was built on: the upstream reference, or a stand-in's
# localhost/logagent-standin/... tag (such an image is not for publishing).
LABEL org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=build /src/bin/logagent /logagent
# "/" on the PATH: `kubectl exec ds/logagent -- logagent status` (the image
# has no shell to find /logagent otherwise).
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/
# Non-root by default (distroless' "nonroot", 65532). The Kubernetes
# manifests run it as uid 0 with every capability but DAC_READ_SEARCH dropped,
# to read root-owned log files; see deploy/kubernetes/daemonset.yaml.
USER 65532:65532
EXPOSE 2020
ENTRYPOINT ["/logagent"]
CMD ["run"]
