#!/usr/bin/env bash
# Local stand-ins for the Dockerfile's two base images, made without an image
# registry, for machines that cannot pull (this project's CI and developer
# machines reach Debian's packages and the Go module proxy, not a registry):
#
#   BUILD_IMAGE   (golang:<version>-<suite>, Docker's official Go image)
#     <- a Debian <suite> root filesystem made by mmdebstrap from Debian's
#        packages (the Essential set plus make and ca-certificates: what the
#        build stage runs), plus the Go toolchain of the same version as the
#        golang.org/toolchain module from the Go module proxy (checked against
#        the checksum database by `go mod download`) in /usr/local/go, and
#        the official image's GOPATH, PATH, GOTOOLCHAIN and WORKDIR; it also
#        trusts the CAs of the machine that made it (SSL_CERT_FILE), so that
#        the build stage's `go mod download` works behind a TLS-inspecting
#        proxy.
#   RUNTIME_IMAGE (gcr.io/distroless/static-debian12:nonroot)
#     <- what distroless static holds that the agent needs: Debian's CA
#        bundle (taken from the root filesystem above, where ca-certificates
#        made it), /etc/passwd and /etc/group with root, nobody and nonroot
#        (65532), /etc/nsswitch.conf, /tmp and /home/nonroot; USER 65532 and
#        SSL_CERT_FILE as the nonroot image sets. Not tzdata: the agent loads
#        no time zone (timestamps are RFC 3339 with their offsets).
#
# Both are read from the Dockerfile's ARG defaults, so a change of version
# there makes new stand-ins. They are cached twice: as tarballs under
# $LOGAGENT_IMAGE_CACHE (default <repo>/.cache/image, git-ignored) and as
# images in the engine's store, tagged with a key of this script, the two
# upstream references and the architecture; a run that finds the tagged
# images does nothing, one that finds the tarballs only imports them.
#
# Usage: deploy/image/standins.sh ENGINE     (docker or podman)
# Prints BUILD_IMAGE=<tag> and RUNTIME_IMAGE=<tag> for `--build-arg`s.
# Needs: mmdebstrap (Debian package), go, tar, sha256sum. Cold: ~2 minutes
# (mmdebstrap downloads and unpacks ~90 packages; the toolchain is ~70 MB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
engine="${1:?usage: standins.sh docker|podman}"
cache="${LOGAGENT_IMAGE_CACHE:-$repo/.cache/image}"

log() { echo "standins: $*" >&2; }
die() { log "$*"; exit 1; }

arg_default() {
	local v
	v="$(sed -n "s/^ARG $1=//p" "$repo/Dockerfile")"
	[ -n "$v" ] || die "no ARG $1=<default> in $repo/Dockerfile"
	echo "$v"
}
build_ref="$(arg_default BUILD_IMAGE)"
runtime_ref="$(arg_default RUNTIME_IMAGE)"

# golang:1.26.8-bookworm@sha256:... -> 1.26.8, bookworm
if [[ ! "$build_ref" =~ golang:([0-9]+\.[0-9]+(\.[0-9]+)?)-([a-z]+)@ ]]; then
	die "BUILD_IMAGE $build_ref is not golang:<version>-<debian suite>@<digest>"
fi
go_version="${BASH_REMATCH[1]}"
suite="${BASH_REMATCH[3]}"

command -v go >/dev/null || die "go not found (the toolchain comes from the Go module proxy through it)"
arch="$(GOTOOLCHAIN=local go env GOHOSTARCH)"

key="$( { cat "${BASH_SOURCE[0]}"; echo "$build_ref $runtime_ref $arch"; } | sha256sum | cut -c1-12)"
build_tag="localhost/logagent-standin/golang:${go_version}-${suite}-${key}"
runtime_tag="localhost/logagent-standin/distroless-static:${suite}-nonroot-${key}"

have() { "$engine" image inspect "$1" >/dev/null 2>&1; }

if have "$build_tag" && have "$runtime_tag"; then
	log "using cached $build_tag and $runtime_tag"
	echo "BUILD_IMAGE=$build_tag"
	echo "RUNTIME_IMAGE=$runtime_tag"
	exit 0
fi

mkdir -p "$cache"
build_tar="$cache/build-$key.tar"
runtime_tar="$cache/runtime-$key.tar"
work="$(mktemp -d "$cache/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- the build stage's root filesystem ----------------------------------------
if [ ! -s "$build_tar" ]; then
	command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
	start=$SECONDS
	# The host's apt sources when the host runs the same suite (a configured
	# mirror keeps working); else mmdebstrap's default mirror for the suite.
	mirrors=()
	if [ "$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")" = "$suite" ]; then
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
			[ -s "$f" ] && mirrors+=("$f")
		done
	fi
	log "making a Debian $suite root filesystem with mmdebstrap (essential + make, ca-certificates)"
	mmdebstrap --quiet --variant=essential --include=make,ca-certificates \
		--skip=output/dev "$suite" "$work/rootfs.tar" "${mirrors[@]}"

	log "adding Go $go_version from the module proxy (golang.org/toolchain)"
	mod="golang.org/toolchain@v0.0.1-go${go_version}.linux-${arch}"
	dir="$(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$mod" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
	[ -d "$dir" ] || die "go mod download $mod gave no folder"
	mkdir -p "$work/go/usr/local" "$work/go/go/bin" "$work/go/go/src"
	cp -r "$dir" "$work/go/usr/local/go"
	# Module files are read-only and lose their execute bits; the go command
	# restores them when it runs a downloaded toolchain, and so do we.
	chmod -R u+w "$work/go/usr/local/go"
	chmod a+x "$work/go/usr/local/go/bin/"* "$work/go/usr/local/go/pkg/tool/"*/*
	chmod -R 1777 "$work/go/go"
	# The CAs this machine trusts, for the build stage's `go mod download`: a
	# machine behind a TLS-inspecting proxy reaches the module proxy only with
	# the proxy's CA. Beside Debian's bundle, which the runtime stand-in takes.
	extra=()
	if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$work/go/etc/ssl/certs"
		cp /etc/ssl/certs/ca-certificates.crt "$work/go/etc/ssl/certs/build-host-ca-certificates.crt"
		chmod 0644 "$work/go/etc/ssl/certs/build-host-ca-certificates.crt"
		extra+=(./etc/ssl/certs/build-host-ca-certificates.crt)
	fi
	tar --append -f "$work/rootfs.tar" -C "$work/go" --owner=0 --group=0 --numeric-owner \
		./usr/local/go ./go "${extra[@]}"
	mv "$work/rootfs.tar" "$build_tar"
	log "build root filesystem: $(du -h "$build_tar" | cut -f1) in $((SECONDS - start))s"
fi

# --- the runtime stage: what distroless static holds that the agent needs -------
if [ ! -s "$runtime_tar" ]; then
	r="$work/runtime"
	mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/root" "$r/home/nonroot"
	tar -xOf "$build_tar" ./etc/ssl/certs/ca-certificates.crt >"$r/etc/ssl/certs/ca-certificates.crt"
	[ -s "$r/etc/ssl/certs/ca-certificates.crt" ] || die "no CA bundle in $build_tar"
	# distroless' users and groups.
	cat >"$r/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
		nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
	EOF
	cat >"$r/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
		tty:x:5:
		staff:x:50:
		nonroot:x:65532:
	EOF
	echo 'hosts: files dns' >"$r/etc/nsswitch.conf"
	chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/nsswitch.conf" "$r/etc/ssl/certs/ca-certificates.crt"
	chmod 1777 "$r/tmp"
	chmod 0700 "$r/root" "$r/home/nonroot"
	# Fixed owners and times: the same tarball, and so the same layer, every time.
	tar -cf "$work/runtime.tar" -C "$r" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
		--exclude=./home/nonroot .
	tar --append -f "$work/runtime.tar" -C "$r" --mtime=@0 --owner=65532 --group=65532 --numeric-owner ./home/nonroot
	mv "$work/runtime.tar" "$runtime_tar"
fi

# --- into the engine's store -----------------------------------------------------
build_env=()
if tar -tf "$build_tar" ./etc/ssl/certs/build-host-ca-certificates.crt >/dev/null 2>&1; then
	build_env=(--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/build-host-ca-certificates.crt')
fi
log "importing $build_tag"
"$engine" import \
	--change "ENV GOLANG_VERSION=$go_version" \
	--change 'ENV GOTOOLCHAIN=local' \
	--change 'ENV GOPATH=/go' \
	--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'WORKDIR /go' \
	"${build_env[@]}" \
	"$build_tar" "$build_tag" >/dev/null
log "importing $runtime_tag"
"$engine" import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
	--change 'USER 65532' \
	--change 'WORKDIR /home/nonroot' \
	"$runtime_tar" "$runtime_tag" >/dev/null

# Tarballs of earlier keys (another Go version, another script) are dead
# weight. Images of other keys stay: another checkout on this machine may use
# them (`podman image prune` or rmi of localhost/logagent-standin/* frees them).
for f in "$cache"/build-*.tar "$cache"/runtime-*.tar; do
	case "$f" in *"-$key.tar" | *'*'*) ;; *) rm -f "$f" ;; esac
done

echo "BUILD_IMAGE=$build_tag"
echo "RUNTIME_IMAGE=$runtime_tag"
