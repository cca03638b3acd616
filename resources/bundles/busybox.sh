#!/bin/bash
# Builds a minimal OCI bundle from busybox-static: OUTDIR/rootfs (busybox with its applet links,
# /etc/passwd and /etc/group with root and nobody, the usual empty directories) and
# OUTDIR/config.json (vmctl's default spec running `sh`, without a terminal). The tests copy it
# or mount it as an overlay's lower layer; `docker import` makes an image of the rootfs.
#
#   resources/bundles/busybox.sh OUTDIR
set -euo pipefail
export LC_ALL=C
die() { echo "bundle: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=$1
busybox=/bin/busybox
vmctl=${VMCTL:-$(dirname "$0")/../../build/bin/vmctl}
script=${BASH_SOURCE[0]}
readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter' && die "$busybox is not static (install busybox-static)"
[ -x "$vmctl" ] || die "$vmctl not found (make vmctl)"

stamp=$out/.inputs
key=$(cat "$script" "$busybox" | sha256sum | cut -d' ' -f1)
if [ -d "$out/rootfs" ] && [ -f "$out/config.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
  echo "bundle: $out is up to date" >&2
  exit 0
fi
rm -rf "$out.tmp"
root=$out.tmp/rootfs
mkdir -p "$root"/{bin,sbin,dev,etc,proc,sys,run,tmp,root,home,var/tmp,usr/bin,usr/sbin}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | sed -n -e 's#^usr/##' -e '\#^s\{0,1\}bin/[^/]*$#p' | sort -u \
  | grep -vx 'bin/busybox' | while read -r applet; do
    ln -s /bin/busybox "$root/$applet"
  done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
: >"$root/etc/hostname"
: >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
"$vmctl" spec --bundle "$out.tmp"
# No terminal, `sh` reading its stdin: the tests set args per case.
python3 - "$out.tmp/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["root"]["readonly"] = False
json.dump(c, open(p, "w"), indent=2)
PY
printf '%s\n' "$key" >"$out.tmp/.inputs"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "bundle: $out ($(find "$out/rootfs" | wc -l) entries)" >&2
