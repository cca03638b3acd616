# Shared by the test host's scripts (sourced, not run).
# shellcheck shell=bash
TH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TH_REPO=$(cd "$TH_DIR/../.." && pwd)
VMCTL_CACHE=${VMCTL_CACHE:-/var/cache/vmctl}
TH_CACHE=$VMCTL_CACHE/testhost
TH_SUITE=bookworm

th_die() { echo "testhost: $*" >&2; exit 125; }
th_say() { echo "testhost: $*" >&2; }
th_now() { date +%s.%N; }
th_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# The package list, without comments and blank lines.
th_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$TH_DIR/packages"; }

# Every file that goes into the cached image: a change to any of them makes a new cache key.
th_inputs() {
  (cd "$TH_DIR" && find packages build minird-init rootfs src -type f | LC_ALL=C sort)
}

# The debootstrap base (slow part) depends only on the suite, the package list and the mirror layout.
th_base_key() { { echo "$TH_SUITE"; th_packages; } | sha256sum | cut -c1-16; }

# The finished image depends on the base and on every build input.
th_key() {
  { th_base_key; cd "$TH_DIR" && th_inputs | while read -r f; do echo "== $f"; cat "$f"; done; } \
    | sha256sum | cut -c1-16
}

# Host packages the test host itself needs.
TH_HOST_PKGS=(debootstrap qemu-system-x86 qemu-utils e2fsprogs gcc libc6-dev)
th_host_deps() {
  local missing=() p
  for p in "${TH_HOST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || th_die "missing host packages (${missing[*]}); run as root to install them"
  th_say "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
