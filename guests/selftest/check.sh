#!/bin/sh
# Build the self-test guest for every arch and boot the banner scenario,
# checking the QEMU exit status and the output. For hand use; the harness
# test-suite drives the guests for real.
#
#   sh check.sh [outdir]      (default: a temporary directory)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ "$#" -ge 1 ]; then
	out=$1
else
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT INT TERM
fi
failed=0

# check <arch> <expected status> <qemu argv...>
check() {
	arch=$1
	want=$2
	shift 2
	sh "$here/build.sh" "$arch" "$out/$arch"
	log="$out/$arch.log"
	set +e
	timeout 30 "$@" -kernel "$out/$arch/selftest.elf" </dev/null >"$log" 2>&1
	got=$?
	set -e
	if [ "$got" -eq "$want" ] &&
		grep -q "^vmharness selftest $arch" "$log" &&
		grep -q "^selftest: ok" "$log"; then
		echo "ok   $arch (status $got)"
	else
		echo "FAIL $arch: status $got, want $want; output in $log:" >&2
		tail -n 5 "$log" >&2
		failed=1
	fi
}

scenario=name=opt/vmharness/scenario,string=banner
check x86_64 1 qemu-system-x86_64 -M q35 -accel tcg -display none -serial stdio -no-reboot \
	-nic none -device isa-debug-exit,iobase=0xf4,iosize=0x04 -fw_cfg "$scenario"
check aarch64 0 qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg -display none \
	-serial stdio -no-reboot -semihosting -fw_cfg "$scenario"
check riscv64 0 qemu-system-riscv64 -M virt -accel tcg -display none -serial stdio -no-reboot \
	-append banner

if [ "$failed" -ne 0 ]; then
	[ "$#" -ge 1 ] || trap - EXIT
	exit 1
fi
