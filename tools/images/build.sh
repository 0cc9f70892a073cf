#!/usr/bin/env bash
# Builds the runtime images (worker-cpu, metrics, operator; worker-cuda with IMAGES_CUDA=1) from
# the Dockerfiles under runtime-images/, unchanged, without a Docker daemon, exports each as an
# OCI archive into a cache outside the work tree, writes images.json there and prints that
# directory on its last line.
#
# Called by `make images` (and so, later, by the tiers that run pods on a real node: they
# import the archives with `ctr -n k8s.io images import`). Nothing is pulled from a container
# registry: the base is made here from Debian packages (tools/images/base.sh, mmdebstrap) and
# passed to the Dockerfiles through their `ARG PYTHON_IMAGE`; the RUN steps fetch packages from
# PyPI only, reusing the host's uv cache mounted into the build stage (`-v`, with
# --build-arg UV_NO_CACHE=0), so torch is not downloaded again per build.
#
# Why buildah and not podman: buildah is the build engine podman itself uses (podman build is
# buildah's code), daemonless, packaged by Debian, without podman's runtime pieces (conmon,
# netavark, pods); building and exporting images is all this needs.
#
# Cache: each image's key is a hash of its Dockerfile, its product's sources (the inputs column of
# images.txt), the files tools/images/inputs.txt lists (the workspace's pyproject files, the lock,
# this script, the base recipe), the base image and the version and revision labels: a change to
# the operator does not rebuild the worker. An image whose key already has an archive is not built again, so a second
# run with nothing changed builds nothing and says so. Archives are OCI layouts in a tar with
# uncompressed layers (bigger on disk, but no gzip on 2 cores: faster to write and to import);
# index.json names the image (org.opencontainers.image.ref.name = the full reference), so
# `ctr images import` (containerd 1.6) tags it ghcr.io/airt-dev/<name>:<version>.
#
# Environment: AIRT_CACHE (default ~/.cache/airt), IMAGES_CUDA=1 (also the CUDA worker),
# IMAGES_ONLY="metrics operator" (a subset), IMAGES_PRUNE=1 (drop buildah's dangling layers
# after the build: reclaims disk, loses the layer cache of older builds).
# Buildah's own storage lives in <cache>/images/storage (inspect it with
# `buildah --root <cache>/images/storage --runroot <cache>/images/run images`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache_root="${AIRT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airt}"
out="$cache_root/images"
mkdir -p "$out"
# One build at a time (make test, a test fixture and a developer may all ask at once).
exec 9>"$out/.lock"
flock 9
# buildah stages layer blobs in $TMPDIR (default /var/tmp): keep them with the cache, and clear
# what a build that was killed left there (gigabytes for the worker).
export TMPDIR="$out/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# ---- prerequisites: buildah (with runc), skopeo and mmdebstrap, from Debian ------------------
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v runc >/dev/null 2>&1 || command -v crun >/dev/null 2>&1 || missing+=(runc)
if ((${#missing[@]})); then
  install_cmd="apt-get install -y --no-install-recommends buildah mmdebstrap skopeo runc"
  if [[ "$(id -u)" -eq 0 && "${AIRT_IMAGES_NO_INSTALL:-0}" != 1 ]]; then
    log "installing ${missing[*]} from Debian: $install_cmd"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $install_cmd >&2
  else
    die "missing ${missing[*]}; install them with: sudo $install_cmd"
  fi
fi
[[ "$(id -u)" -eq 0 ]] || die "run as root: the base is made with mmdebstrap and the images with rootful buildah"

# ---- buildah storage ---------------------------------------------------------------------------
# overlay (native kernel overlayfs, root) shares layers between images and commits fast; vfs
# copies every layer in full (gigabytes for the worker) and is only the fallback for kernels or
# file systems without overlay support.
driver=overlay
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || { driver=vfs; log "no overlayfs in this kernel: using the vfs storage driver (slower, more disk)"; }
B=(buildah --root "$out/storage-$driver" --runroot "$out/run-$driver" --storage-driver "$driver")

# ---- what to build -----------------------------------------------------------------------------
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -1)"
[[ -n "$version" ]] || die "no version in pyproject.toml"
mapfile -t shared_inputs < <(sed 's/#.*//' "$here/inputs.txt" | awk 'NF {print $1}')
# revision_of <path>...: the revision label of an image built from these paths: the last commit
# that touched them, "-dirty" when the work tree differs from it there. Not HEAD: a commit
# elsewhere in the repository (another product, the tests, the docs) must not rebuild the image.
revision_of() {
  local rev
  rev="$(git -C "$root" log -1 --format=%H -- "$@" 2>/dev/null || true)"
  rev="${rev:-unknown}"
  if [[ -n "$(git -C "$root" status --porcelain -- "$@" 2>/dev/null || true)" ]]; then
    rev+="-dirty"
  fi
  printf '%s' "$rev"
}

# hash_files <path>...: the content hash of every file under the paths that git tracks or would
# track (untracked, not ignored), so caches such as __pycache__ do not count.
hash_files() {
  (cd "$root" && git ls-files -c -o --exclude-standard -z -- "$@" \
    | LC_ALL=C sort -zu \
    | while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done \
    | xargs -0 -r sha256sum) | sha256sum | cut -c1-16
}

# ---- the base: Debian bookworm's Python 3.11, shaped like python:3.11-slim ---------------------
base_hash="$(cat "$here/base.sh" | sha256sum | cut -c1-16)"
base_ref="localhost/airt-base-python:3.11-$base_hash"
ensure_base() {
  if "${B[@]}" inspect --type image "$base_ref" >/dev/null 2>&1; then
    return 0
  fi
  local tar="$out/base/$base_hash.tar" start=$SECONDS
  if [[ ! -s "$tar" ]]; then
    log "making the base root file system with mmdebstrap (bookworm, deb.debian.org) ..."
    mkdir -p "$out/base"
    rm -f "$out/base/"*.tar  # an older recipe's
    bash "$here/base.sh" "$tar.tmp" >&2
    mv "$tar.tmp" "$tar"
  fi
  log "importing it as $base_ref ..."
  local ctr
  ctr="$("${B[@]}" from --pull=never scratch)"
  "${B[@]}" add "$ctr" "$tar" / >/dev/null
  "${B[@]}" config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd '["python3"]' \
    --label org.opencontainers.image.title=airt-base-python \
    --label org.opencontainers.image.description="Debian bookworm with its Python 3.11 (mmdebstrap), shaped like python:3.11-slim" \
    --label "org.opencontainers.image.version=3.11-$base_hash" \
    "$ctr"
  "${B[@]}" commit --rm --format oci "$ctr" "$base_ref" >/dev/null
  log "base ready in $((SECONDS - start)) s"
}

# ---- one image ----------------------------------------------------------------------------------
uv_bin="$(command -v uv 2>/dev/null || echo "$HOME/.local/bin/uv")"
uv_cache="${UV_CACHE_DIR:-$("$uv_bin" cache dir 2>/dev/null || echo "$HOME/.cache/uv")}"
mkdir -p "$uv_cache"
isolation="${BUILDAH_ISOLATION:-}"

# TLS for the RUN steps: the host's CA bundle is mounted over the image's (a machine behind a
# TLS-inspecting proxy trusts that proxy's CA there, e.g. through /usr/local/share/ca-certificates)
# and uv is told to use the system roots (system-certs) instead of its built-in ones. Both are
# mounts, never written into a layer; on a machine with the stock bundle they change nothing.
tls_mounts=()
ca_bundle="${AIRT_IMAGES_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [[ -s "$ca_bundle" ]]; then
  printf '# mounted at /etc/uv/uv.toml into RUN steps by tools/images/build.sh\nsystem-certs = true\n' >"$out/uv.toml"
  tls_mounts=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" -v "$out/uv.toml:/etc/uv/uv.toml:ro")
fi

# The isolation for RUN steps: buildah's default (oci: runc with namespaces) where it works; in
# a container that forbids new namespaces, chroot.
pick_isolation() {
  [[ -n "$isolation" ]] && return 0
  local ctr
  ctr="$("${B[@]}" from --pull=never "$base_ref")"
  if "${B[@]}" run --isolation oci "$ctr" -- true >/dev/null 2>&1; then
    isolation=oci
  else
    isolation=chroot
    log "runc cannot create namespaces here: RUN steps use --isolation chroot"
  fi
  "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true
}

# smoke <ref> <command> <imports> <absent>: the entrypoint and the imports work as UID 65532, the
# image's user, and none of the absent modules (another product, a forbidden dependency) imports.
smoke() {
  local ref="$1" command="$2" imports="$3" absent="$4" ctr module
  ctr="$("${B[@]}" from --pull=never "$ref")"
  local ok=0
  "${B[@]}" run --isolation "$isolation" --user 65532:65532 "$ctr" -- "$command" --help >/dev/null || ok=1
  "${B[@]}" run --isolation "$isolation" --user 65532:65532 "$ctr" -- \
    python -c "import os, ${imports}; assert os.getuid() == 65532" || ok=1
  for module in ${absent//,/ }; do
    if "${B[@]}" run --isolation "$isolation" --user 65532:65532 "$ctr" -- \
      python -c "import ${module}" >/dev/null 2>&1; then
      log "$ref: ${module} imports, but this image must not contain it"
      ok=1
    fi
  done
  "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true
  return "$ok"
}

declare -A result_json=()
order=()
built=0

# build_image <key> <dockerfile> <repository> <command> <imports> <absent> <inputs>
# (imports, absent and inputs comma-separated)
build_image() {
  local key="$1" dockerfile="$2" repo="$3" command="$4" imports="$5" absent="$6"
  local own_inputs
  IFS=, read -r -a own_inputs <<<"$7"
  local inputs=("$dockerfile" "${shared_inputs[@]}" "${own_inputs[@]}")
  local ref="$repo:$version" revision hash
  revision="$(revision_of "${inputs[@]}")"
  hash="$( (hash_files "${inputs[@]}"; printf '%s\n' "$base_ref" "$version" "$revision") | sha256sum | cut -c1-16)"
  local archive="$out/$key-$hash.oci.tar" meta="$out/$key-$hash.json"
  order+=("$key")
  if [[ -s "$archive" && -s "$meta" ]]; then
    log "$key: up to date ($ref, hash $hash), nothing to build"
    result_json[$key]="$(cat "$meta")"
    return 0
  fi
  ensure_base
  pick_isolation
  # buildah's layer cache is what makes a code-only rebuild take seconds, but every dependency
  # change leaves gigabytes of old layers behind: when the disk runs low, drop the dangling ones.
  local free_gb
  free_gb="$(df -Pk "$out" | awk 'NR == 2 {print int($4 / 1048576)}')"
  if ((free_gb < ${AIRT_IMAGES_MIN_FREE_GB:-40})); then
    log "only $free_gb GB free: pruning dangling layers from buildah's storage ..."
    "${B[@]}" rm --all >/dev/null 2>&1 || true
    "${B[@]}" rmi --prune >/dev/null 2>&1 || true
  fi
  local args=()
  if [[ "$key" == worker-cpu ]]; then
    # PyTorch's CPU index is not reachable here: torch from PyPI as uv.lock pins it (the CUDA
    # build, with its nvidia-* wheels), so this image carries the CUDA libraries.
    args+=(--build-arg TORCH_INDEX_URL= --build-arg TORCH_LOCAL_VERSION= --build-arg TORCH_DROP_CUDA_WHEELS=0)
  fi
  log "$key: building $ref from $dockerfile (hash $hash, revision $revision) ..."
  local start=$SECONDS
  local common=(--layers --force-rm --pull=never --network host --isolation "$isolation"
    --format oci -f "$root/$dockerfile"
    --build-arg "PYTHON_IMAGE=$base_ref"
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
    --build-arg UV_NO_CACHE=0 -v "$uv_cache:/root/.cache/uv"
    "${tls_mounts[@]}" "${args[@]}")
  if grep -qiE '^FROM .* AS deps$' "$root/$dockerfile"; then
    # The dependency stage is no parent of the final image, so it would be a dangling image
    # that the pruning above removes, and the next code change would reinstall gigabytes of
    # dependencies. A tag keeps it; the full build below finds its layers in the cache.
    "${B[@]}" build "${common[@]}" --target deps -t "localhost/airt-cache/$key-deps:latest" "$root" >&2
  fi
  # The image this build replaces, and a dependency stage the line above replaced, go now:
  # the disk need not hold two generations of a worker (its venv layer alone is ~6 GB). The
  # archive, not buildah's storage, is what the cache serves, so nothing current is lost.
  "${B[@]}" rmi "$ref" >/dev/null 2>&1 || true
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
  "${B[@]}" build "${common[@]}" -t "$ref" "$root" >&2
  local build_s=$((SECONDS - start))
  smoke "$ref" "$command" "$imports" "$absent" || die "$key: the smoke check failed in $ref"
  # Older archives of this image (another hash) and the image the new one replaced go before
  # the export: the worker's are gigabytes each, and the disk need not hold both.
  find "$out" -maxdepth 1 -name "$key-*" ! -name "$key-$hash.*" -delete
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
  start=$SECONDS
  rm -f "$archive.tmp"
  # skopeo, not `buildah push --disable-compression`: buildah 1.28 gzips layers for oci-archive
  # destinations regardless; skopeo can be told the OCI layout may hold uncompressed layers.
  skopeo copy --quiet --dest-oci-accept-uncompressed-layers \
    "containers-storage:[$driver@$out/storage-$driver+$out/run-$driver]$ref" \
    "oci-archive:$archive.tmp:$ref" >&2
  local digest
  digest="$(tar -xOf "$archive.tmp" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')"
  mv "$archive.tmp" "$archive"
  local bytes
  bytes="$(stat -c %s "$archive")"
  python3 - "$meta.tmp" "$ref" "$archive" "$digest" "$bytes" "$hash" <<'PY'
import json, sys
path, ref, archive, digest, size, key = sys.argv[1:]
with open(path, "w") as f:
    json.dump({"ref": ref, "archive": archive, "digest": digest, "bytes": int(size), "hash": key}, f)
PY
  mv "$meta.tmp" "$meta"
  log "$key: built in $build_s s, exported in $((SECONDS - start)) s: $archive ($((bytes / 1048576)) MiB, $digest)"
  result_json[$key]="$(cat "$meta")"
  built=$((built + 1))
}

# images.txt on fd 3: buildah run and skopeo read stdin.
while read -r -u 3 key dockerfile repo command imports absent inputs when; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  [[ "$when" == cuda && "${IMAGES_CUDA:-0}" != 1 ]] && continue
  if [[ -n "${IMAGES_ONLY:-}" && " $IMAGES_ONLY " != *" $key "* ]]; then continue; fi
  build_image "$key" "$dockerfile" "$repo" "$command" "$imports" "$absent" "$inputs"
done 3<"$here/images.txt"

# ---- images.json: the images of this run ---------------------------------------------------------
{
  printf '{\n'
  for i in "${!order[@]}"; do
    sep=","; ((i == ${#order[@]} - 1)) && sep=""
    printf '  "%s": %s%s\n' "${order[$i]}" "${result_json[${order[$i]}]}" "$sep"
  done
  printf '}\n'
} | python3 -c 'import json,sys; json.dump(json.load(sys.stdin), sys.stdout, indent=2); print()' >"$out/images.json.tmp"
mv "$out/images.json.tmp" "$out/images.json"

if [[ "${IMAGES_PRUNE:-0}" == 1 ]]; then
  log "pruning dangling layers from buildah's storage ..."
  "${B[@]}" rmi --prune >/dev/null || true
fi
if ((built == 0)); then
  log "nothing to build: every image is up to date ($out/images.json)"
else
  log "built $built image(s); $out/images.json"
fi
echo "$out"
