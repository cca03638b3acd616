#!/bin/bash
# io.d/blk.sh: virtio-blk throughput under vmctl and under QEMU -M microvm
# (-device virtio-blk-device) in two configurations, inside the test host: sequential read and
# write (1 MiB requests), 4 KiB random reads at queue depth 1, and 4 KiB random reads and writes at
# queue depth 32 (32 guest threads, one request each), all O_DIRECT in the guest (blkbench from
# build/tests/guest-tools), so every byte crosses the virtio queue.
#
# QEMU runs twice: as it comes (aio=threads, I/O in the main loop) and at its best for this
# (aio=io_uring with an iothread of its own for the disk).
#
# Both VMMs get the same kernel (build/share/vmctl/vmlinux), the same initramfs (the default one plus
# blkbench), 512 MiB and 1 vCPU, and the same raw image in tmpfs. Cache mode, like with like: both
# use the host page cache (vmctl: buffered preadv/pwritev, FLUSH = fdatasync; QEMU:
# cache=writeback,aio=threads). QEMU's cache=none needs O_DIRECT, which tmpfs lacks, and would
# measure the test host's own disk rather than the device. $BOOTS boots per VMM, alternating, each
# running one warm-up round (not counted) and $ROUNDS rounds of the three workloads; a row is the
# median of all counted rounds.
# Prints `ROW <name>|<vmctl>|<qemu>|<unit>|<note>` lines (see resources/bench/io).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BOOTS=${BLK_BENCH_BOOTS:-2}
ROUNDS=${BLK_BENCH_ROUNDS:-5}
MIB=${BLK_BENCH_MIB:-256}          # per sequential run
COUNT=${BLK_BENCH_COUNT:-4000}     # random reads per run
IMG_MIB=${BLK_BENCH_IMG_MIB:-512}
MEM=512
# As resources/bench/boot-latency, but QEMU announces its virtio-mmio devices on the command line.
QEMU_MACHINE=${BENCH_QEMU_BLK_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
TOOL=$B/tests/guest-tools/blkbench

bench_checks
bench_tmp /tmp/blk-bench.XXXXXX
initramfs_with_tool

# The image: allocated (not sparse), in tmpfs.
IMG=$tmp/disk.img
dd if=/dev/zero of="$IMG" bs=1M count="$IMG_MIB" status=none

script="blkbench read /dev/vda 1048576 $MIB >/dev/null; blkbench write /dev/vda 1048576 $MIB >/dev/null; \
blkbench randread /dev/vda 4096 $COUNT >/dev/null; \
for r in \$(seq $ROUNDS); do \
echo SEQREAD \$(blkbench read /dev/vda 1048576 $MIB); \
echo SEQWRITE \$(blkbench write /dev/vda 1048576 $MIB); \
echo RANDREAD \$(blkbench randread /dev/vda 4096 $COUNT); \
echo RANDREAD32 \$(blkbench randread /dev/vda 4096 $COUNT 32); \
echo RANDWRITE32 \$(blkbench randwrite /dev/vda 4096 $COUNT 32); \
done; echo BENCH-DONE"
cmd64=$(vmctl_cmd "$script")

# run_side SIDE BOOT: boots SIDE (vmctl, qemu or qemu-best) once; appends its figures to
# $tmp/SIDE.TAG.
run_side() {
  local side=$1 n=$2 out=$tmp/$1.$2.out rc=0
  if [ "$side" = vmctl ]; then
    timeout 900 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory $MEM --cpus 1 \
      --disk "$IMG" -- sh -c "$script" > "$out" 2> "$out.err" || rc=$?
  else
    local disk=(-drive id=disk0,if=none,file="$IMG",format=raw,cache=writeback,aio=threads
      -device virtio-blk-device,drive=disk0)
    if [ "$side" = qemu-best ]; then
      disk=(-object iothread,id=io0
        -drive id=disk0,if=none,file="$IMG",format=raw,cache=writeback,aio=io_uring
        -device virtio-blk-device,drive=disk0,iothread=io0)
    fi
    timeout 900 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m $MEM -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 "${disk[@]}" \
      -kernel "$K" -initrd "$I" -append "$CMDLINE vmctl.cmd=$cmd64" > "$out" 2> "$out.err" || rc=$?
    # isa-debug-exit: status S comes out as (S << 1) | 1.
    [ $rc -eq 1 ] && rc=0
  fi
  if [ $rc -ne 0 ] || ! grep -q BENCH-DONE "$out"; then
    echo "blk.sh: $side boot $n failed (exit $rc)" >&2
    tail -20 "$out" "$out.err" >&2
    return 1
  fi
  local tag
  for tag in SEQREAD SEQWRITE RANDREAD RANDREAD32 RANDWRITE32; do
    tr -d '\r' < "$out" | awk -v t="$tag" '$1 == t && $2 == "RESULT" { print $3 }' >> "$tmp/$side.$tag"
  done
  echo "blk.sh: $side boot $n: $(tr -d '\r' < "$out" | grep -E '^(SEQ|RAND)' | tr '\n' ' ')" >&2
}

for ((b = 1; b <= BOOTS; b++)); do
  if ((b % 2)); then
    run_side vmctl $b; run_side qemu $b; run_side qemu-best $b
  else
    run_side qemu-best $b; run_side qemu $b; run_side vmctl $b
  fi
done

note="host page cache on every side (qemu cache=writeback)"
row() {
  local name=$1 tag=$2 unit=$3
  echo "ROW $name|$(median < "$tmp/vmctl.$tag")|$(median < "$tmp/qemu.$tag")|$unit|$note|$(median < "$tmp/qemu-best.$tag")"
}
row "blk sequential read, 1 MiB" SEQREAD MB/s
row "blk sequential write, 1 MiB" SEQWRITE MB/s
row "blk random read, 4 KiB, QD1" RANDREAD IOPS
row "blk random read, 4 KiB, QD32" RANDREAD32 IOPS
row "blk random write, 4 KiB, QD32" RANDWRITE32 IOPS
