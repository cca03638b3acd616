#!/bin/bash
# The Docker part of `make demo`: a private dockerd (its own data root, exec root, socket and
# bridge, so it never touches a daemon already on the machine) with vmctl as the runtime `vmctl`,
# the busybox bundle imported as an image, and a container in a microVM answering on a published
# port. Everything is removed at the end.
#   resources/demo-docker.sh VMCTL ROOTFS
set -euo pipefail
die() { echo "demo-docker: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 VMCTL ROOTFS"
vmctl=$(realpath "$1"); rootfs=$2
for b in dockerd docker containerd; do command -v $b >/dev/null || die "$b missing (make deps)"; done
dir=$(mktemp -d /tmp/vmctl-demo-docker.XXXXXX)
bridge=vmctl-demo0
sock=unix://$dir/docker.sock
cleanup() {
  docker -H "$sock" rm -f web >/dev/null 2>&1 || true
  [ -f "$dir/dockerd.pid" ] && kill "$(cat "$dir/dockerd.pid")" 2>/dev/null || true
  for _ in $(seq 100); do [ -e "$dir/dockerd.pid" ] || break; sleep 0.1; done
  ip link del "$bridge" 2>/dev/null || true
  grep -o " $dir[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip link del "$bridge" 2>/dev/null || true
ip link add name "$bridge" type bridge
ip addr add 10.213.200.1/24 dev "$bridge"
ip link set "$bridge" up
printf '{"runtimes":{"vmctl":{"path":"%s"}}}\n' "$vmctl" > "$dir/daemon.json"
dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
  --pidfile "$dir/dockerd.pid" -H "$sock" --bridge "$bridge" >"$dir/dockerd.log" 2>&1 &
for i in $(seq 600); do docker -H "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
docker -H "$sock" version >/dev/null 2>&1 || { tail "$dir/dockerd.log" >&2; die "dockerd did not start"; }
tar -C "$rootfs" -c . | docker -H "$sock" import -c 'ENV PATH=/bin:/sbin' - demo/busybox >/dev/null
d() { echo "+ docker $*"; docker -H "$sock" "$@"; }
d run --rm --runtime vmctl demo/busybox sh -c 'echo "hello from $(uname -r) in a microVM"; ip -o -4 addr show eth0'
d run -d --runtime vmctl --name web -p 18080:80 demo/busybox \
  sh -c 'mkdir -p /www && echo "served from a microVM" > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
echo "+ wget -qO- http://127.0.0.1:18080/"
for i in $(seq 100); do busybox wget -qO- http://127.0.0.1:18080/ 2>/dev/null && break; sleep 0.2; done
d top web
