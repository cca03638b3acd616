#!/bin/bash
# Builds the guest system of container VMs: a read-only, uncompressed erofs image (so the guest
# can map it with DAX straight from the host's page cache) holding the agent as /init and
# busybox-static with its applet links. Every container VM maps the same file as virtio-pmem, so
# all VMs share its pages on the host.
#
#   resources/guestimage/build.sh AGENT_BINARY OUTFILE
#
# Rebuilt only when an input (this script, busybox, the agent) changes; their hash is kept in
# .OUTFILE.inputs next to OUTFILE. Same inputs, same bytes (fixed timestamps, UUID, owners).
set -euo pipefail
export LC_ALL=C
die() { echo "guestimage: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 AGENT_BINARY OUTFILE"
agent=$1
out=$2
busybox=/bin/busybox
script=${BASH_SOURCE[0]}
[ -f "$agent" ] || die "$agent does not exist (build it with 'make agent')"

missing=()
for p in busybox-static erofs-utils binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (run 'make deps' as root)"
  echo "guestimage: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
    || die "apt-get install ${missing[*]} failed"
fi
readelf -l "$agent" | grep -q 'program interpreter' && die "$agent is dynamically linked; it must be static"
readelf -l "$busybox" | grep -q 'program interpreter' && die "$busybox is not static (install busybox-static)"

stamp=$(dirname "$out")/.$(basename "$out").inputs
key=$(cat "$script" "$busybox" "$agent" | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
  echo "guestimage: $out is up to date" >&2
  exit 0
fi

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-guestimage.XXXXXX")
tmp=$out.tmp.$$
trap 'rm -rf "$work" "$tmp"' EXIT
root=$work/root
# Mount points the agent uses: the root is read-only, so they must exist in the image.
mkdir -p "$root"/{bin,sbin,dev,etc,proc,sys,run,tmp,mnt,root,usr/bin,usr/sbin}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
strip -o "$root/init" "$agent"
chmod 0755 "$root/init"
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
"$busybox" --list-full | sed -n -e 's#^usr/##' -e '\#^s\{0,1\}bin/[^/]*$#p' | sort -u \
  | grep -vx 'bin/busybox' | while read -r applet; do
    ln -s /bin/busybox "$root/$applet"
  done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
find "$root" -exec touch -h -d @0 {} +
mkfs.erofs --quiet --all-root -T0 -U 6d8e8f7a-1c2b-4e5f-9a0b-766d63746c00 -x-1 "$tmp" "$root" \
  || die "mkfs.erofs failed"
mv -f "$tmp" "$out"
printf '%s\n' "$key" >"$stamp.tmp.$$" && mv -f "$stamp.tmp.$$" "$stamp"
echo "guestimage: $out ($(stat -c %s "$out") bytes)" >&2
