//! `vmctl-init`: PID 1 of vmctl's default initramfs. See `init` and docs/design.md.

mod init;

fn main() {
    init::run()
}
