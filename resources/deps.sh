#!/bin/bash
# Installs the Debian packages the build, the tests and the test host need, only those missing.
set -euo pipefail
pkgs=(
  qemu-system-x86 qemu-utils     # the test host (TCG) and the benchmark peer
  python3                        # the test host's wakeup-watchdog
  linux-source bc flex bison libelf-dev libssl-dev xz-utils lz4  # the guest kernel
  busybox-static cpio            # the initramfs
  e2fsprogs erofs-utils          # disk images
  debootstrap                    # the test host's root filesystem
  kmod iproute2 time gcc binutils
)
# The Docker tests and demo run where the Linux guests run: inside the test host (its own packages)
# when this host's KVM cannot run them, here otherwise.
if ! "$(dirname "$0")/testhost/need-testhost" >/dev/null; then
  pkgs+=(docker.io containerd runc iptables)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
