# vmctl: `make demo` sets up a fresh machine and boots a microVM; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export VMCTL_CACHE ?= /var/cache/vmctl
BUILD := $(CURDIR)/build
SHARE := $(BUILD)/share/vmctl
CARGO ?= cargo
GUEST_TARGET := x86_64-unknown-linux-gnu

.PHONY: all deps build vmctl agent guest-tools kernel initramfs guestimage bundles testguests testbins testhost demo test \
        test-harness lint bench clean install uninstall

all: build

# Host packages the build and the tests need (installed only when missing).
deps:
	resources/deps.sh

build: vmctl agent kernel initramfs guestimage testguests testbins guest-tools bundles

vmctl:
	$(CARGO) build --release -p vmctl
	install -D -m 755 target/release/vmctl $(BUILD)/bin/vmctl

# The guest init/agent: a static binary (glibc, crt-static), built apart so the flag reaches only it.
agent:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -p vmctl-agent \
	  --target $(GUEST_TARGET) --target-dir target/guest
	install -D -m 755 target/guest/$(GUEST_TARGET)/release/vmctl-init $(SHARE)/vmctl-init

# Static programs the tests run inside guests (every binary of tests/guest-tools).
guest-tools:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -p guest-tools \
	  --target $(GUEST_TARGET) --target-dir target/guest
	mkdir -p $(BUILD)/tests/guest-tools
	for src in tests/guest-tools/src/bin/*.rs; do \
	  [ -e "$$src" ] || continue; bin=$$(basename "$$src" .rs); \
	  install -m 755 target/guest/$(GUEST_TARGET)/release/$$bin $(BUILD)/tests/guest-tools/$$bin; \
	done

kernel:
	resources/kernel/build.sh $(SHARE)

initramfs: agent
	resources/initramfs/build.sh $(SHARE)/vmctl-init $(SHARE)/initramfs.img

# The guest system of container VMs: the agent and busybox in a read-only erofs image (pmem, DAX).
guestimage: agent
	resources/guestimage/build.sh $(SHARE)/vmctl-init $(SHARE)/guest.erofs

# The busybox OCI bundle the runtime's tests and benchmarks use.
bundles: vmctl
	resources/bundles/busybox.sh $(BUILD)/tests/bundles/busybox

testguests:
	resources/testguests/build.sh $(BUILD)/tests/guests

# Integration test binaries, copied where the test host (or a plain shell) can run them without cargo.
testbins:
	resources/build-testbins.sh $(BUILD)/tests

testhost:
	resources/testhost/build

test-harness: testhost
	resources/testhost/test-harness

# `make install [PREFIX=/usr/local] [DESTDIR=]`: vmctl and the guest files it boots.
PREFIX ?= /usr/local
install: build
	resources/install.sh $(BUILD) $(DESTDIR)$(PREFIX)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/vmctl
	rm -rf $(DESTDIR)$(PREFIX)/share/vmctl

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo: deps build
	resources/demo.sh

test: deps build
	resources/test.sh

bench: deps build
	resources/bench/boot-latency
	resources/bench/lifecycle

clean:
	rm -rf $(BUILD) target
