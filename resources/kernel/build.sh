#!/bin/bash
# Builds the vmctl guest kernel (vmlinux with the PVH note, and bzImage) from Debian's linux-source-6.1
# with the fragment vmctl.config, and puts both into OUTDIR.
#
#   resources/kernel/build.sh OUTDIR
#
# Cached under ${VMCTL_CACHE:-/var/cache/vmctl}/kernel/<source-version>-<hash>/, the hash covering the
# fragment, this script and the compiler version: a second build only links the cached files into OUTDIR.
# A build goes to a staging directory renamed into place at the end, so a failed or interrupted build is
# never taken for a cached one. The extracted source (src-<version>/) and the object tree (obj-<version>/)
# are kept, so a changed fragment rebuilds only what the change touches.
set -euo pipefail

die() { echo "kernel: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/vmctl.config
srcpkg=linux-source-6.1
tarball=/usr/src/$srcpkg.tar.xz
export ARCH=x86_64

# --- build dependencies (installed only when missing) ---------------------------------------------
pkgs=("$srcpkg" bc flex bison libelf-dev libssl-dev xz-utils lz4 make gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (run 'make deps' as root, or apt-get install them)"
  echo "kernel: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
    || die "apt-get install ${missing[*]} failed"
fi
[ -r "$tarball" ] || die "$tarball is missing although $srcpkg is installed"

# --- cache key --------------------------------------------------------------------------------------
srcver=$(dpkg-query -W -f='${Version}' "$srcpkg")
hash=$({ cat "$fragment" "${BASH_SOURCE[0]}"; gcc --version | head -n1; } | sha256sum | cut -c1-16)
key=$srcver-$hash
root=${VMCTL_CACHE:-/var/cache/vmctl}/kernel
cache=$root/$key

install_outputs() {
  mkdir -p "$out" || die "cannot create $out"
  local f
  for f in vmlinux bzImage; do
    [ "$cache/$f" -ef "$out/$f" ] && continue
    # hard link when the cache is on the same file system, else copy; renamed into place either way
    ln -f "$cache/$f" "$out/.$f.tmp.$$" 2>/dev/null || cp -f "$cache/$f" "$out/.$f.tmp.$$" \
      || die "cannot write $out/$f"
    mv -f "$out/.$f.tmp.$$" "$out/$f"
  done
}

if [ -f "$cache/vmlinux" ] && [ -f "$cache/bzImage" ]; then
  install_outputs
  echo "kernel: $key (cached) -> $out" >&2
  exit 0
fi

mkdir -p "$root" 2>/dev/null && [ -w "$root" ] \
  || die "cannot write the cache $root (set VMCTL_CACHE to a writable directory)"
# one build at a time per cache; whoever waited finds the result of the one before
exec 9>"$root/.lock"
flock 9 || die "cannot lock $root/.lock"
if [ -f "$cache/vmlinux" ] && [ -f "$cache/bzImage" ]; then
  install_outputs
  echo "kernel: $key (cached) -> $out" >&2
  exit 0
fi

start=$SECONDS
src=$root/src-$srcver
obj=$root/obj-$srcver
stage=$root/.stage-$key.$$
trap 'rm -rf "$stage" "$src.tmp.$$"' EXIT

# --- source: extracted once per source version, renamed into place when complete ------------------
if [ ! -f "$src/linux/Makefile" ]; then
  echo "kernel: extracting $tarball" >&2
  rm -rf "$src.tmp.$$"
  mkdir -p "$src.tmp.$$"
  tar -xf "$tarball" -C "$src.tmp.$$" || die "cannot extract $tarball"
  mv "$src.tmp.$$/$srcpkg" "$src.tmp.$$/linux"
  rm -rf "$src"
  mv "$src.tmp.$$" "$src"
fi
mkdir -p "$obj"
log=$obj/build.log

# --- configuration: allnoconfig with the fragment as its input, then olddefconfig ------------------
# merge_config.sh -n runs `make allnoconfig KCONFIG_ALLCONFIG=<fragment>`: the fragment's values are
# fixed first and every other option that can be off is off.
echo "kernel: configuring ($key)" >&2
(cd "$src/linux" && scripts/kconfig/merge_config.sh -n -O "$obj" "$fragment") >"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; die "configuration failed (log: $log)"; }
make -C "$src/linux" O="$obj" olddefconfig >>"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; die "make olddefconfig failed (log: $log)"; }

# every line of the fragment must hold in the final .config
dropped=()
while IFS= read -r line; do
  case $line in
    CONFIG_*=*)
      grep -qxF -- "$line" "$obj/.config" || dropped+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo absent))")
      ;;
    "# CONFIG_"*" is not set")
      name=${line#\# }; name=${name%% *}
      if grep -q "^$name=" "$obj/.config"; then dropped+=("$line (got: $(grep "^$name=" "$obj/.config"))"); fi
      ;;
  esac
done <"$fragment"
if [ ${#dropped[@]} -gt 0 ]; then
  printf 'kernel: not in the final .config: %s\n' "${dropped[@]}" >&2
  die "${#dropped[@]} option(s) of $fragment were dropped by Kconfig (missing dependency?)"
fi

# --- build --------------------------------------------------------------------------------------------
echo "kernel: building vmlinux and bzImage with $(nproc) jobs (log: $log)" >&2
make -C "$src/linux" O="$obj" -j"$(nproc)" KBUILD_BUILD_USER=vmctl KBUILD_BUILD_HOST=vmctl \
  vmlinux bzImage >>"$log" 2>&1 \
  || { grep -E 'error|Error' "$log" | tail -n 20 >&2; die "kernel build failed (log: $log)"; }
readelf -n "$obj/vmlinux" 2>/dev/null | grep -q 'Xen.*0x00000012' \
  || die "$obj/vmlinux has no PVH (XEN_ELFNOTE_PHYS32_ENTRY) note"

mkdir -p "$stage"
cp "$obj/vmlinux" "$stage/vmlinux"
cp "$obj/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$obj/.config" "$stage/config"
cp "$fragment" "$stage/vmctl.config"
rm -rf "$cache"
mv -T "$stage" "$cache" || die "cannot move the build into $cache"
trap - EXIT
echo "kernel: built $key in $((SECONDS - start)) s" >&2
install_outputs
echo "kernel: $key -> $out" >&2
