#!/bin/bash
# io.d/net.sh: TCP throughput over virtio-net, guest->host and host->guest, under vmctl and under
# QEMU -M microvm (-device virtio-net-device) twice, inside the test host: as it comes (vhost=off,
# the data path in QEMU's main loop) and at its best (vhost=on: the data path in the host kernel),
# where the test host's kernel offers /dev/vhost-net (the script loads vhost_net).
#
# Both VMMs get the same kernel (build/share/vmctl/vmlinux), the same initramfs (the default one
# plus nettool from build/tests/guest-tools), 512 MiB and 1 vCPU, and a tap in a network namespace
# made here (host side 10.0.2.1, guest 10.0.2.2). Each boot runs $ROUNDS rounds of: the host sends
# to the guest for $SECS s, then the guest sends to the host for $SECS s (nettool, no checksums).
# The VMMs take turns, $PAIRS boots each (alternating which goes first, so a change in the machine's
# load hits both alike). The figure is the receiver's MB/s (first byte to EOF); the row shows the
# median of all rounds.
# Prints `ROW <name>|<vmctl>|<qemu>|MB/s|<note>|<qemu best>` lines (see resources/bench/io).
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
modprobe vhost_net 2>/dev/null || true
sides=(vmctl qemu)
best_note="qemu best: vhost-net"
if [ -c /dev/vhost-net ]; then sides+=(qemu-best); else best_note="no /dev/vhost-net in the test host: no qemu-best"; fi
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

# run_side NAME: boots NAME (vmctl, qemu or qemu-best) on a fresh tap and appends per-round figures to
# $tmp/NAME.h2g and $tmp/NAME.g2h.
run_side() {
  local side=$1 out=$tmp/$1.console r line
  fresh_tap "$NS" "$TAP"
  : > "$out"
  if [ "$side" = vmctl ]; then
    nsx timeout 300 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory "$MEM" --cpus 1 \
      --net "tap=$TAP,mac=06:00:0a:00:02:02" -- sh -c "$script" > "$out" 2>&1 &
  else
    local vhost=off
    [ "$side" = qemu-best ] && vhost=on
    nsx timeout 300 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m "$MEM" -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 \
      -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=$vhost" \
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

for side in vmctl qemu qemu-best; do : > "$tmp/$side.h2g"; : > "$tmp/$side.g2h"; done
for p in $(seq "$PAIRS"); do
  # alternate the order, so a change in the machine's load hits every side alike
  order=("${sides[@]}")
  ((p % 2)) || order=($(printf '%s\n' "${sides[@]}" | tac))
  for side in "${order[@]}"; do run_side "$side"; done
done
for side in "${sides[@]}"; do
  echo "### net $side: host->guest $(tr '\n' ' ' < "$tmp/$side.h2g")MB/s; guest->host $(tr '\n' ' ' < "$tmp/$side.g2h")MB/s" >&2
done
best() { [ -s "$tmp/qemu-best.$1" ] && median < "$tmp/qemu-best.$1" || true; }
echo "ROW net TCP guest->host|$(median < "$tmp/vmctl.g2h")|$(median < "$tmp/qemu.g2h")|MB/s|$best_note|$(best g2h)"
echo "ROW net TCP host->guest|$(median < "$tmp/vmctl.h2g")|$(median < "$tmp/qemu.h2g")|MB/s|$best_note|$(best h2g)"
