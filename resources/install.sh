#!/bin/bash
# install.sh BUILD DEST: installs vmctl and its guest files under DEST (= $DESTDIR$PREFIX):
# DEST/bin/vmctl and DEST/share/vmctl/{vmlinux,bzImage,initramfs.img,guest.erofs,vmctl-init},
# where vmctl looks first (<dir of the executable>/../share/vmctl).
# Every file is written beside its destination and renamed over it: a running container's VMM
# maps the kernel and the guest image from these files, so they must never change in place.
set -euo pipefail
die() { echo "install: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: install.sh BUILD DEST"
build=$1 dest=$2
files=(bin/vmctl share/vmctl/vmlinux share/vmctl/bzImage share/vmctl/initramfs.img
       share/vmctl/guest.erofs share/vmctl/vmctl-init)
for f in "${files[@]}"; do
  [ -f "$build/$f" ] || die "$build/$f is missing (run make build first)"
done
for f in "${files[@]}"; do
  mode=644
  case $f in bin/*|*/vmctl-init) mode=755 ;; esac
  target=$dest/$f
  mkdir -p "$(dirname "$target")"
  tmp=$(dirname "$target")/.$(basename "$target").tmp.$$
  trap 'rm -f "$tmp"' EXIT
  install -m "$mode" "$build/$f" "$tmp"
  mv -f "$tmp" "$target"
  trap - EXIT
done
echo "install: vmctl in $dest/bin, its guest kernel and images in $dest/share/vmctl"
