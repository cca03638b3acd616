#!/bin/bash
# `make demo` after `make deps build`: boot a microVM running a command and print its boot
# timeline, then run containers under Docker in microVMs (resources/demo-docker.sh) -- directly
# where KVM can run Linux, inside the test host where it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
demo='set -e
echo "+ vmctl boot --timings -- uname -a"
vmctl boot --timings -- uname -a
echo "+ vmctl boot --cpus 2 --memory 256 -- sh -c \"nproc; grep MemTotal /proc/meminfo\""
vmctl boot --cpus 2 --memory 256 -- sh -c "nproc; grep MemTotal /proc/meminfo"'
echo "+ vmctl boot --timings --kernel build/tests/guests/marker   (a tiny bare-metal guest, on this host's /dev/kvm)"
build/bin/vmctl boot --timings --kernel build/tests/guests/marker </dev/null
if reason=$(resources/testhost/need-testhost); then
  echo "Linux guests need the test host here: $reason"
  resources/testhost/build
  resources/testhost/run -- bash -c "$demo"
  resources/testhost/run -- bash -c "$(cat resources/demo-docker.sh)" demo-docker \
    /build/bin/vmctl /build/tests/bundles/busybox/rootfs
else
  PATH=$PWD/build/bin:$PATH bash -c "$demo"
  resources/demo-docker.sh build/bin/vmctl build/tests/bundles/busybox/rootfs
fi
