#!/bin/sh
# Build the vmharness self-test guest for one architecture.
#
#   sh build.sh <x86_64|aarch64|riscv64> <outdir>
#
# Writes <outdir>/selftest.elf. Same sources and tools give the same bytes.
# Tools can be overridden with CLANG=... and LD_LLD=...
set -eu

usage() {
	echo "usage: $0 <x86_64|aarch64|riscv64> <outdir>" >&2
	exit 64
}

[ "$#" -eq 2 ] || usage
arch=$1
out=$2
clang=${CLANG:-clang}
lld=${LD_LLD:-ld.lld}

if ! command -v "$clang" >/dev/null 2>&1; then
	echo "build.sh: C compiler '$clang' not found; install clang (Debian: apt-get install clang) or set CLANG" >&2
	exit 127
fi
if ! command -v "$lld" >/dev/null 2>&1; then
	echo "build.sh: linker '$lld' not found; install lld (Debian: apt-get install lld) or set LD_LLD" >&2
	exit 127
fi

case "$arch" in
x86_64)
	# QEMU's multiboot loader takes ELF32 only: 32-bit protected-mode code.
	target=i686-unknown-none-elf
	cflags="-march=i686 -mgeneral-regs-only"
	asflags=""
	;;
aarch64)
	# MMU stays off, so all memory is Device memory: no unaligned accesses.
	target=aarch64-unknown-none-elf
	cflags="-mgeneral-regs-only -mstrict-align"
	asflags=""
	;;
riscv64)
	# ld.lld 14 has no RISC-V relaxation; start.S may use F/D for the probe.
	target=riscv64-unknown-none-elf
	cflags="-march=rv64imac -mabi=lp64 -mcmodel=medany -mno-relax"
	asflags="-march=rv64imafdc -mabi=lp64 -mcmodel=medany -mno-relax"
	;;
*)
	usage
	;;
esac

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Relative source paths keep the host's directory layout out of the ELF.
cd "$here"
# -g: failure reports symbolize addresses to file:line; the prefix map keeps the host's
# checkout path out of the debug info, so every machine builds the same bytes.
common="--target=$target -std=c11 -ffreestanding -fno-builtin -O2 -fno-pic -g \
	-fdebug-prefix-map=$here=. \
	-fno-stack-protector -fno-common -fno-asynchronous-unwind-tables -fno-unwind-tables \
	-Wall -Wextra -Werror -I."

# shellcheck disable=SC2086 # flag lists are meant to split
{
	"$clang" $common $cflags -c selftest.c -o "$tmp/selftest.o"
	"$clang" $common $cflags -c "$arch/platform.c" -o "$tmp/platform.o"
	"$clang" --target="$target" $asflags -c "$arch/start.S" -o "$tmp/start.o"
}
"$lld" -T "$arch/link.ld" --build-id=none -z max-page-size=4096 -static \
	-o "$tmp/selftest.elf" "$tmp/start.o" "$tmp/selftest.o" "$tmp/platform.o"
mv "$tmp/selftest.elf" "$out/selftest.elf"
