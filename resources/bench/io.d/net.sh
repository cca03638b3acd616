#!/bin/bash
# io.d/net.sh: TCP throughput over virtio-net, guest->host and host->guest, under vmctl and under
# QEMU -M microvm (-netdev tap,vhost=off -device virtio-net-device), inside the test host.
#
# Both VMMs get the same kernel (build/share/vmctl/vmlinux), the same initramfs (the default one
# plus nettool from build/tests/guest-tools), 512 MiB and 1 vCPU, and a tap in a network namespace
# made here (host side 10.0.2.1, guest 10.0.2.2). Each boot runs $ROUNDS rounds of: the host sends
# to the guest for $SECS s, then the guest sends to the host for $SECS s (nettool, no checksums).
# The VMMs take turns, $PAIRS boots each (alternating which goes first, so a change in the machine's
# load hits both alike). The figure is the receiver's MB/s (first byte to EOF); the row shows the
# median of all rounds.
# Prints `ROW <name>|<vmctl>|<qemu>|MB/s` lines (see resources/bench/io).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${NET_BENCH_ROUNDS:-2}
PAIRS=${NET_BENCH_PAIRS:-3}
SECS=${NET_BENCH_SECS:-4}
MEM=512
# As resources/bench/boot-latency, but QEMU announces its virtio-mmio devices on the command line.
QEMU_MACHINE=${BENCH_QEMU_NET_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
NS=vmctl-bench-net
TAP=btap0
TOOL=$B/tests/guest-tools/nettool

bench_checks
on_exit() { ip netns del "$NS" 2>/dev/null || true; }
bench_tmp
initramfs_with_tool

ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
nsx() { ip netns exec "$NS" "$@"; }

# The guest: configure eth0, then per round receive (host->guest) and send (guest->host).
script="ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.2/24 dev eth0; \
for r in \$(seq $ROUNDS); do nettool recv 5001 --nohash --timeout 120; \
nettool send 10.0.2.1 5002 ${SECS}s --nohash --timeout 60; done; echo BENCH-DONE"
cmd64=$(vmctl_cmd "$script")

# mbps LINE: the MB/s figure of a nettool result line.
mbps() { awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") print $i }' <<<"$1"; }

# run_side NAME: boots NAME (vmctl or qemu) on a fresh tap and appends per-round figures to
# $tmp/NAME.h2g and $tmp/NAME.g2h.
run_side() {
  local side=$1 out=$tmp/$1.console r line
  ip -n "$NS" link del "$TAP" 2>/dev/null || true
  ip -n "$NS" tuntap add dev "$TAP" mode tap vnet_hdr
  ip -n "$NS" addr add 10.0.2.1/24 dev "$TAP"
  ip -n "$NS" link set "$TAP" up
  : > "$out"
  if [ "$side" = vmctl ]; then
    nsx timeout 300 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory "$MEM" --cpus 1 \
      --net "tap=$TAP,mac=06:00:0a:00:02:02" -- sh -c "$script" > "$out" 2>&1 &
  else
    nsx timeout 300 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m "$MEM" -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 \
      -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off" \
      -device virtio-net-device,netdev=n0,mac=06:00:0a:00:02:02 \
      -kernel "$K" -initrd "$I" -append "$CMDLINE vmctl.cmd=$cmd64" > "$out" 2>&1 < /dev/null &
  fi
  local vm=$!
  for r in $(seq "$ROUNDS"); do
    wait_lines "$out" "listening on 5001" "$r" 120 || { echo "net.sh: $side: the guest never listened (round $r):" >&2; tail -20 "$out" >&2; return 1; }
    nsx "$TOOL" recv 5002 --nohash --timeout 120 > "$tmp/recv.$r" &
    local rp=$!
    line=$(nsx "$TOOL" send 10.0.2.2 5001 "${SECS}s" --nohash --timeout 30) || { echo "net.sh: $side: host send failed" >&2; return 1; }
    wait_lines "$out" "^received" "$r" 60 || { echo "net.sh: $side: no guest receive figure (round $r)" >&2; tail -20 "$out" >&2; return 1; }
    mbps "$(grep "^received" "$out" | tr -d '\r' | sed -n "${r}p")" >> "$tmp/$side.h2g"
    wait "$rp" || { echo "net.sh: $side: host receive failed (round $r)" >&2; return 1; }
    mbps "$(grep "^received" "$tmp/recv.$r")" >> "$tmp/$side.g2h"
  done
  wait_lines "$out" "BENCH-DONE" 1 60 || true
  wait "$vm" || true
}

for side in vmctl qemu; do : > "$tmp/$side.h2g"; : > "$tmp/$side.g2h"; done
for p in $(seq "$PAIRS"); do
  if ((p % 2)); then run_side vmctl; run_side qemu; else run_side qemu; run_side vmctl; fi
done
for side in vmctl qemu; do
  echo "### net $side: host->guest $(tr '\n' ' ' < "$tmp/$side.h2g")MB/s; guest->host $(tr '\n' ' ' < "$tmp/$side.g2h")MB/s" >&2
done
echo "ROW net TCP guest->host|$(median < "$tmp/vmctl.g2h")|$(median < "$tmp/qemu.g2h")|MB/s"
echo "ROW net TCP host->guest|$(median < "$tmp/vmctl.h2g")|$(median < "$tmp/qemu.h2g")|MB/s"
