#!/bin/bash
# Builds vmctl's default initramfs: an uncompressed newc cpio holding busybox-static (applet links in
# /bin and /sbin), the directories the init needs, /dev/console and /dev/null, and INIT_BINARY as /init.
#
#   resources/initramfs/build.sh INIT_BINARY OUTFILE
#
# The archive is written here, not by cpio(1): entries sorted, owned by root, mtime 0, inode numbers
# in order, device nodes without needing root, so the same inputs give the same bytes. It is rebuilt
# only when an input (this script, busybox, INIT_BINARY) changes; their hash is kept in
# .OUTFILE.inputs next to OUTFILE. Uncompressed on purpose: see README.md.
set -euo pipefail
export LC_ALL=C

die() { echo "initramfs: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 INIT_BINARY OUTFILE"
init=$1
out=$2
busybox=/bin/busybox
script=${BASH_SOURCE[0]}

[ -f "$init" ] || die "$init does not exist (build it with 'make agent')"

# --- dependencies (installed only when missing) ---------------------------------------------------
missing=()
for p in busybox-static binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (run 'make deps' as root, or apt-get install them)"
  echo "initramfs: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
    || die "apt-get install ${missing[*]} failed"
fi

is_static() { ! readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; }
is_static "$busybox" || die "$busybox is not statically linked (is busybox-static installed?)"
is_static "$init" || die "$init is dynamically linked; it must be static ('make agent' builds it so)"

# --- up to date? ------------------------------------------------------------------------------------
stamp=$(dirname "$out")/.$(basename "$out").inputs
key=$(cat "$script" "$busybox" "$init" | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
  echo "initramfs: $out is up to date" >&2
  exit 0
fi

mkdir -p "$(dirname "$out")" || die "cannot create $(dirname "$out")"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-initramfs.XXXXXX")
tmp=$out.tmp.$$
trap 'rm -rf "$work" "$tmp"' EXIT

strip -o "$work/init" "$init" || die "cannot strip $init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/passwd"
printf 'root:x:0:\n' >"$work/group"

# --- the entries: path, type, then mode and what the type needs (tab-separated) ------------------
{
  for d in bin dev etc proc run sbin sys usr usr/bin usr/sbin; do
    printf '%s\tdir\t0755\n' "$d"
  done
  printf 'root\tdir\t0700\n'
  printf 'tmp\tdir\t1777\n'
  printf 'dev/console\tchr\t0600\t5\t1\n'
  printf 'dev/null\tchr\t0666\t1\t3\n'
  printf 'init\tfile\t0755\t%s\n' "$work/init"
  printf 'bin/busybox\tfile\t0755\t%s\n' "$busybox"
  printf 'etc/passwd\tfile\t0644\t%s\n' "$work/passwd"
  printf 'etc/group\tfile\t0644\t%s\n' "$work/group"
  # applets: busybox's own list, /usr/bin and /usr/sbin folded into /bin and /sbin
  "$busybox" --list-full | sed -n -e 's#^usr/##' -e '\#^s\{0,1\}bin/[^/]*$#p' | sort -u \
    | grep -vx 'bin/busybox' | while read -r applet; do
      printf '%s\tsymlink\t0777\t/bin/busybox\n' "$applet"
    done
} | sort -t$'\t' -k1,1 >"$work/entries"
[ "$(grep -c $'\tsymlink\t' "$work/entries")" -gt 100 ] || die "'$busybox --list-full' listed too few applets"
grep -q $'^bin/sh\t' "$work/entries" || die "busybox has no sh applet"

# --- newc writer --------------------------------------------------------------------------------------
ino=0
# header FILE-MODE SIZE NLINK RDEV-MAJOR RDEV-MINOR NAME, then the name, padded to 4 bytes
header() {
  ino=$((ino + 1))
  local namesize=$((${#6} + 1))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$ino" "$1" 0 0 "$3" 0 "$2" 0 0 "$4" "$5" "$namesize" 0
  printf '%s\0' "$6"
  pad $((110 + namesize))
}
# pad LENGTH: zeros up to the next multiple of 4
pad() {
  case $(($1 % 4)) in
    1) printf '\0\0\0' ;;
    2) printf '\0\0' ;;
    3) printf '\0' ;;
  esac
}

while IFS=$'\t' read -r path type mode a b; do
  perm=$((8#$mode))
  case $type in
    dir) header $((8#040000 | perm)) 0 2 0 0 "$path" ;;
    chr) header $((8#020000 | perm)) 0 1 "$a" "$b" "$path" ;;
    symlink)
      header $((8#120000 | perm)) ${#a} 1 0 0 "$path"
      printf '%s' "$a"
      pad ${#a}
      ;;
    file)
      size=$(stat -L -c %s "$a")
      header $((8#100000 | perm)) "$size" 1 0 0 "$path"
      cat "$a"
      pad "$size"
      ;;
  esac
done <"$work/entries" >"$tmp"
header 0 0 1 0 0 'TRAILER!!!' >>"$tmp"
# pad the archive to a multiple of 512 bytes, as cpio(1) does
size=$(stat -c %s "$tmp")
if [ $((size % 512)) -ne 0 ]; then
  head -c $((512 - size % 512)) /dev/zero >>"$tmp"
fi

mv -f "$tmp" "$out"
printf '%s\n' "$key" >"$stamp.tmp.$$" && mv -f "$stamp.tmp.$$" "$stamp"
echo "initramfs: $out ($(stat -c %s "$out") bytes, $(wc -l <"$work/entries") entries)" >&2
