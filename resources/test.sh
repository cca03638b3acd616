#!/bin/bash
# `make test` after `make deps build`: lint, unit tests, tests against real KVM, the test host's own
# tests, and the Linux-guest tests -- directly where KVM is hardware-backed, inside the test host
# where it is not (resources/testhost/need-testhost decides).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }
failed=()

step "format and lint"
cargo fmt --all -- --check || failed+=(fmt)
cargo clippy --workspace --all-targets -- -D warnings || failed+=(clippy)

step "unit tests and tiny-guest tests, directly on this host"
# The integration tests use build/bin/vmctl; those needing a Linux guest skip here on kvm-pvm.
cargo test --workspace --release -- --test-threads=2 || failed+=(cargo-test)

step "test host"
resources/testhost/build
resources/testhost/test-harness || failed+=(test-harness)

step "integration tests with Linux guests"
bins=$(cd build/tests && find . -maxdepth 1 -type f -perm -u+x -printf '%f\n' | sort | tr '\n' ' ')
[ -n "$bins" ] || { echo "test: no test binaries in build/tests (run make build)" >&2; exit 1; }
runner='rc=0; for t in '"$bins"'; do echo "--- $t"; "$TESTS/$t" --test-threads=2 || { echo "FAILED: $t"; rc=1; }; done; exit $rc'
if reason=$(resources/testhost/need-testhost); then
  echo "running them inside the test host: $reason"
  # bounded well inside CI's 90 minutes (the suite takes ~6 min in the test host)
  TESTHOST_TIMEOUT=${TESTHOST_TIMEOUT:-2400} resources/testhost/run -e TESTS=/build/tests -- bash -c "$runner" || failed+=(linux-tests)
else
  echo "running them directly: $reason"
  TESTS=$PWD/build/tests bash -c "$runner" || failed+=(linux-tests)
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nmake test: FAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nmake test: all passed\n'
