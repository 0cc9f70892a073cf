#!/usr/bin/env bash
# Install Debian's Prometheus (prometheus + promtool) for the metrics tests, unless both are on PATH.
#
# Called by `make system-deps` (and so by `make test`) on a fresh machine; safe to run again.
# tests/worker/test_metrics_prometheus.py starts its own Prometheus from /usr/bin/prometheus with a
# generated config, and the chart's alert rules are checked with promtool. The package's systemd
# unit is never used: where the install starts the service (a machine with systemd), it is stopped
# so that it does not hold port 9090.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "installing Prometheus (Debian package) for the metrics tests"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null && command -v promtool >/dev/null
