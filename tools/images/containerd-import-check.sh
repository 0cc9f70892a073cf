#!/usr/bin/env bash
# Imports one archive that `make images` wrote into a throwaway containerd and checks that the
# image gets its full name (ghcr.io/airt-dev/<name>:<version>), as a kubelet's containerd on a
# real node would see it after `ctr -n k8s.io images import <archive>`.
#
# Run by hand after `make images` (root; containerd 1.6 from Debian):
#   bash tools/images/containerd-import-check.sh [key]      # key from images.json, default metrics
# It starts containerd with its own root, state and socket under a temporary directory, imports,
# lists, stops it and deletes the directory; the host's containerd, if any, is not touched.
set -euo pipefail

key="${1:-metrics}"
images="${AIRT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airt}/images/images.json"
read -r archive ref < <(python3 -c 'import json,sys; e = json.load(open(sys.argv[1]))[sys.argv[2]]; print(e["archive"], e["ref"])' "$images" "$key")

dir="$(mktemp -d /tmp/airt-containerd.XXXXXX)"
cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/sock"
EOF
containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  grep -q " $dir/" /proc/mounts && awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount
  rm -rf "$dir"
}
trap cleanup EXIT
ctr=(ctr --address "$dir/sock" -n k8s.io)
for _ in $(seq 50); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done

start=$SECONDS
"${ctr[@]}" images import "$archive" >&2
echo "imported $archive in $((SECONDS - start)) s" >&2
"${ctr[@]}" images ls
"${ctr[@]}" images ls -q | grep -qxF "$ref" || { echo "error: $ref not among the imported images" >&2; exit 1; }
echo "ok: containerd names it $ref"
