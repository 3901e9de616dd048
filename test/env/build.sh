#!/usr/bin/env bash
# Builds the real peers the tests and `npm start` run, from their Go modules,
# into a cache outside the checkout keyed by version (and by the scratch
# module's go.mod/go.sum), so fresh clones reuse them:
#   kube-apiserver, kube-controller-manager  (k8s.io/kubernetes, module go/kube)
#   kubelet, kube-scheduler, kubectl         (k8s.io/kubernetes at the same version, module go/kubelet:
#                                             its own module, so the control plane's cache key stays put)
#   etcd                                     (go.etcd.io/etcd/server/v3)
#   juicefs                                  (github.com/juicedata/juicefs, cgo for SQLite)
#   juicefs-prev                             (the same, an older release: a second mount image to upgrade from)
#   csi-sanity                               (github.com/kubernetes-csi/csi-test/v5)
#   csi-provisioner                          (github.com/kubernetes-csi/external-provisioner/v6)
#   csi-resizer                              (github.com/kubernetes-csi/external-resizer/v2)
#   csi-snapshotter, snapshot-controller     (github.com/kubernetes-csi/external-snapshotter/v8)
#
# Usage: build.sh [--paths] [COMPONENT ...]   (default: all components)
#   --paths  print "name=/abs/path" lines for the requested binaries at the end.
# KUBEBUILDER_ASSETS (a folder with kube-apiserver and etcd), or
# TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD / TEST_ASSET_KUBE_CONTROLLER_MANAGER,
# point at existing binaries instead of building them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${JFS_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jfs-sidecar}/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
# juicefs' forks of its dependencies are not in the checksum database; go.sum pins them.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/juicedata,gitea.com/davies"

print_paths=0
components=()
for arg in "$@"; do
  case "$arg" in
    --paths) print_paths=1 ;;
    kube-apiserver|kube-controller-manager|kubelet|kube-scheduler|kubectl|etcd|juicefs|juicefs-prev|csi-sanity|csi-provisioner|csi-resizer|csi-snapshotter|snapshot-controller) components+=("$arg") ;;
    *) echo "build.sh: unknown component '$arg'" >&2; exit 2 ;;
  esac
done
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kube-controller-manager kubelet kube-scheduler kubectl etcd juicefs juicefs-prev csi-sanity csi-provisioner csi-resizer csi-snapshotter snapshot-controller)

log() { echo "[env:build] $*" >&2; }

# module dir, package, version → folder keyed by version and the module's pins
key_dir() {
  local mod="$1" version="$2"
  local sum
  sum=$(cat "$here/go/$mod/go.mod" "$here/go/$mod/go.sum" | sha256sum | cut -c1-12)
  echo "$cache_root/$mod-$version-$sum"
}

module_version() { # module dir, required module path
  sed -n "s#^require $2 \(v[^ ]*\)#\1#p; s#^[[:space:]]*$2 \(v[^ ]*\)\$#\1#p" "$here/go/$1/go.mod" | head -n1
}

declare -A result

build() { # name, module dir, package, ldflags, tags[, component name when it differs from the binary's]
  local name="$1" mod="$2" pkg="$3" ldflags="$4" tags="$5" key="${6:-$1}" version dir start
  version=$(module_version "$mod" "${pkg%%/cmd/*}")
  [ -n "$version" ] || version=$(module_version "$mod" "$pkg")
  dir=$(key_dir "$mod" "${version:-unknown}")
  if [ -x "$dir/$name" ]; then
    result[$key]="$dir/$name"
    return
  fi
  mkdir -p "$dir"
  log "building $name $version from $pkg (cold builds take minutes; Go's module and build caches make the next one fast)"
  start=$(date +%s)
  (cd "$here/go/$mod" && go mod download && \
    CGO_ENABLED="${CGO:-0}" go build -tags "$tags" -ldflags "-s -w $ldflags" -o "$dir/$name.tmp" "$pkg")
  mv "$dir/$name.tmp" "$dir/$name"
  log "built $name in $(( $(date +%s) - start ))s → $dir/$name"
  result[$key]="$dir/$name"
}

asset() { # name, env var override
  local name="$1" override="${2:-}"
  if [ -n "$override" ] && [ -x "$override" ]; then result[$name]="$override"; return 0; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then
    result[$name]="$KUBEBUILDER_ASSETS/$name"; return 0
  fi
  return 1
}

kube_version=$(module_version kube k8s.io/kubernetes)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
# The node's binaries must match the control plane's version (one skew fewer to reason about).
kubelet_version=$(module_version kubelet k8s.io/kubernetes)
if [ "$kubelet_version" != "$kube_version" ]; then
  echo "build.sh: go/kubelet pins k8s.io/kubernetes $kubelet_version, go/kube $kube_version: keep them equal" >&2
  exit 2
fi
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$kube_version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$kube_minor"
juicefs_version=$(module_version juicefs github.com/juicedata/juicefs)
# The lite set of juicefs build tags, keeping SQLite metadata and file/S3 storage: most of the build time is elsewhere.
juicefs_tags="nogateway,nowebdav,nocos,nobos,nohdfs,noibmcos,noobs,nooss,noqingstor,nosftp,noswift,noazure,nogs,noufile,nob2,nonfs,nodragonfly,nomysql,nopg,notikv,nobadger,noetcd"
juicefs_ldflags="-X github.com/juicedata/juicefs/pkg/version.version=${juicefs_version#v}"
juicefs_prev_version=$(module_version juicefs-prev github.com/juicedata/juicefs)
juicefs_prev_ldflags="-X github.com/juicedata/juicefs/pkg/version.version=${juicefs_prev_version#v}"

for c in "${components[@]}"; do
  case "$c" in
    kube-apiserver) asset kube-apiserver "${TEST_ASSET_KUBE_APISERVER:-}" || build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags" "" ;;
    kube-controller-manager) asset kube-controller-manager "${TEST_ASSET_KUBE_CONTROLLER_MANAGER:-}" || build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags" "" ;;
    kubelet|kube-scheduler|kubectl) build "$c" kubelet "k8s.io/kubernetes/cmd/$c" "$kube_ldflags" "" ;;
    etcd) asset etcd "${TEST_ASSET_ETCD:-}" || build etcd etcd go.etcd.io/etcd/server/v3 "" "" ;;
    juicefs) CGO=1 build juicefs juicefs github.com/juicedata/juicefs "$juicefs_ldflags" "$juicefs_tags" ;;
    # Named "juicefs" in its own version-keyed folder: images and scripts call it by that name.
    juicefs-prev) CGO=1 build juicefs juicefs-prev github.com/juicedata/juicefs "$juicefs_prev_ldflags" "$juicefs_tags" juicefs-prev ;;
    csi-sanity) build csi-sanity csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "" "" ;;
    csi-provisioner) build csi-provisioner csi-provisioner github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner "" "" ;;
    csi-resizer) build csi-resizer csi-resizer github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer "" "" ;;
    csi-snapshotter|snapshot-controller) build "$c" csi-snapshotter "github.com/kubernetes-csi/external-snapshotter/v8/cmd/$c" "" "" ;;
  esac
done

if [ "$print_paths" = 1 ]; then
  for c in "${components[@]}"; do echo "$c=${result[$c]}"; done
fi
