#!/bin/bash
# io.d/pmem.sh: reading a large file from a pmem image under vmctl (virtio-pmem, the image mapped
# into the guest, mounted with -o dax) against the same image under QEMU -M microvm. QEMU's
# virtio-pmem exists only as virtio-pmem-pci and our kernel has no PCI, so QEMU gets the image the
# way a QEMU microvm user would attach it: -device virtio-blk-device (read-only, cache=writeback),
# mounted without DAX, twice: as it comes (aio=threads) and at its best (aio=io_uring with an
# iothread of its own).
#
# The image: erofs (the container layer format; uncompressed, no inline tails, so the file is DAX)
# holding one $FILE_MIB MiB file, in the test host's tmpfs. Both VMMs get the same kernel
# (build/share/vmctl/vmlinux), the same initramfs (the default one plus readbench from
# build/tests/guest-tools), 512 MiB and 1 vCPU. In each boot the guest reads the file with 1 MiB
# read()s (readbench, like dd bs=1M) $ROUNDS times, dropping its page cache before each read:
#   - "first read": the first read after boot (the guest has never touched the image; the host's
#     page cache holds it: the host read it once before the runs);
#   - "re-read": the later reads (vmctl: the guest's mappings of the image exist; QEMU: the guest
#     page cache was dropped, so the data crosses the virtio queue again).
# $BOOTS boots per VMM, alternating; each row is the median over all boots (and rounds).
# Prints `ROW <name>|<vmctl>|<qemu>|<unit>|<note>` lines (see resources/bench/io).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BOOTS=${PMEM_BENCH_BOOTS:-3}
ROUNDS=${PMEM_BENCH_ROUNDS:-3}
FILE_MIB=${PMEM_BENCH_FILE_MIB:-256}
# Where the image lives: tmpfs by default (as io.d/blk.sh). For a file in tmpfs vmctl has the host
# back the mapping with 2 MiB pages (devices/src/virtio/pmem/hugepages.rs), so the guest's first
# touch costs one exit per 2 MiB; on a disk file system (e.g. PMEM_BENCH_DIR=/root in the test
# host) it costs one per 4 KiB and the first read is slower than QEMU's virtio-blk there.
DIR=${PMEM_BENCH_DIR:-/tmp}
MEM=512
# As io.d/blk.sh: QEMU announces its virtio-mmio devices on the kernel command line.
QEMU_MACHINE=${BENCH_QEMU_PMEM_MACHINE:-microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=off}
TOOL=$B/tests/guest-tools/readbench

bench_checks
command -v mkfs.erofs >/dev/null || die "mkfs.erofs not found (erofs-utils)"

bench_tmp "$DIR/pmem-bench.XXXXXX"
initramfs_with_tool

# The image, read once on the host so both VMMs start from the host's page cache.
mkdir -p "$tmp/tree"
head -c $((FILE_MIB << 20)) /dev/urandom > "$tmp/tree/big"
IMG=$tmp/image.erofs
mkfs.erofs -E noinline_data "$IMG" "$tmp/tree" >/dev/null
rm -rf "$tmp/tree"
cat "$IMG" > /dev/null

# /dev/pmem0 under vmctl, /dev/vda under QEMU; DAX where the device allows it.
script="mkdir -p /mnt; if [ -e /dev/pmem0 ]; then mount -t erofs -o ro,dax /dev/pmem0 /mnt; \
else mount -t erofs -o ro /dev/vda /mnt; fi || exit 3; \
grep ' /mnt ' /proc/self/mountinfo | sed 's/^/MOUNT /'; \
for r in \$(seq $ROUNDS); do sync; echo 3 > /proc/sys/vm/drop_caches; \
echo READ \$r \$(readbench /mnt/big 1048576); done; echo BENCH-DONE"
cmd64=$(vmctl_cmd "$script")

# run_side SIDE BOOT: boots SIDE (vmctl, qemu or qemu-best) once; appends its figures to
# $tmp/SIDE.{first,again}.
run_side() {
  local side=$1 n=$2 out=$tmp/$1.$2.out rc=0
  if [ "$side" = vmctl ]; then
    timeout 900 "$B/bin/vmctl" boot --kernel "$K" --initrd "$I" --memory $MEM --cpus 1 \
      --pmem "$IMG,ro" -- sh -c "$script" > "$out" 2> "$out.err" || rc=$?
  else
    # QEMU as it comes, or at its best for a disk (aio=io_uring with an iothread of its own).
    local disk=(-drive "id=disk0,if=none,file=$IMG,format=raw,readonly=on,cache=writeback,aio=threads"
      -device virtio-blk-device,drive=disk0)
    if [ "$side" = qemu-best ]; then
      disk=(-object iothread,id=io0
        -drive "id=disk0,if=none,file=$IMG,format=raw,readonly=on,cache=writeback,aio=io_uring"
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
    echo "pmem.sh: $side boot $n failed (exit $rc)" >&2
    tail -n 20 "$out" "$out.err" >&2
    return 1
  fi
  if [ "$side" = vmctl ] && ! tr -d '\r' < "$out" | grep '^MOUNT ' | grep -q 'dax=always'; then
    echo "pmem.sh: vmctl boot $n: the image is not mounted with DAX" >&2
    return 1
  fi
  tr -d '\r' < "$out" | awk '$1 == "READ" && $2 == 1 && $3 == "RESULT" { print $4 }' >> "$tmp/$side.first"
  tr -d '\r' < "$out" | awk '$1 == "READ" && $2 > 1 && $3 == "RESULT" { print $4 }' >> "$tmp/$side.again"
  echo "pmem.sh: $side boot $n: $(tr -d '\r' < "$out" | grep '^READ' | awk '{ print $4 }' | tr '\n' ' ')MB/s" >&2
}

for ((b = 1; b <= BOOTS; b++)); do
  if ((b % 2)); then
    run_side vmctl $b; run_side qemu $b; run_side qemu-best $b
  else
    run_side qemu-best $b; run_side qemu $b; run_side vmctl $b
  fi
done

fs=$(stat -f -c %T "$tmp")
note="$FILE_MIB MiB file on erofs, image on $fs, 1 MiB reads; vmctl virtio-pmem -o dax vs qemu virtio-blk-device (no pmem without PCI)"
echo "ROW pmem read, first after boot|$(median < "$tmp/vmctl.first")|$(median < "$tmp/qemu.first")|MB/s|$note|$(median < "$tmp/qemu-best.first")"
if [ "$ROUNDS" -gt 1 ]; then
  echo "ROW pmem re-read, guest cache dropped|$(median < "$tmp/vmctl.again")|$(median < "$tmp/qemu.again")|MB/s|$note|$(median < "$tmp/qemu-best.again")"
fi
