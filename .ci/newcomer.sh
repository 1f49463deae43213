#!/usr/bin/env bash
# A newcomer run: the README's two commands, in order, in a fresh Debian 12 root that has what a
# new machine of ours has (a base system, a C linker for cargo, CA certificates) and the Rust
# toolchain bind-mounted from this host, and none of vmharness's packages. Every host package,
# every guest artifact and every crate is fetched by the commands themselves.
#
#   sudo bash .ci/newcomer.sh [WORKDIR]      # slow (~15 min on 2 cores); not part of .ci/run
#
# Needs root (debootstrap, chroot, bind mounts).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/vmharness-newcomer.XXXXXX)}
mkdir -p "$work"
root="$work/root"
say() { printf 'newcomer: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "newcomer: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
rustc_bin=$(dirname "$(rustup which rustc)")
nextest=$(command -v cargo-nextest || true)

if [ ! -x "$root/bin/sh" ]; then
    say "debootstrap bookworm into $root"
    debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev,git \
        bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log"
fi
# apt as this workplace's machines have it (sources and apt.conf.d), nothing else of the host.
cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
cp /etc/apt/apt.conf.d/* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
rm -rf "$root/src/vmharness"
git clone -q "$repo" "$root/src/vmharness"
mkdir -p "$root/opt/rust" "$root/dev" "$root/proc" "$root/sys"

cleanup() {
    for m in opt/rust dev/pts dev sys proc; do umount -l "$root/$m" 2>/dev/null || true; done
    umount -l "$root" 2>/dev/null || true
}
trap cleanup EXIT
# The root is a mount point of its own, as on a real machine (unshare --propagation needs it).
mount --bind "$root" "$root"
mount --bind "$(dirname "$rustc_bin")" "$root/opt/rust"
mount -o remount,bind,ro "$root/opt/rust"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$root/etc/hosts" 2>/dev/null || true
# The CA bundle every machine here is handed (registries are reached through this workplace's
# TLS proxy); part of the machine, not of vmharness.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -n "$nextest" ] && cp "$nextest" "$root/usr/local/bin/"

run() {
    chroot "$root" /usr/bin/env -i HOME=/root PATH="/opt/rust/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
        CARGO_HOME=/root/.cargo TERM=dumb "$@"
}
say "in the fresh root: cargo xtask qemu aarch64 --check"
start=$(date +%s)
run sh -c 'cd /src/vmharness && cargo xtask qemu aarch64 --check'
first=$(($(date +%s) - start))
say "cargo xtask qemu aarch64 --check: passed in ${first}s"
start=$(date +%s)
run sh -c 'cd /src/vmharness && CI=true cargo xtask test'
second=$(($(date +%s) - start))
say "cargo xtask test: passed in ${second}s"
echo "newcomer: 1 passed, 0 failed (xtask qemu ${first}s, xtask test ${second}s)"
