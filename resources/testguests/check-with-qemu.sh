#!/bin/bash
# Checks the tiny test guests without vmctl: boots each one QEMU can boot (PVH ELFs and the bzImage;
# QEMU cannot boot the plain 64-bit ELF `hello`) under QEMU -M microvm and checks its output and exit
# status. QEMU's isa-debug-exit turns the guest's status S into (S << 1) | 1; a triple fault or a
# reset with -no-reboot ends QEMU with 0 (vmctl, unlike QEMU, reports a triple fault as a crash).
# Usage: resources/testguests/check-with-qemu.sh GUESTDIR [tcg|kvm]   (default: kvm when usable)
set -euo pipefail
die() { echo "check-with-qemu: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 GUESTDIR [tcg|kvm]"
dir=$1
accel=${2:-}
if [ -z "$accel" ]; then
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
cpu=()
[ "$accel" = tcg ] && cpu=(-cpu max)  # with XSAVE, for emulation-failure
pvm=no
[ -d /sys/module/kvm_pvm ] && [ "$accel" = kvm ] && pvm=yes
failed=0
out=

# run NAME EXPECTED_RC EXPECTED_OUTPUT_REGEX [QEMU ARGS...]
run() {
  local name=$1 want_rc=$2 want_out=$3 rc=0
  shift 3
  out=$(timeout 30 qemu-system-x86_64 -M microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on \
    -accel "$accel" -nodefaults -no-user-config -display none -no-reboot -m 128 -serial stdio \
    -device isa-debug-exit,iobase=0x501,iosize=1 "${cpu[@]}" -kernel "$dir/$name" "$@" 2>&1) || rc=$?
  if [ "$rc" = "$want_rc" ] && grep -Eq "$want_out" <<<"$out"; then
    echo "ok   $name $* (rc $rc)"
  else
    echo "FAIL $name $*: rc $rc (want $want_rc), output:"; sed 's/^/     /' <<<"$out"
    failed=$((failed + 1))
  fi
}

run exit 1 'exit: status 0'
run exit 7 'exit: status 3' -append 'foo status=3 bar'
run exit 255 'exit: status 255' -append 'status=255'  # (255 << 1) | 1, cut to 8 bits
run marker 1 'marker: done'
run bzimage 1 'bzimage: cmdline: hello bzimage 42' -append 'hello bzimage 42'
run triple-fault 0 'triple-fault: empty IDT'
run reset 0 'reset: writing 0xfe' -device i8042
for n in 1 2 4; do
  run smp $(((n << 1) | 1)) "smp: $n cpus up" -smp "$n"
  for ((i = 0; i < n; i++)); do
    [ "$(grep -c "^cpu $i up" <<<"$out")" = 1 ] || { echo "FAIL smp -smp $n: no single 'cpu $i up'"; failed=$((failed + 1)); }
  done
done
if [ "$pvm" = yes ]; then
  # kvm-pvm cannot emulate xrstor: QEMU reports the internal error and stops the guest (timeout: 124)
  out=$(timeout 10 qemu-system-x86_64 -M microvm,x-option-roms=off -accel kvm -nodefaults -display none \
    -no-reboot -m 128 -serial stdio -kernel "$dir/emulation-failure" 2>&1 || true)
  if grep -q 'KVM internal error. Suberror: 1' <<<"$out"; then echo "ok   emulation-failure (KVM internal error)"
  else echo "FAIL emulation-failure:"; sed 's/^/     /' <<<"$out"; failed=$((failed + 1)); fi
else
  run emulation-failure 1 'xrstor ran'
fi
[ "$failed" = 0 ] || die "$failed check(s) failed"
echo "check-with-qemu: all guests behave ($accel)"
