#!/bin/sh
# Build the riscv64 jump stub for standalone NimbOS: sh build.sh <outdir> -> <outdir>/stub.elf
set -eu
[ "$#" -eq 1 ] || { echo "usage: $0 <outdir>" >&2; exit 64; }
clang=${CLANG:-clang}
lld=${LD_LLD:-ld.lld}
dir=$(dirname "$0")
"$clang" --target=riscv64-unknown-none-elf -march=rv64gc -mabi=lp64d -c "$dir/stub.S" -o "$1/stub.o"
"$lld" -T "$dir/link.ld" --build-id=none -o "$1/stub.elf" "$1/stub.o"
rm -f "$1/stub.o"
