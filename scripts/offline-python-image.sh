#!/usr/bin/env bash
# Build a Python base image without any container registry:
#
#     scripts/offline-python-image.sh [TAG]      (default TAG: hook-processor/python-offline:bookworm)
#
# The image is a Debian minbase root filesystem (debootstrap, from this machine's own apt
# mirror) with python3, python3-venv and ca-certificates, imported with `docker import`.
# It stands in for python:3.11-slim where no registry is reachable (CI, sandboxes):
#
#     docker build --build-arg PYTHON_IMAGE=hook-processor/python-offline:bookworm ...
#
# Fast paths: when TAG already exists nothing is done; otherwise a root filesystem tarball
# cached under $HOOK_IMAGE_CACHE (keyed by suite, architecture and package list) is imported
# directly, and downloaded .debs are kept there so a rebuild does not fetch them again.
# The tag is printed on the last line of stdout; everything else goes to stderr.
#
# Environment:
#   HOOK_IMAGE_CACHE     cache folder              (default /var/cache/hook-processor)
#   HOOK_DEBIAN_MIRROR   mirror URL override       (default: first main-archive URI of apt sources)
#   HOOK_DEBIAN_SUITE    suite override            (default: VERSION_CODENAME of /etc/os-release)
#   HOOK_APT_DIR         where the apt sources are  (default /etc/apt)
#   HOOK_REBUILD=1       ignore the existing image and the cached tarball
set -euo pipefail

TAG="${1:-hook-processor/python-offline:bookworm}"
CACHE="${HOOK_IMAGE_CACHE:-/var/cache/hook-processor}"
INCLUDE="python3,python3-venv,ca-certificates"
APT_DIR="${HOOK_APT_DIR:-/etc/apt}"
IMAGE_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

say() { printf '[offline-python-image] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now() { date +%s; }

command -v docker >/dev/null 2>&1 || die "docker CLI missing: run scripts/docker-engine.sh"
docker info >/dev/null 2>&1 || die "no docker engine answers: run scripts/docker-engine.sh"

if [ "${HOOK_REBUILD:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    say "image $TAG exists: nothing to do"
    echo "$TAG"
    exit 0
fi

# --- suite and mirror, from this machine's own configuration -------------------------------
suite="${HOOK_DEBIAN_SUITE:-}"
if [ -z "$suite" ]; then
    # shellcheck disable=SC1091
    suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
fi
[ -n "$suite" ] || die "cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release); set HOOK_DEBIAN_SUITE"

# Print "URI SUITE" for every deb source, deb822 (*.sources) and one-line (*.list) formats.
apt_sources() {
    local f
    for f in "$APT_DIR"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled !~ /^[Nn][Oo]/)
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                types = ""; enabled = ""; nu = 0; ns = 0
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                if (key == "types")   { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
                if (key == "enabled") { enabled = $2 }
                if (key == "uris")    for (k = 2; k <= NF; k++) u[++nu] = $k
                if (key == "suites")  for (k = 2; k <= NF; k++) s[++ns] = $k
            }
            END { flush() }
        ' "$f"
    done
    for f in "$APT_DIR"/sources.list "$APT_DIR"/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI suite components...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
}

mirror="${HOOK_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # The main archive: an http(s) URI that serves the release itself (not -security);
    # failing that, any http(s) URI that is not a security archive.
    mirror="$(apt_sources | awk -v s="$suite" '$1 ~ /^https?:\/\// && $2 == s { print $1; exit }')"
    if [ -z "$mirror" ]; then
        mirror="$(apt_sources | awk '$1 ~ /^https?:\/\// && $1 !~ /security/ && $2 !~ /security/ { print $1; exit }')"
    fi
fi
[ -n "$mirror" ] || die "no http(s) Debian mirror in /etc/apt/sources.list{,.d/*}; set HOOK_DEBIAN_MIRROR"

arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
key="$(printf '%s' "$INCLUDE" | md5sum | cut -c1-8)"
tarball="$CACHE/rootfs-$suite-$arch-minbase-$key.tar"
debs="$CACHE/debs-$suite-$arch"
say "tag $TAG, suite $suite, architecture $arch, cache $CACHE"

mkdir -p "$CACHE" "$debs"
# One builder at a time per cache (parallel CI jobs on one machine).
exec 9>"$CACHE/.lock"
flock 9

# --- root filesystem tarball (cached) -------------------------------------------------------
if [ "${HOOK_REBUILD:-0}" = 1 ] || [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        die "debootstrap missing: run scripts/docker-engine.sh (it installs it) or apt-get install debootstrap"
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/hook-rootfs.XXXXXX")"
    trap 'say "cleaning up $rootfs"; rm -rf --one-file-system "$rootfs"; rm -f "$tarball.part"' EXIT
    say "debootstrap --variant=minbase --include=$INCLUDE $suite (mirror from apt sources)"
    t0=$(now)
    debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$debs" \
        "$suite" "$rootfs" "$mirror" >&2 \
        || die "debootstrap failed (log: $rootfs/debootstrap/debootstrap.log)"
    say "debootstrap took $(( $(now) - t0 ))s"

    # Slim it: package caches and index files are not needed at run time.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
           "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/tmp/* \
           "$rootfs"/root/.cache
    mkdir -p "$rootfs"/var/lib/apt/lists/partial

    t0=$(now)
    # The engine provides /dev, /proc and /sys; keep the mount points, not their contents.
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$tarball.part" .
    mv -f "$tarball.part" "$tarball"
    say "cached $tarball ($(du -h "$tarball" | cut -f1)) in $(( $(now) - t0 ))s"
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
else
    say "reusing cached root filesystem $tarball"
fi

# --- import ------------------------------------------------------------------------------
t0=$(now)
docker import \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "hook-processor offline Python base ($suite minbase + $INCLUDE)" \
    "$tarball" "$TAG" >&2
say "docker import took $(( $(now) - t0 ))s"

# --- check: python3 and venv work -----------------------------------------------------------
say "checking python3 -m venv in $TAG"
if ! docker run --rm --network host "$TAG" sh -c 'python3 --version && python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version && echo ok' >&2; then
    docker image rm "$TAG" >/dev/null 2>&1 || true
    die "python3 -m venv does not work in $TAG (image removed; HOOK_REBUILD=1 rebuilds the cached rootfs)"
fi
echo "$TAG"
