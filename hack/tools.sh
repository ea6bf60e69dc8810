#!/usr/bin/env bash
# Build the pinned test-control-plane binaries once, cache them outside the checkout, link them into bin/.
#
#   hack/tools.sh [kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|etcd|kine|kwok|helm|helm4 ...]
#                 (default: all)
#
# Cache layout: ${JOCH_CACHE:-$HOME/.cache/joch}/<component>-<version>/<binary>. A fresh clone on the same
# machine reuses it. Cold builds on two cores: kube-apiserver about ten minutes, kube-controller-manager
# and kube-scheduler several minutes each (they share most of the apiserver's build cache), kine and kwok
# a few minutes each.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=tools/versions.env
source "$here/tools/versions.env"
cache=${JOCH_CACHE:-$HOME/.cache/joch}
bindir="$root/bin"
mkdir -p "$cache" "$bindir"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

kube_ldflags() {
	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local flags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}

# build NAME VERSION MODULE_DIR PACKAGE [LDFLAGS]
build() {
	local name=$1 version=$2 moddir=$3 pkg=$4 ldflags=${5:-"-s -w"}
	local dest="$cache/$name-$version"
	if [[ ! -x "$dest/$name" ]]; then
		echo ">> building $name $version into $dest (cached for later runs)" >&2
		mkdir -p "$dest"
		(cd "$moddir" && go build -trimpath -ldflags "$ldflags" -o "$dest/$name.tmp" "$pkg")
		mv "$dest/$name.tmp" "$dest/$name"
	fi
	ln -sfn "$dest/$name" "$bindir/$name"
}

# build_helm LINK MAJOR VERSION: go install helm.sh/helm/<MAJOR>/cmd/helm@VERSION, linked as bin/LINK.
# Helm 3 reads the Kubernetes version it assumes for `helm template` (and kubeVersion checks) from
# variables its release Makefile sets from the client-go version it builds with; a plain `go install`
# leaves them at v1.20, and charts requiring a newer Kubernetes then fail to render. Set them the same
# way (client-go v0.N.P -> Kubernetes 1.N). Helm 4 derives the version from its build information.
build_helm() {
	local link=$1 major=$2 version=$3
	local ldflags="-s -w" key="$version"
	if [[ $major == v3 ]]; then
		local clientgo
		clientgo=$(go mod download -json "helm.sh/helm/$major@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
		clientgo=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$clientgo" | head -1)
		[[ -n $clientgo ]] || { echo "cannot read helm $version's client-go version" >&2; exit 1; }
		for pkg in pkg/lint/rules pkg/chartutil; do
			ldflags+=" -X helm.sh/helm/$major/$pkg.k8sVersionMajor=1 -X helm.sh/helm/$major/$pkg.k8sVersionMinor=$clientgo"
		done
		key="$version-k8s1.$clientgo"
	fi
	local dest="$cache/$link-$key"
	if [[ ! -x "$dest/helm" ]]; then
		echo ">> building helm $version into $dest" >&2
		mkdir -p "$dest"
		GOBIN="$dest" go install -ldflags "$ldflags" "helm.sh/helm/$major/cmd/helm@$version"
	fi
	ln -sfn "$dest/helm" "$bindir/$link"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kine kube-apiserver kube-controller-manager kube-scheduler kwok kubectl helm helm4)
for c in "${components[@]}"; do
	case "$c" in
	kube-apiserver) build kube-apiserver "$KUBE_VERSION" "$here/tools/kube" k8s.io/kubernetes/cmd/kube-apiserver "$(kube_ldflags)" ;;
	kube-controller-manager) build kube-controller-manager "$KUBE_VERSION" "$here/tools/kube" k8s.io/kubernetes/cmd/kube-controller-manager "$(kube_ldflags)" ;;
	kube-scheduler) build kube-scheduler "$KUBE_VERSION" "$here/tools/kube" k8s.io/kubernetes/cmd/kube-scheduler "$(kube_ldflags)" ;;
	# kwok: the fake-node controller (Nodes and Pods that never run anything).
	kwok) build kwok "$KWOK_VERSION" "$here/tools/kwok" sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" ;;
	kubectl) build kubectl "$KUBE_VERSION" "$here/tools/kube" k8s.io/kubernetes/cmd/kubectl "$(kube_ldflags)" ;;
	etcd) build etcd "$ETCD_VERSION" "$here/tools/etcd" go.etcd.io/etcd/server/v3 ;;
	# kine (etcd API over SQL): CGO for the mattn/go-sqlite3 driver; unlock_notify for its shared cache.
	kine) CGO_ENABLED=1 GOFLAGS="$GOFLAGS -tags=sqlite_unlock_notify" build kine "$KINE_VERSION" "$here/tools/kine" github.com/k3s-io/kine "-s -w -X github.com/k3s-io/kine/pkg/version.Version=$KINE_VERSION" ;;
	helm) build_helm helm v3 "$HELM_VERSION" ;;
	helm4) build_helm helm4 v4 "$HELM4_VERSION" ;;
	*) echo "unknown component: $c" >&2; exit 2 ;;
	esac
done
