#!/usr/bin/env bash
# `make image`: builds the Dockerfile with Docker when a Docker engine
# answers, else with podman (daemonless), the same Dockerfile either way.
#
# Environment (the Makefile passes its variables of the same names):
#   IMAGE         the tag to build (required)
#   VERSION       the agent's version, as --build-arg VERSION (default dev)
#   IMAGE_ENGINE  docker or podman, instead of choosing
#   IMAGE_BASES   upstream: the Dockerfile's digest-pinned base images;
#                 local: the stand-ins of deploy/image/standins.sh, made
#                   without a registry (CI and the image test use these);
#                 auto (default): upstream when the engine has or can pull
#                   both, else local, with a warning: an image on stand-ins
#                   is for testing, not for publishing.
# With podman, CONTAINERS_CONF defaults to deploy/image/containers.conf (the
# settings sandboxed machines need; see there).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${IMAGE:?IMAGE, the tag to build, is not set}"
version="${VERSION:-dev}"
bases="${IMAGE_BASES:-auto}"
engine="${IMAGE_ENGINE:-}"

log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }

if [ -z "$engine" ]; then
	if command -v docker >/dev/null 2>&1 && timeout 30 docker info >/dev/null 2>&1; then
		engine=docker
	elif command -v podman >/dev/null 2>&1; then
		engine=podman
	else
		die "no container engine: no Docker engine answers and podman is not installed (Debian: apt-get install podman runc)"
	fi
fi
opts=()
case "$engine" in
docker)
	# RUN --mount needs BuildKit (the default since Docker 23).
	export DOCKER_BUILDKIT=1
	;;
podman)
	export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
	if [ "$CONTAINERS_CONF" = "$here/containers.conf" ] && ! command -v runc >/dev/null 2>&1; then
		die "$CONTAINERS_CONF runs containers with runc, which is not installed (apt-get install runc), or set CONTAINERS_CONF to your own"
	fi
	# The build stage's `go mod download` reaches the module proxy through
	# the host's network: a rootful podman's bridge needs iptables and
	# netavark/CNI set up, which sandboxes lack.
	opts+=(--network host)
	# For pruning what earlier builds left (below).
	opts+=(--label io.logagent.build=make-image)
	# podman 4.3 leaves TARGETOS and TARGETARCH unset without --platform.
	opts+=(--build-arg TARGETOS="$(podman info --format '{{.Host.OS}}')")
	opts+=(--build-arg TARGETARCH="$(podman info --format '{{.Host.Arch}}')")
	;;
*) die "IMAGE_ENGINE=$engine: want docker or podman" ;;
esac

arg_default() { sed -n "s/^ARG $1=//p" "$repo/Dockerfile"; }
has_or_pulls() {
	"$engine" image inspect "$1" >/dev/null 2>&1 || "$engine" pull -q "$1" >/dev/null 2>&1
}

base_args=()
use_standins() {
	local out
	out="$("$here/standins.sh" "$engine")"
	while IFS= read -r line; do
		base_args+=(--build-arg "$line")
	done <<<"$out"
}
case "$bases" in
upstream) ;;
local) use_standins ;;
auto)
	up_build="$(arg_default BUILD_IMAGE)"
	up_runtime="$(arg_default RUNTIME_IMAGE)"
	if has_or_pulls "$up_build" && has_or_pulls "$up_runtime"; then
		log "bases: upstream ($up_build, $up_runtime)"
	else
		log "WARNING: cannot pull the upstream base images; building on local stand-ins"
		log "WARNING: (deploy/image/standins.sh). Such an image is for testing: do not publish it."
		use_standins
	fi
	;;
*) die "IMAGE_BASES=$bases: want upstream, local or auto" ;;
esac

start=$SECONDS
log "$engine build -t $image (VERSION=$version${base_args[*]:+ ${base_args[*]}})"
"$engine" build "${opts[@]}" --build-arg VERSION="$version" "${base_args[@]}" \
	-t "$image" -f "$repo/Dockerfile" "$repo"
if [ "$engine" = podman ]; then
	# podman keeps every build's intermediate images (~40 MB per source
	# change). Keep this build's build stage as the layer cache (a tag; the
	# build is cached, so this takes a second) and drop what earlier builds
	# left: only images labelled by this script.
	"$engine" build -q "${opts[@]}" --build-arg VERSION="$version" "${base_args[@]}" \
		--target build -t localhost/logagent-build-cache -f "$repo/Dockerfile" "$repo" >/dev/null
	"$engine" image prune -f --filter label=io.logagent.build=make-image >/dev/null
fi
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
log "built $image with $engine in $((SECONDS - start))s: $((size / 1024)) KiB"
