//! Shared code of the guest-side test programs (one per file in `src/bin/`). Built static by
//! `make guest-tools` into `build/tests/guest-tools/`, and put into a guest's initramfs by the
//! tests (`vmctl_tests::linux::initramfs_with`).
