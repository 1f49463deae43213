#!/bin/sh
# Builds hello.elf into $1 from the repository's kernel/ (runs in guests/; same sources and
# tools give the same bytes).
set -eu
clang --target=aarch64-none-elf -nostdlib -fuse-ld=lld -Wl,-Ttext=0x40080000 -Wl,--build-id=none \
	-o "$1/hello.elf" ../kernel/hello.S
