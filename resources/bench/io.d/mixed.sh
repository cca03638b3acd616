#!/bin/bash
# io.d/mixed.sh: virtio-blk and virtio-net busy at the same time, under vmctl and under QEMU -M
# microvm as it comes (aio=threads, vhost=off) and at its best (aio=io_uring with an iothread for
# the disk, vhost=on where the test host has /dev/vhost-net), inside the test host. What it shows:
# whether one busy device slows the other (vmctl: blk on its own I/O threads, net on the event
# loop; QEMU: both in its main loop unless iothread and vhost take them out).
#
# Each boot (512 MiB, 1 vCPU, the same kernel and initramfs plus blkbench and nettool, a raw image
# in tmpfs, a tap in a namespace made here) runs $ROUNDS rounds of: 4 KiB random reads at queue
# depth 32 (blkbench, O_DIRECT) while the guest sends TCP to the host for $SECS s (nettool). The
# figures are the reads' IOPS and the host's received MB/s; a row is the median of all rounds.
# Prints `ROW <name>|<vmctl>|<qemu>|<unit>|<note>|<qemu best>` lines (see resources/bench/io).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${MIXED_BENCH_ROUNDS:-3}
PAIRS=${MIXED_BENCH_PAIRS:-2}
SECS=${MIXED_BENCH_SECS:-4}
COUNT=${MIXED_BENCH_COUNT:-20000}
IMG_MIB=256
MEM=512
QEMU_MACHINE=${BENCH_QEMU_NET_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
NS=vmctl-bench-mixed
TAP=mtap0
TOOL=$B/tests/guest-tools/nettool
EXTRA_TOOLS=("$B/tests/guest-tools/blkbench")

bench_checks
modprobe vhost_net 2>/dev/null || true
vhost_best=off
best_note="qemu best: aio=io_uring + iothread, no /dev/vhost-net in the test host"
if [ -c /dev/vhost-net ]; then vhost_best=on; best_note="qemu best: aio=io_uring + iothread, vhost-net"; fi
on_exit() { ip netns del "$NS" 2>/dev/null || true; }
bench_tmp
initramfs_with_tool
IMG=$tmp/disk.img
dd if=/dev/zero of="$IMG" bs=1M count="$IMG_MIB" status=none

ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
nsx() { ip netns exec "$NS" "$@"; }

# The guest: per round, the reads in the background while nettool sends; then the reads' figure.
script="ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.2/24 dev eth0; \
for r in \$(seq $ROUNDS); do \
blkbench randread /dev/vda 4096 $COUNT 32 > /tmp/blk.out & \
nettool send 10.0.2.1 5002 ${SECS}s --nohash --timeout 60; wait; echo MIXEDBLK \$(cat /tmp/blk.out); done; \
echo BENCH-DONE"
cmd64=$(vmctl_cmd "$script")

mbps() { awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") print $i }' <<<"$1"; }

# run_side NAME: boots NAME (vmctl, qemu or qemu-best) and appends per-round figures to
# $tmp/NAME.iops and $tmp/NAME.mbps.
run_side() {
  local side=$1 out=$tmp/$1.console r
  fresh_tap "$NS" "$TAP"
  : > "$out"
  if [ "$side" = vmctl ]; then
    nsx timeout 600 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory "$MEM" --cpus 1 \
      --disk "$IMG" --net "tap=$TAP,mac=06:00:0a:00:02:02" -- sh -c "$script" > "$out" 2>&1 < /dev/null &
  else
    local disk=(-drive "id=disk0,if=none,file=$IMG,format=raw,cache=writeback,aio=threads"
      -device virtio-blk-device,drive=disk0) vhost=off
    if [ "$side" = qemu-best ]; then
      disk=(-object iothread,id=io0
        -drive "id=disk0,if=none,file=$IMG,format=raw,cache=writeback,aio=io_uring"
        -device virtio-blk-device,drive=disk0,iothread=io0)
      vhost=$vhost_best
    fi
    nsx timeout 600 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m "$MEM" -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 "${disk[@]}" \
      -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=$vhost" \
      -device virtio-net-device,netdev=n0,mac=06:00:0a:00:02:02 \
      -kernel "$K" -initrd "$I" -append "$CMDLINE vmctl.cmd=$cmd64" > "$out" 2>&1 < /dev/null &
  fi
  local vm=$!
  for r in $(seq "$ROUNDS"); do
    nsx "$TOOL" recv 5002 --nohash --timeout 120 > "$tmp/recv.$r" &
    local rp=$!
    wait "$rp" || { echo "mixed.sh: $side: host receive failed (round $r)" >&2; tail -20 "$out" >&2; return 1; }
    mbps "$(grep "^received" "$tmp/recv.$r")" >> "$tmp/$side.mbps"
    wait_lines "$out" "^MIXEDBLK" "$r" 300 || { echo "mixed.sh: $side: no blk figure (round $r)" >&2; tail -20 "$out" >&2; return 1; }
    tr -d '\r' < "$out" | awk '$1 == "MIXEDBLK" && $2 == "RESULT" { print $3 }' | sed -n "${r}p" >> "$tmp/$side.iops"
  done
  wait_lines "$out" "BENCH-DONE" 1 60 || true
  wait "$vm" || true
}

sides=(vmctl qemu qemu-best)
for side in "${sides[@]}"; do : > "$tmp/$side.iops"; : > "$tmp/$side.mbps"; done
for p in $(seq "$PAIRS"); do
  order=("${sides[@]}")
  ((p % 2)) || order=(qemu-best qemu vmctl)
  for side in "${order[@]}"; do run_side "$side"; done
done
for side in "${sides[@]}"; do
  echo "### mixed $side: blk $(tr '\n' ' ' < "$tmp/$side.iops")IOPS; net $(tr '\n' ' ' < "$tmp/$side.mbps")MB/s" >&2
done
echo "ROW blk QD32 read, net busy|$(median < "$tmp/vmctl.iops")|$(median < "$tmp/qemu.iops")|IOPS|$best_note|$(median < "$tmp/qemu-best.iops")"
echo "ROW net guest->host, blk busy|$(median < "$tmp/vmctl.mbps")|$(median < "$tmp/qemu.mbps")|MB/s|$best_note|$(median < "$tmp/qemu-best.mbps")"
