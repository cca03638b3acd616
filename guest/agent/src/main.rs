//! `vmctl-init`: PID 1 of vmctl's default initramfs and of container VMs. See `vmctl_agent`.

fn main() {
    vmctl_agent::run()
}
