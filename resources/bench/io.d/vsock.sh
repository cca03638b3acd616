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
source "$(dirname "$0")/lib.sh"
ROUNDS=${VSOCK_BENCH_ROUNDS:-4}
PAIRS=${VSOCK_BENCH_PAIRS:-3}
MIB=${VSOCK_BENCH_MIB:-64}
MEM=512
CID=3
QEMU_MACHINE=${BENCH_QEMU_VSOCK_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
TOOL=$B/tests/guest-tools/vsock-test
BYTES=$((MIB * 1024 * 1024))

bench_checks
modprobe vhost_vsock 2>/dev/null || true
[ -c /dev/vhost-vsock ] || die "no /dev/vhost-vsock (modprobe vhost_vsock failed): QEMU has no other vsock"

bench_tmp
initramfs_with_tool

# The guest: per round, receive (host->guest) then send (guest->host).
script="for r in \$(seq $ROUNDS); do vsock-test listen vsock:5001 --recv; \
vsock-test connect vsock:2:5002 --send $BYTES --zeros --retry 60; done; echo BENCH-DONE"
cmd64=$(vmctl_cmd "$script")

# mbps LINE: the mbps= figure of a vsock-test result line.
mbps() { tr ' ' '\n' <<<"$1" | sed -n 's/^mbps=//p' | tr -d '\r'; }

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
# vhost-vsock is QEMU's only vsock, and so also its best: the same figure in both QEMU columns.
for dir in g2h h2g; do
  name="vsock stream guest->host"
  [ "$dir" = h2g ] && name="vsock stream host->guest"
  q=$(median < "$tmp/qemu.$dir")
  echo "ROW $name|$(median < "$tmp/vmctl.$dir")|$q|MB/s|$note|$q"
done
