# io.d/lib.sh: what the device benchmarks share, sourced by each io.d/<device>.sh (resources/bench/io
# copies the whole directory into the test host, so this file is there too). Not a benchmark itself.
# After sourcing, a script sets TOOL (the guest-tools program its guests run) and calls
# bench_checks, bench_tmp and initramfs_with_tool.

B=${VMCTL_BUILD:-/build}
QEMU=${BENCH_QEMU:-qemu-system-x86_64}
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# bench_checks: $TOOL, /dev/kvm, the project's build and QEMU are all there.
bench_checks() {
  local f
  [ -x "$TOOL" ] || die "$TOOL missing: run make guest-tools"
  [ -c /dev/kvm ] || die "no /dev/kvm"
  for f in "$B/bin/vmctl" "$B/share/vmctl/vmlinux" "$B/share/vmctl/initramfs.img"; do
    [ -f "$f" ] || die "$f missing: run make build"
  done
  command -v "$QEMU" >/dev/null || die "$QEMU not found"
}

# bench_tmp [TEMPLATE]: makes the directory $tmp (mktemp -d [TEMPLATE]). On exit the script's
# background jobs are killed, its own on_exit runs (if it defines one), and $tmp is removed.
bench_tmp() {
  tmp=$(mktemp -d "$@")
  trap bench_exit EXIT
}
bench_exit() {
  local p
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  if declare -F on_exit >/dev/null; then on_exit; fi
  rm -rf "$tmp"
}

# initramfs_with_tool: I=$tmp/initramfs.img, the default initramfs plus $TOOL (and each of the
# array EXTRA_TOOLS, if set) as /bin/<its name> (a newc archive appended on a 4-byte boundary);
# K=the project's vmlinux.
initramfs_with_tool() {
  local size cpio t
  mkdir -p "$tmp/extra/bin"
  for t in "$TOOL" ${EXTRA_TOOLS[@]+"${EXTRA_TOOLS[@]}"}; do
    cp "$t" "$tmp/extra/bin/$(basename "$t")"
  done
  if command -v cpio >/dev/null; then cpio=(cpio); else cpio=(busybox cpio); fi
  (cd "$tmp/extra" && find . -mindepth 1 | "${cpio[@]}" -o -H newc 2>/dev/null) > "$tmp/extra.cpio"
  cp "$B/share/vmctl/initramfs.img" "$tmp/initramfs.img"
  size=$(stat -c %s "$tmp/initramfs.img")
  head -c $(( (4 - size % 4) % 4 )) /dev/zero >> "$tmp/initramfs.img"
  cat "$tmp/extra.cpio" >> "$tmp/initramfs.img"
  K=$B/share/vmctl/vmlinux
  I=$tmp/initramfs.img
}

# vmctl_cmd SCRIPT: the vmctl.cmd= value (for QEMU's -append) that runs `sh -c SCRIPT` under the
# project's init.
vmctl_cmd() { printf 'sh\0-c\0%s' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }

# median < NUMBERS: their median (0 for none).
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# fresh_tap NS TAP: a new tap TAP (with vnet headers) in namespace NS, up, host side 10.0.2.1/24.
fresh_tap() {
  ip -n "$1" link del "$2" 2>/dev/null || true
  ip -n "$1" tuntap add dev "$2" mode tap vnet_hdr
  ip -n "$1" addr add 10.0.2.1/24 dev "$2"
  ip -n "$1" link set "$2" up
}

# wait_lines FILE PATTERN N SECS: until FILE has N lines matching PATTERN.
wait_lines() {
  local i=0
  while [ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -lt "$3" ]; do
    i=$((i + 1))
    [ $i -le $(($4 * 10)) ] || return 1
    sleep 0.1
  done
}
