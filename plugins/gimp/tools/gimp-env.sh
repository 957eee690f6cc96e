#!/usr/bin/env bash
# gimp-env.sh: a cached Debian trixie chroot with GIMP 3.0 (Python plug-ins), for testing the
# nst-core GIMP plug-in headless on a Debian bookworm host (whose GIMP is 2.10 without Python).
#
# Usage:
#   gimp-env.sh ensure        build the chroot once (idempotent; rebuilt when incomplete)
#   gimp-env.sh run CMD...    run CMD inside the chroot, in a private mount namespace that holds
#                             proc, /dev, /tmp and the bind mounts below (gone when CMD ends)
#   gimp-env.sh mount         mount the same things persistently (for interactive work)
#   gimp-env.sh umount        undo `mount`
#   gimp-env.sh path          print the chroot's path
#   gimp-env.sh status        say whether the chroot is complete
#
# Bind-mounted at the same absolute paths: the repository, the project's virtual environment
# ($NST_GIMP_VENV, else $VIRTUAL_ENV, else REPO/.venv), the Python installation it was made
# from (pyvenv.cfg's `home`), REPO/../shared when present, the host's /tmp and each path in
# $NST_GIMP_BINDS (colon-separated). So a file path means the same thing inside and outside.
#
# Environment: NST_GIMP_CHROOT (default /var/cache/nst-core/gimp-chroot), NST_GIMP_SUITE
# (default trixie), NST_GIMP_MIRROR (default: the host's own Debian mirror).
# Needs root and the Debian package registry; fails loudly (exit 1, a message on stderr) when
# either is missing. Building takes 1-3 minutes and ~930 MB; afterwards `ensure` is instant.
set -euo pipefail

ROOT=${NST_GIMP_CHROOT:-/var/cache/nst-core/gimp-chroot}
ROOT=${ROOT%/}
case "$ROOT" in
    /*/*) ;;
    *) echo "gimp-env.sh: error: NST_GIMP_CHROOT must be an absolute path at least two levels deep, not '$ROOT'" >&2
       exit 1 ;;
esac
SUITE=${NST_GIMP_SUITE:-trixie}
MARKER="$ROOT/.nst-gimp-env-complete"
BUILDING="$ROOT/.nst-gimp-env-building"  # present from the start of a build: safe to delete
LOCK="$ROOT.lock"
# GIMP 3 with Python plug-ins; a virtual display and xdotool for the dialog test and picture
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 xvfb xdotool"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)

die() { echo "gimp-env.sh: error: $*" >&2; exit 1; }
say() { echo "gimp-env.sh: $*" >&2; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
}

host_mirror() {
    if [ -n "${NST_GIMP_MIRROR:-}" ]; then echo "$NST_GIMP_MIRROR"; return; fi
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit} $1 == "deb" {print $3; exit}' /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# Mount points below $ROOT (deepest first), from this mount namespace's table.
mounts_below() {
    awk -v r="$ROOT/" '{ gsub(/\\040/, " ", $2); if (index($2, r) == 1) print $2 }' /proc/self/mounts | sort -r
}

umount_all() {
    local m
    for m in $(mounts_below); do umount -l "$m" 2>/dev/null || true; done
    [ -z "$(mounts_below)" ] || die "could not unmount everything below $ROOT: $(mounts_below | tr '\n' ' ')"
}

# apt-get install $PACKAGES in the chroot (what is there already stays), logging to $1.
install_packages() {
    if ! unshare --mount --propagation private /bin/sh -ec '
            mount -t proc proc "$1/proc"; mount --bind /dev "$1/dev"
            chroot "$1" apt-get update
            chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $2
            chroot "$1" apt-get clean' sh "$ROOT" "$PACKAGES" >>"$1" 2>&1; then
        die "installing $PACKAGES in the chroot failed: is the Debian registry reachable? (see $1)"
    fi
}

build() {
    need_root
    local mirror log
    mirror=$(host_mirror)
    log="$ROOT.build.log"
    say "building a Debian $SUITE chroot with GIMP 3 at $ROOT (1-3 minutes; log: $log)"
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap on the host"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap; } >"$log" 2>&1 \
            || die "cannot install debootstrap from the Debian registry (see $log)"
    fi
    # Never delete through a live bind mount (it would delete the repository or the venv), and
    # never delete a folder this script did not make.
    umount_all
    if [ -e "$ROOT" ]; then
        if [ -f "$BUILDING" ] || [ -f "$MARKER" ] || [ -z "$(ls -A "$ROOT")" ]; then
            rm -rf --one-file-system "$ROOT"
        else
            die "$ROOT exists and was not made by gimp-env.sh; remove it or set NST_GIMP_CHROOT"
        fi
    fi
    mkdir -p "$ROOT"
    touch "$BUILDING"
    local started=$SECONDS
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >>"$log" 2>&1 \
        || die "debootstrap $SUITE from $mirror failed: is the Debian registry reachable? (see $log)"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
    install_packages "$log"
    [ -x "$ROOT/usr/bin/gimp-console-3.0" ] || die "gimp-console-3.0 missing after the install (see $log)"
    write_marker
    rm -f "$BUILDING"
    say "built in $((SECONDS - started)) s: GIMP $(chroot "$ROOT" dpkg-query -W -f '${Version}' gimp)"
}

write_marker() {
    local version
    version=$(chroot "$ROOT" dpkg-query -W -f '${Version}' gimp)
    echo "suite=$SUITE gimp=$version built=$(date -u +%FT%TZ) packages=${PACKAGES// /,}" >"$MARKER"
}

# A chroot built with an older package list gets the missing packages (no rebuild).
add_packages() {
    local log="$ROOT.build.log"
    say "adding packages to the chroot: $PACKAGES (log: $log)"
    umount_all
    install_packages "$log"
    write_marker
}

up_to_date() {
    [ -f "$MARKER" ] && grep -q " packages=${PACKAGES// /,}\$" "$MARKER"
}

ensure() {
    need_root
    up_to_date && return 0
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$LOCK"
    flock 9  # one build at a time; a second caller waits and then finds it done
    if [ ! -f "$MARKER" ]; then build; elif ! up_to_date; then add_packages; fi
    exec 9>&-
}

venv_dir() {
    if [ -n "${NST_GIMP_VENV:-}" ]; then echo "$NST_GIMP_VENV";
    elif [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV";
    elif [ -d "$REPO/.venv" ]; then echo "$REPO/.venv"; fi
}

# The host paths to bind at the same place inside the chroot (parents before children).
bind_paths() {
    local venv home p
    {
        echo "$REPO"
        [ -d "$REPO/../shared" ] && (cd "$REPO/../shared" && pwd -P)
        venv=$(venv_dir)
        if [ -n "$venv" ] && [ -d "$venv" ]; then
            venv=$(cd "$venv" && pwd -P)
            echo "$venv"
            if [ -f "$venv/pyvenv.cfg" ]; then
                home=$(awk -F' *= *' '$1 == "home" {print $2; exit}' "$venv/pyvenv.cfg")
                # home is .../bin: bind the installation it belongs to
                [ -n "$home" ] && [ -d "$home" ] && (cd "$home/.." && pwd -P)
            fi
        fi
        if [ -n "${NST_GIMP_BINDS:-}" ]; then
            tr ':' '\n' <<<"$NST_GIMP_BINDS"
        fi
    } | awk 'NF' | sort -u | awk '
        { for (i = 1; i <= n; i++) if (index($0 "/", kept[i] "/") == 1) next; kept[++n] = $0; print }'
}

mount_all() {
    local p
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
    mountpoint -q "$ROOT/tmp" || mount --bind /tmp "$ROOT/tmp"
    while IFS= read -r p; do
        [ -e "$p" ] || die "cannot bind $p into the chroot: it does not exist"
        [ "$p" = / ] && die "refusing to bind / into the chroot"
        mkdir -p "$ROOT$p"
        mountpoint -q "$ROOT$p" || mount --bind "$p" "$ROOT$p"
    done < <(bind_paths)
}

run_inside() {
    [ $# -gt 0 ] || die "usage: gimp-env.sh run CMD [ARG...]"
    ensure
    # A private mount namespace: the mounts vanish with the command, and concurrent runs
    # never unmount each other's paths.
    exec unshare --mount --propagation private bash "$HERE/gimp-env.sh" __run_ns "$@"
}

run_ns() {
    mount_all
    exec chroot "$ROOT" /usr/bin/env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u LD_LIBRARY_PATH \
        -u LD_PRELOAD PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    ensure|build-once) ensure ;;
    rebuild) need_root; [ -f "$MARKER" ] && touch "$BUILDING"; rm -f "$MARKER"; ensure ;;
    run) run_inside "$@" ;;
    __run_ns) run_ns "$@" ;;
    mount) ensure; mount_all; say "mounted; undo with: $0 umount" ;;
    umount|unmount) need_root; umount_all ;;
    path) echo "$ROOT" ;;
    status) if [ -f "$MARKER" ]; then cat "$MARKER"; else echo "not built: $ROOT" >&2; exit 1; fi ;;
    binds) bind_paths ;;
    *) die "usage: gimp-env.sh ensure|run CMD...|mount|umount|path|status|rebuild" ;;
esac
