#!/bin/sh
# Prepare this Debian 12 (bookworm) host so guests/linux/build.sh can fetch
# guest kernels and busybox for amd64, arm64 and riscv64 with `apt-get download`.
#
#   * dpkg foreign architectures arm64 and riscv64
#   * a trixie source restricted to riscv64 (bookworm has no riscv64 port)
#   * an apt preferences file that keeps trixie below the installed versions
#     (priority < 100), so trixie is used only where bookworm has nothing:
#     no host package is ever upgraded from trixie
#   * apt-get update
#
# Idempotent; needs root. Prints every change it makes.
set -eu

SOURCES=/etc/apt/sources.list.d/vmharness-trixie-riscv64.sources
PREFS=/etc/apt/preferences.d/vmharness-trixie-riscv64

say() { printf 'setup-apt: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "setup-apt: must run as root (it edits /etc/apt and dpkg's architecture list)" >&2
    exit 1
fi

for arch in arm64 riscv64; do
    if dpkg --print-foreign-architectures | grep -qx "$arch"; then
        say "dpkg architecture $arch already present"
    else
        say "dpkg --add-architecture $arch"
        dpkg --add-architecture "$arch"
    fi
done

# write_if_changed <path> : replace <path> with stdin only when the content differs.
write_if_changed() {
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        say "$1 up to date"
        rm -f "$tmp"
    else
        say "writing $1"
        chmod 0644 "$tmp"
        mv "$tmp" "$1"
    fi
}

write_if_changed "$SOURCES" <<'SRC'
# Added by vmharness guests/setup-apt.sh: riscv64 guest kernels and busybox.
# Bookworm has no riscv64 port; trixie does. Restricted to riscv64 so that it
# adds no amd64/arm64 binary packages; see the matching preferences file.
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Architectures: riscv64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

write_if_changed "$PREFS" <<'PREF'
# Added by vmharness guests/setup-apt.sh.
# Trixie also offers its Architecture: all packages (e.g. ovmf). A priority
# below 100 means a trixie version is never chosen for a package that is
# installed, so `apt-get upgrade` cannot pull host packages from trixie; it is
# only a candidate where nothing else provides the package (riscv64).
Package: *
Pin: release n=trixie
Pin-Priority: 50
PREF

say "apt-get update"
apt-get update -q

if apt-get -s upgrade | grep -i trixie; then
    echo "setup-apt: FAILED: apt-get -s upgrade would take the packages above from trixie" >&2
    exit 1
fi
say "ok: apt-get -s upgrade takes nothing from trixie"
