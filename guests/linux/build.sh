#!/bin/sh
# Build a Linux guest for vmharness from Debian packages, without installing them.
#
#   sh guests/linux/build.sh <x86_64|aarch64|riscv64> <outdir> <kernel.deb> <busybox-static.deb>
#
# Produces <outdir>/vmlinuz (what QEMU's -kernel takes) and <outdir>/initrd.img
# (a gzip'd newc cpio with static busybox, the kernel modules needed to mount a
# FAT32 virtio disk, and guests/linux/init as /init).
#
# The .deb files are resolved, downloaded and verified by vmharness (guests/linux.toml,
# `packages`): this script needs neither the network nor apt nor root. Same packages +
# same scripts give the same output bytes.
set -eu
export LC_ALL=C
umask 022

die() { printf 'linux/build.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'linux/build.sh: %s\n' "$*" >&2; }

[ $# -eq 4 ] || die "usage: build.sh <x86_64|aarch64|riscv64> <outdir> <kernel.deb> <busybox-static.deb>"
arch=$1
out=$2
kernel_deb=$3
busybox_deb=$4
here=$(cd "$(dirname "$0")" && pwd)

case $arch in
x86_64 | aarch64 | riscv64) ;;
*) die "unknown arch '$arch' (expected x86_64, aarch64 or riscv64)" ;;
esac

# Modules the guest needs, by module name; their dependencies are added below.
# Whatever the kernel has built in (modules.builtin) is skipped.
wanted_modules="virtio_pci virtio_mmio virtio_blk vfat nls_cp437 nls_ascii nls_iso8859_1 nls_utf8"

# Fixed timestamp for every file in the initrd, so the cpio is reproducible.
epoch=${SOURCE_DATE_EPOCH:-0}

for tool in dpkg-deb cpio gzip xz find sort; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found in PATH"
done
cpio --help 2>/dev/null | grep -q -- --reproducible ||
    die "this cpio has no --reproducible option (GNU cpio >= 2.12 needed)"

[ -d "$out" ] || die "output directory '$out' does not exist"
out=$(cd "$out" && pwd)
[ -f "$kernel_deb" ] || die "kernel package '$kernel_deb' does not exist"
[ -f "$busybox_deb" ] || die "busybox package '$busybox_deb' does not exist"
kernel_pkg=$(dpkg-deb -f "$kernel_deb" Package) || die "'$kernel_deb' is not a .deb"
say "arch $arch: $kernel_pkg $(dpkg-deb -f "$kernel_deb" Version), busybox-static $(dpkg-deb -f "$busybox_deb" Version)"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmharness-linux-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

mkdir "$work/kernel" "$work/busybox"
dpkg-deb -x "$kernel_deb" "$work/kernel" || die "cannot unpack the $kernel_pkg package"
dpkg-deb -x "$busybox_deb" "$work/busybox" || die "cannot unpack the busybox-static package"

# --- kernel image -----------------------------------------------------------
# amd64: bzImage; arm64: vmlinuz-* is a plain arm64 Image; riscv64 (trixie):
# vmlinux-* is an EFI-stub Image. QEMU's -kernel takes all three as they are;
# should a gzip'd image appear, unpack it, since QEMU 7.2 boots only raw riscv Images.
kimg=$(find "$work/kernel/boot" -maxdepth 1 -type f \( -name 'vmlinuz-*' -o -name 'vmlinux-*' \) | sort | head -n 1)
[ -n "$kimg" ] || die "no /boot/vmlinuz-* or /boot/vmlinux-* in $kernel_pkg"
if gzip -t "$kimg" 2>/dev/null; then
    gzip -dc "$kimg" >"$work/vmlinuz"
else
    cp "$kimg" "$work/vmlinuz"
fi

moddir=$(find "$work/kernel/lib/modules" "$work/kernel/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | head -n 1)
[ -n "$moddir" ] || die "no lib/modules/<version> directory in $kernel_pkg"

# --- modules, dependencies first --------------------------------------------
root="$work/root"
mkdir -p "$root/bin" "$root/sbin" "$root/dev" "$root/proc" "$root/sys" "$root/mnt" \
    "$root/tmp" "$root/lib/modules" "$root/etc/vmharness"
: >"$root/etc/vmharness/modules"

# modfile <name>: path of the module file (module names treat - and _ alike).
modfile() {
    pat=$(printf '%s' "$1" | sed 's/[-_]/[-_]/g')
    find "$moddir/kernel" -type f \( -name "$pat.ko" -o -name "$pat.ko.xz" -o -name "$pat.ko.zst" -o -name "$pat.ko.gz" \) | head -n 1
}

# is_builtin <name>
is_builtin() {
    pat=$(printf '%s' "$1" | sed 's/[-_]/[-_]/g')
    grep -q "/$pat\.ko\$" "$moddir/modules.builtin" 2>/dev/null
}

# add_module <name>: copy it (decompressed) after its dependencies, once.
# (`local` is not POSIX but dash, bash and busybox ash all have it; the
# recursion needs it.)
add_module() {
    # shellcheck disable=SC3043 # see above
    local name src dst deps dep
    name=$(printf '%s' "$1" | tr - _)
    grep -qx "$name" "$root/etc/vmharness/modules" && return 0
    if is_builtin "$name"; then
        return 0
    fi
    src=$(modfile "$name")
    [ -n "$src" ] || die "module '$name' is neither built into $kernel_pkg nor shipped as a .ko"
    dst="$root/lib/modules/$name.ko"
    case $src in
    *.xz) xz -dc "$src" >"$dst" ;;
    *.zst) command -v zstd >/dev/null || die "module $src is zstd-compressed and zstd is not installed"
        zstd -qdc "$src" >"$dst" ;;
    *.gz) gzip -dc "$src" >"$dst" ;;
    *) cp "$src" "$dst" ;;
    esac
    # The .modinfo section holds NUL-separated key=value strings, "depends=" among them.
    deps=$(tr '\0' '\n' <"$dst" | sed -n 's/^depends=//p' | head -n 1 | tr , ' ')
    for dep in $deps; do
        add_module "$dep"
    done
    printf '%s\n' "$name" >>"$root/etc/vmharness/modules"
}

for m in $wanted_modules; do
    add_module "$m"
done
say "modules (load order): $(tr '\n' ' ' <"$root/etc/vmharness/modules")"

# --- busybox and /init -------------------------------------------------------
bb=$(find "$work/busybox/bin" "$work/busybox/usr/bin" -maxdepth 1 -type f -name busybox 2>/dev/null | head -n 1)
[ -n "$bb" ] || die "no busybox binary in $busybox_deb"
cp "$bb" "$root/bin/busybox"
# Symlinks for the applets /init uses; everything else via `busybox <applet>`.
# The shell mode's cases use a few more.
for applet in sh mount umount insmod sleep cat echo poweroff sync test ls mkdir \
    rm cksum wc md5sum head grep date uname dd; do
    ln -s busybox "$root/bin/$applet"
done
cp "$here/init" "$root/init"

find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/init" "$root/bin/busybox"
chmod 1777 "$root/tmp"
find "$root" -exec touch -h -d "@$epoch" {} +

# --- initrd -----------------------------------------------------------------
# newc_node <path> <mode-hex> <major> <minor>: one cpio newc header for a device
# node. The kernel opens /dev/console before running /init, and creating the
# node with mknod would need root, so it is written here as its own small
# archive; the kernel unpacks concatenated archives in order.
newc_node() {
    namesize=$((${#1} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        0 "$2" 0 0 1 "$epoch" 0 0 0 "$3" "$4" "$namesize" 0 "$1"
    # header (110 bytes) + name padded to a multiple of 4
    pad=$(((4 - (110 + namesize) % 4) % 4))
    [ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}
newc_trailer() {
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        0 0 0 0 1 0 0 0 0 0 0 11 0 "TRAILER!!!"
    head -c 3 /dev/zero # 110-byte header + 11-byte name, padded to 124
}

{
    (cd "$root" && find . -mindepth 1 | sed 's|^\./||' | sort |
        cpio --quiet -o -H newc --reproducible -R 0:0)
    newc_node dev/console $((0020600)) 5 1
    newc_trailer
} | gzip -n -9 >"$work/initrd.img"

cp "$work/vmlinuz" "$out/vmlinuz"
cp "$work/initrd.img" "$out/initrd.img"
say "wrote $out/vmlinuz ($(wc -c <"$out/vmlinuz") bytes), $out/initrd.img ($(wc -c <"$out/initrd.img") bytes)"
