#!/usr/bin/env bash
# Builds the pinned control-plane tools, and the real node's kubelet, kube-router and model store,
# from the Go module proxy into a cache outside the work tree, keyed by the pins, and prints the
# cache directory on its last line.
#
# Called by `make tools` (and so by `make test`, `make dev`, `make cluster-up`). A second call
# with the same pins builds nothing: each binary is skipped when it already exists in the keyed
# directory. The key is a hash of every tools/*/go.mod and go.sum plus the Go version, so a
# change of pin lands in a fresh directory and never mixes versions. The project's own Go source
# (the model store) is part of the key too. The test Collector (tools/otelcol) has a key of its own,
# so that a change of its pins never rebuilds the control plane, and is linked into the directory;
# `tools/build.sh otelcol` builds only the Collector and prints its own directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${AIRT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airt}"
control_plane=(etcd helm k8s kube-router kwok registry)
key="$( (go env GOVERSION; for d in "${control_plane[@]}"; do cat "$here/$d/go.mod"; done
  for d in "${control_plane[@]}"; do cat "$here/$d/go.sum"; done
  cat "$here"/registry/*/*.go) | sha256sum | cut -c1-16)"
bin="$cache_root/bin/$key"
# The OpenTelemetry Collector the tracing tests send spans to (OTLP in, JSON file out).
otel_key="$( (go env GOVERSION; cat "$here"/otelcol/go.mod "$here"/otelcol/go.sum "$here"/otelcol/*.go) | sha256sum | cut -c1-16)"
otel_bin="$cache_root/bin/otelcol-$otel_key"
mkdir -p "$otel_bin"
exec 8>"$otel_bin/.lock"
flock 8
if [[ ! -x "$otel_bin/otelcol" ]]; then
  echo "[tools] building otelcol (tools/otelcol) ..." >&2
  start=$SECONDS
  (cd "$here/otelcol" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$otel_bin/otelcol.tmp" .)
  mv "$otel_bin/otelcol.tmp" "$otel_bin/otelcol"
  echo "[tools] built otelcol in $((SECONDS - start)) s" >&2
fi
flock -u 8
# `tools/build.sh otelcol`: the Collector alone (the tracing tests need nothing else)
if [[ "${1:-}" == otelcol ]]; then
  echo "$otel_bin"
  exit 0
fi

mkdir -p "$bin"
# One build at a time per key (make test, a test fixture and make dev may all ask at once).
exec 9>"$bin/.lock"
flock 9

k8s_version="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")"
helm_version="$(awk '$1=="helm.sh/helm/v3" {print $2; exit}' "$here/helm/go.mod")"
build_date="2026-01-01T00:00:00Z" # fixed, so the binaries are reproducible

log() { printf '[tools] %s\n' "$*" >&2; }

# Progress: each binary's place in the list, its time and the time so far.
total=12
n=0
all_start=$SECONDS

# build <module dir> <output name> <package> [ldflags]
build() {
  local dir="$1" out="$2" pkg="$3" ldflags="${4:-}"
  n=$((n + 1))
  if [[ -x "$bin/$out" ]]; then
    return 0
  fi
  log "$n/$total building $out ($pkg) ..."
  local start=$SECONDS
  (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "$n/$total built $out in $((SECONDS - start)) s ($((SECONDS - all_start)) s so far)"
}

k8s_ldflags=""
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  build k8s "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ldflags"
done
build registry registry github.com/google/go-containerregistry/cmd/registry
build registry modelstore ./modelstore
# The real node's NetworkPolicy engine: kube-router, run with its firewall controller only.
build kube-router kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm_version"

if (( n != total )); then
  log "internal: $n binaries listed, total says $total"
  exit 1
fi
ln -sfn "$otel_bin/otelcol" "$bin/otelcol"

echo "$bin"
