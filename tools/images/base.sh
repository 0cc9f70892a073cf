#!/usr/bin/env bash
# The recipe of the local Python base image: a Debian bookworm root file system made with
# mmdebstrap from deb.debian.org (the mirror /etc/apt/sources.list.d/debian.sources names),
# shaped like python:3.11-slim-bookworm so that the runtime-images Dockerfiles build on it
# unchanged: `python` and `python3`, `python -m pip`, `python -m venv`, CA certificates,
# LANG=C.UTF-8; no documentation, man pages or locales.
#
# Called by tools/images/build.sh (`make images`) as `base.sh <output.tar>`, only when no base
# with this recipe's hash exists yet; the hash of this file names the image
# (localhost/airt-base-python:3.11-<hash>), so any change here builds a new base and, through
# it, new images. Base images cannot be pulled on our machines (no registry is reachable), and
# Debian's Python 3.11 matches the cp311 wheels uv.lock pins.
set -euo pipefail

# merged-/usr through mmdebstrap's hook (symlinks, as debootstrap makes them) rather than the
# usrmerge package, which would pull in perl (~55 MB).

out="$1"

# pip refuses to install into Debian's interpreter without this (PEP 668); the Dockerfiles'
# build stage runs `python -m pip install uv`, as on the python image.
customize='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
# python:3.11-slim has no apt lists or caches either; mmdebstrap already drops the lists.
customize+='; rm -rf "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old'

mmdebstrap \
  --variant=apt \
  --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  --customize-hook="$customize" \
  bookworm "$out" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
