#!/bin/bash
# io.d/blk.sh: virtio-blk throughput under vmctl and under QEMU -M microvm
# (-device virtio-blk-device), inside the test host: sequential read and write (1 MiB requests)
# and 4 KiB random reads (one request in flight), all O_DIRECT in the guest (blkbench from
# build/tests/guest-tools), so every byte crosses the virtio queue.
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
B=${VMCTL_BUILD:-/build}
BOOTS=${BLK_BENCH_BOOTS:-2}
ROUNDS=${BLK_BENCH_ROUNDS:-5}
MIB=${BLK_BENCH_MIB:-256}          # per sequential run
COUNT=${BLK_BENCH_COUNT:-4000}     # random reads per run
IMG_MIB=${BLK_BENCH_IMG_MIB:-512}
MEM=512
QEMU=${BENCH_QEMU:-qemu-system-x86_64}
# As resources/bench/boot-latency, but QEMU announces its virtio-mmio devices on the command line.
QEMU_MACHINE=${BENCH_QEMU_BLK_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
TOOL=$B/tests/guest-tools/blkbench

die() { echo "blk.sh: $*" >&2; exit 1; }
[ -x "$TOOL" ] || die "$TOOL missing: run make guest-tools"
[ -c /dev/kvm ] || die "no /dev/kvm"
for f in "$B/bin/vmctl" "$B/share/vmctl/vmlinux" "$B/share/vmctl/initramfs.img"; do
  [ -f "$f" ] || die "$f missing: run make build"
done
command -v "$QEMU" >/dev/null || die "$QEMU not found"

tmp=$(mktemp -d /tmp/blk-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The default initramfs plus /bin/blkbench (a newc archive appended on a 4-byte boundary).
mkdir -p "$tmp/extra/bin"
cp "$TOOL" "$tmp/extra/bin/blkbench"
if command -v cpio >/dev/null; then CPIO=(cpio); else CPIO=(busybox cpio); fi
(cd "$tmp/extra" && find . -mindepth 1 | "${CPIO[@]}" -o -H newc 2>/dev/null) > "$tmp/extra.cpio"
cp "$B/share/vmctl/initramfs.img" "$tmp/initramfs.img"
size=$(stat -c %s "$tmp/initramfs.img")
head -c $(( (4 - size % 4) % 4 )) /dev/zero >> "$tmp/initramfs.img"
cat "$tmp/extra.cpio" >> "$tmp/initramfs.img"
K=$B/share/vmctl/vmlinux
I=$tmp/initramfs.img

# The image: allocated (not sparse), in tmpfs.
IMG=$tmp/disk.img
dd if=/dev/zero of="$IMG" bs=1M count="$IMG_MIB" status=none

script="blkbench read /dev/vda 1048576 $MIB >/dev/null; blkbench write /dev/vda 1048576 $MIB >/dev/null; \
blkbench randread /dev/vda 4096 $COUNT >/dev/null; \
for r in \$(seq $ROUNDS); do \
echo SEQREAD \$(blkbench read /dev/vda 1048576 $MIB); \
echo SEQWRITE \$(blkbench write /dev/vda 1048576 $MIB); \
echo RANDREAD \$(blkbench randread /dev/vda 4096 $COUNT); \
done; echo BENCH-DONE"
cmd64=$(printf 'sh\0-c\0%s' "$script" | base64 -w0 | tr '+/' '-_' | tr -d '=')

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run_side SIDE BOOT: boots SIDE (vmctl or qemu) once; appends its figures to $tmp/SIDE.TAG.
run_side() {
  local side=$1 n=$2 out=$tmp/$1.$2.out rc=0
  if [ "$side" = vmctl ]; then
    timeout 900 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory $MEM --cpus 1 \
      --disk "$IMG" -- sh -c "$script" > "$out" 2> "$out.err" || rc=$?
  else
    timeout 900 "$QEMU" -M "$QEMU_MACHINE" -accel kvm -cpu host -m $MEM -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio \
      -device isa-debug-exit,iobase=0x501,iosize=1 \
      -drive id=disk0,if=none,file="$IMG",format=raw,cache=writeback,aio=threads \
      -device virtio-blk-device,drive=disk0 \
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
  for tag in SEQREAD SEQWRITE RANDREAD; do
    tr -d '\r' < "$out" | awk -v t="$tag" '$1 == t && $2 == "RESULT" { print $3 }' >> "$tmp/$side.$tag"
  done
  echo "blk.sh: $side boot $n: $(tr -d '\r' < "$out" | grep -E '^(SEQ|RAND)' | tr '\n' ' ')" >&2
}

for ((b = 1; b <= BOOTS; b++)); do
  if ((b % 2)); then run_side vmctl $b; run_side qemu $b; else run_side qemu $b; run_side vmctl $b; fi
done

note="host page cache both sides (qemu cache=writeback,aio=threads)"
row() {
  local name=$1 tag=$2 unit=$3
  echo "ROW $name|$(median < "$tmp/vmctl.$tag")|$(median < "$tmp/qemu.$tag")|$unit|$note"
}
row "blk sequential read, 1 MiB" SEQREAD MB/s
row "blk sequential write, 1 MiB" SEQWRITE MB/s
row "blk random read, 4 KiB, QD1" RANDREAD IOPS
