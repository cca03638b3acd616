#!/bin/bash
# io.d/vsock.sh: vsock stream throughput, host->guest and guest->host, under vmctl (virtio-vsock,
# host side through its hybrid Unix socket) and under QEMU -M microvm with vhost-vsock-device
# (QEMU has no userspace vsock: its figure is the host KERNEL's vhost-vsock), inside the test host.
#
# Both VMMs get the same kernel (build/share/vmctl/vmlinux), the same initramfs (the default one
# plus vsock-test from build/tests/guest-tools), 512 MiB and 1 vCPU, guest CID 3. Each boot runs
# $ROUNDS rounds of: the host sends $MIB MiB to the guest (guest listens on port 5001), then the
# guest sends $MIB MiB to the host (host listens on port 5002; for vmctl that is the Unix socket
# <uds>_5002). vsock-test runs on both sides (zeros, no checksums). The VMMs take turns, $PAIRS boots each
# (alternating which goes first). The figure is the receiver's MB/s (connection to EOF); the row
# shows the median of all rounds.
# Prints `ROW <name>|<vmctl>|<qemu>|MB/s|<note>` lines (see resources/bench/io).
set -euo pipefail
B=${VMCTL_BUILD:-/build}
ROUNDS=${VSOCK_BENCH_ROUNDS:-4}
PAIRS=${VSOCK_BENCH_PAIRS:-3}
MIB=${VSOCK_BENCH_MIB:-64}
MEM=512
CID=3
QEMU=${BENCH_QEMU:-qemu-system-x86_64}
QEMU_MACHINE=${BENCH_QEMU_VSOCK_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
TOOL=$B/tests/guest-tools/vsock-test
BYTES=$((MIB * 1024 * 1024))

die() { echo "vsock.sh: $*" >&2; exit 1; }
[ -x "$TOOL" ] || die "$TOOL missing: run make guest-tools"
[ -c /dev/kvm ] || die "no /dev/kvm"
for f in "$B/bin/vmctl" "$B/share/vmctl/vmlinux" "$B/share/vmctl/initramfs.img"; do
  [ -f "$f" ] || die "$f missing: run make build"
done
command -v "$QEMU" >/dev/null || die "$QEMU not found"
modprobe vhost_vsock 2>/dev/null || true
[ -c /dev/vhost-vsock ] || die "no /dev/vhost-vsock (modprobe vhost_vsock failed): QEMU has no other vsock"

tmp=$(mktemp -d)
cleanup() {
  local p
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The default initramfs plus /bin/vsock-test (a newc archive appended on a 4-byte boundary).
mkdir -p "$tmp/extra/bin"
cp "$TOOL" "$tmp/extra/bin/vsock-test"
if command -v cpio >/dev/null; then CPIO=(cpio); else CPIO=(busybox cpio); fi
(cd "$tmp/extra" && find . -mindepth 1 | "${CPIO[@]}" -o -H newc 2>/dev/null) > "$tmp/extra.cpio"
cp "$B/share/vmctl/initramfs.img" "$tmp/initramfs.img"
size=$(stat -c %s "$tmp/initramfs.img")
pad=$(( (4 - size % 4) % 4 ))
head -c "$pad" /dev/zero >> "$tmp/initramfs.img"
cat "$tmp/extra.cpio" >> "$tmp/initramfs.img"
K=$B/share/vmctl/vmlinux
I=$tmp/initramfs.img

# The guest: per round, receive (host->guest) then send (guest->host).
script="for r in \$(seq $ROUNDS); do vsock-test listen vsock:5001 --recv; \
vsock-test connect vsock:2:5002 --send $BYTES --zeros --retry 60; done; echo BENCH-DONE"
cmd64=$(printf 'sh\0-c\0%s' "$script" | base64 -w0 | tr '+/' '-_' | tr -d '=')

# wait_lines FILE PATTERN N SECS: until FILE has N lines matching PATTERN.
wait_lines() {
  local i=0
  while [ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -lt "$3" ]; do
    i=$((i + 1))
    [ $i -le $(($4 * 10)) ] || return 1
    sleep 0.1
  done
}

# mbps LINE: the mbps= figure of a vsock-test result line.
mbps() { tr ' ' '\n' <<<"$1" | sed -n 's/^mbps=//p' | tr -d '\r'; }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run_side NAME: boots NAME (vmctl or qemu) and appends per-round figures to $tmp/NAME.h2g and
# $tmp/NAME.g2h.
run_side() {
  local side=$1 out=$tmp/$1.console r line uds=$tmp/v.sock
  : > "$out"
  rm -f "$uds" "${uds}_5002"
  if [ "$side" = vmctl ]; then
    timeout 600 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory "$MEM" --cpus 1 \
      --vsock "cid=$CID,socket=$uds" -- sh -c "$script" > "$out" 2>&1 &
    h2g_target=hybrid:$uds:5001
    g2h_listen=unix:${uds}_5002
  else
    timeout 600 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m "$MEM" -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 \
      -device "vhost-vsock-device,guest-cid=$CID" \
      -kernel "$K" -initrd "$I" -append "$CMDLINE vmctl.cmd=$cmd64" > "$out" 2>&1 < /dev/null &
    h2g_target=vsock:$CID:5001
    g2h_listen=vsock:5002
  fi
  local vm=$!
  for r in $(seq "$ROUNDS"); do
    wait_lines "$out" "^listening" "$r" 120 || { echo "vsock.sh: $side: the guest never listened (round $r):" >&2; tail -20 "$out" >&2; return 1; }
    # The host's receiver for the guest->host half, up before the guest connects.
    "$TOOL" listen "$g2h_listen" --recv > "$tmp/recv.$r" &
    local rp=$!
    "$TOOL" connect "$h2g_target" --send "$BYTES" --zeros --retry 60 > /dev/null || { echo "vsock.sh: $side: host send failed" >&2; tail -20 "$out" >&2; return 1; }
    wait_lines "$out" "^conn 0 recv" "$r" 120 || { echo "vsock.sh: $side: no guest receive figure (round $r)" >&2; tail -20 "$out" >&2; return 1; }
    mbps "$(grep "^conn 0 recv" "$out" | sed -n "${r}p")" >> "$tmp/$side.h2g"
    wait "$rp" || { echo "vsock.sh: $side: host receive failed (round $r)" >&2; tail -20 "$out" >&2; return 1; }
    mbps "$(grep "^conn 0 recv" "$tmp/recv.$r")" >> "$tmp/$side.g2h"
  done
  wait_lines "$out" "BENCH-DONE" 1 60 || true
  wait "$vm" || true
}

for side in vmctl qemu; do : > "$tmp/$side.h2g"; : > "$tmp/$side.g2h"; done
for p in $(seq "$PAIRS"); do
  if ((p % 2)); then run_side vmctl; run_side qemu; else run_side qemu; run_side vmctl; fi
done
for side in vmctl qemu; do
  echo "### vsock $side: host->guest $(tr '\n' ' ' < "$tmp/$side.h2g")MB/s; guest->host $(tr '\n' ' ' < "$tmp/$side.g2h")MB/s" >&2
done
note="qemu = kernel vhost-vsock"
echo "ROW vsock stream guest->host|$(median < "$tmp/vmctl.g2h")|$(median < "$tmp/qemu.g2h")|MB/s|$note"
echo "ROW vsock stream host->guest|$(median < "$tmp/vmctl.h2g")|$(median < "$tmp/qemu.h2g")|MB/s|$note"
