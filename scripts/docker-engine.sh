#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (CI and developer boxes without one).
#
# Idempotent: when `docker info` already answers, nothing is done. Otherwise the engine
# (Debian's docker.io) is installed when missing and dockerd is started detached, with no
# bridge, no iptables rules and no masquerading: containers use the host network and all
# test traffic stays on 127.0.0.1. debootstrap is installed too (scripts/offline-python-image.sh
# needs it to build the offline Python base image).
#
# Environment:
#   DOCKERD_LOG            dockerd's log file            (default /var/log/hook-processor-dockerd.log)
#   DOCKER_ENGINE_TIMEOUT  seconds to wait for the engine (default 60)
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/hook-processor-dockerd.log}"
TIMEOUT="${DOCKER_ENGINE_TIMEOUT:-60}"
export DEBIAN_FRONTEND=noninteractive

say() { printf '[docker-engine] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this script as root"
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    # apt_install PACKAGE... : install with apt-get (update once per run)
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

engine_answers() { docker info >/dev/null 2>&1; }

# debootstrap is needed by offline-python-image.sh whether or not the engine already runs.
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    say "debootstrap missing: installing it"
    apt_install debootstrap
else
    say "debootstrap present"
fi

if engine_answers; then
    say "docker engine already answers: nothing to do"
    docker version --format '[docker-engine] server {{.Server.Version}}' >&2 || true
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "dockerd missing: installing docker.io"
    # docker.io brings dockerd, containerd and runc; keep any docker CLI already on PATH.
    apt_install docker.io
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
else
    say "dockerd present: $(command -v dockerd)"
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    say "a dockerd process already runs (pid $(pgrep -x dockerd | tr '\n' ' ')): waiting for it"
else
    if [ -f /var/run/docker.pid ]; then
        say "removing stale /var/run/docker.pid (no dockerd runs)"
        $SUDO rm -f /var/run/docker.pid
    fi
    say "starting dockerd --bridge=none --iptables=false --ip-masq=false (log: $LOG)"
    $SUDO mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: detached from this shell and its process group, survives the script.
    $SUDO setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
        >>"$LOG" 2>&1 </dev/null &
    disown || true
fi

say "waiting up to ${TIMEOUT}s for the engine"
start=$(date +%s)
until engine_answers; do
    if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
        say "last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        die "docker engine did not answer within ${TIMEOUT}s (see $LOG)"
    fi
    sleep 1
done
say "docker engine answers after $(( $(date +%s) - start ))s:" \
    "$(docker version --format 'server {{.Server.Version}}' 2>/dev/null || echo '?')"
