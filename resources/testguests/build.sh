#!/bin/bash
# Builds the tiny bare-metal test guests (resources/testguests/*.S) into OUTDIR with the system's
# gcc/ld. Rebuilds a guest only when its source, common.h, the linker scripts or this script changed.
# Usage: resources/testguests/build.sh OUTDIR
set -euo pipefail
die() { echo "testguests: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
src=$(cd "$(dirname "$0")" && pwd)
out=$1
for tool in gcc ld; do
  command -v "$tool" >/dev/null || die "$tool not found (install gcc and binutils: make deps)"
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
shared=("$src/common.h" "$src/guest.ld" "$src/bzimage.ld" "$src/build.sh")

# up_to_date TARGET SOURCE...: TARGET exists and is newer than every SOURCE.
up_to_date() {
  local target=$1 f
  shift
  [ -e "$target" ] || return 1
  for f in "$@"; do
    [ "$target" -nt "$f" ] || return 1
  done
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
built=0
for s in "$src"/*.S; do
  name=$(basename "$s" .S)
  target=$out/$name
  up_to_date "$target" "$s" "${shared[@]}" && continue
  gcc -m64 -c -nostdlib -fno-pic -Wa,--noexecstack -I"$src" -o "$tmp/$name.o" "$s" \
    || die "assembling $s failed"
  if [ "$name" = bzimage ]; then
    # A raw bzImage: setup sectors, then the protected-mode part (linked at 1 MiB).
    ld -m elf_x86_64 -static -nostdlib --build-id=none -T "$src/bzimage.ld" --oformat binary \
      -o "$tmp/$name" "$tmp/$name.o" || die "linking $name failed"
  else
    ld -m elf_x86_64 -static -nostdlib --build-id=none -z noexecstack -z max-page-size=4096 --no-warn-rwx-segments \
      -T "$src/guest.ld" -o "$tmp/$name" "$tmp/$name.o" || die "linking $name failed"
  fi
  mv -f "$tmp/$name" "$target"	# atomic: concurrent readers see the old or the new guest
  built=$((built + 1))
done
echo "testguests: $built built, in $out"
