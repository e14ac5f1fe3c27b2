#!/usr/bin/env bash
# Builds the real components the cluster tests run (kube-apiserver, etcd,
# kubectl, helm) from the Go module proxy, each in its own tools module under
# test/tools/, into <repo>/.cache/tools/<name>-<version>/<name>.
#
# Idempotent: a binary that already exists is not rebuilt, so CI and
# developers pay the cold build (~11 min for kube-apiserver on 2 cores) once.
# Binaries are written to a temporary name and renamed, so an interrupted
# build never leaves a half-written binary that a later run would skip.
#
# Usage: test/tools/build.sh [name...]   (default: all tools)
#   LOGAGENT_TOOLS_DIR   where to put binaries (default <repo>/.cache/tools)
#
# After a build, <tools dir>/bin/<name> links to the current version of each
# tool; that folder is what test/kubetest reads (override with
# LOGAGENT_KUBE_ASSETS), and it also works as KUBEBUILDER_ASSETS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${LOGAGENT_TOOLS_DIR:-$repo/.cache/tools}"

kube_version=v1.37.2
etcd_version=v3.7.3
helm_version=v3.22.0

# name | version | tools module dir | package | link flags | version check
# Version link flags matter: without them kube-apiserver reports
# v0.0.0-master+$Format and version-checking clients fail.
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${kube_version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=37 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=${kube_version} \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=37 \
 -X k8s.io/client-go/pkg/version.gitTreeState=clean"
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}"
helm_ldflags="-s -w \
 -X helm.sh/helm/v3/internal/version.version=${helm_version} \
 -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37 \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"

# Order: what the enrich tests need first (etcd, kube-apiserver), then kubectl
# (reuses most of kube-apiserver's build cache), then helm.
all_tools=(etcd kube-apiserver kubectl helm)

spec() {
	case "$1" in
	etcd) echo "$etcd_version|etcd|go.etcd.io/etcd/server/v3|$etcd_ldflags|--version" ;;
	kube-apiserver) echo "$kube_version|kube|k8s.io/kubernetes/cmd/kube-apiserver|$kube_ldflags|--version" ;;
	kubectl) echo "$kube_version|kube|k8s.io/kubernetes/cmd/kubectl|$kube_ldflags|version --client" ;;
	helm) echo "$helm_version|helm|helm.sh/helm/v3/cmd/helm|$helm_ldflags|version --short" ;;
	*) return 1 ;;
	esac
}

tools=("$@")
if [ ${#tools[@]} -eq 0 ]; then
	tools=("${all_tools[@]}")
fi
for name in "${tools[@]}"; do
	if ! spec "$name" >/dev/null; then
		echo "build.sh: unknown tool \"$name\" (known: ${all_tools[*]})" >&2
		exit 2
	fi
done

# Static, reproducible, offline-of-the-main-module builds:
# - CGO_ENABLED=0: static binaries, no C toolchain needed (upstream ships them so).
# - GOTOOLCHAIN=local: use the installed Go; never fetch another toolchain.
# - GOWORK=off: a developer's go.work must not pull the main module in.
# - GOFLAGS -mod=readonly: the committed go.mod/go.sum are the truth; a
#   build never rewrites them. -trimpath is passed explicitly below.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="-mod=readonly -buildvcs=false"

mkdir -p "$out/bin"
# Two concurrent runs (two engineers, make -j) would both pay the cold build
# and race on the rename; serialise them.
exec 9>"$out/.build.lock"
if ! flock -n 9; then
	echo "build.sh: another build holds $out/.build.lock; waiting for it" >&2
	flock 9
fi

for name in "${tools[@]}"; do
	IFS='|' read -r version moddir pkg ldflags version_args < <(spec "$name")
	dir="$out/$name-$version"
	bin="$dir/$name"
	if [ -x "$bin" ]; then
		echo "build.sh: $name $version: up to date"
	else
		echo "build.sh: $name $version: building $pkg (module test/tools/$moddir)"
		mkdir -p "$dir"
		tmp="$dir/.$name.tmp.$$"
		start=$(date +%s)
		# Word splitting of $ldflags is not wanted: it is one -ldflags argument.
		if ! (cd "$here/$moddir" && go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"); then
			rm -f "$tmp"
			echo "build.sh: FAILED to build $name $version (see the go output above)" >&2
			exit 1
		fi
		# A binary that does not report its version was linked without the
		# version flags (or does not run): refuse it rather than cache it.
		# shellcheck disable=SC2086 # version_args is several words
		if ! reported=$("$tmp" $version_args 2>&1) || [[ "$reported" != *"${version#v}"* ]]; then
			rm -f "$tmp"
			echo "build.sh: FAILED: $name $version_args printed \"$reported\", want version ${version#v}" >&2
			exit 1
		fi
		mv -f "$tmp" "$bin"
		echo "build.sh: $name $version: built in $(($(date +%s) - start))s"
	fi
	ln -sfn "../$name-$version/$name" "$out/bin/$name"
	echo "build.sh: $name -> $bin"
done

echo "build.sh: binaries in $out/bin (test/kubetest reads it; override with LOGAGENT_KUBE_ASSETS)"
echo "export LOGAGENT_KUBE_ASSETS=$out/bin"
