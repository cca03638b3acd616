//! A vCPU thread: configure the vCPU, then run it and serve its exits, obeying the VM's orders
//! (run, pause, stop) between KVM_RUNs, until the VM stops.

mod report;

use std::sync::{Arc, RwLock};

use boot::{cpuid, lapic, msrs, regs, EntryPoint, GuestMemory};
use devices::{Bus, StopReason, StopSignal, Timeline};
use kvm_bindings::{
    kvm_run, CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use seccompiler::BpfProgram;

use crate::control::{Order, VcpuControl};
use crate::kick::KickTarget;
use crate::seccomp;
use crate::stats::{ExitKind, VcpuCounters};

/// Where the boot vCPU starts; the others wait for the guest's INIT-SIPI-SIPI.
#[derive(Clone, Copy)]
pub struct BootEntry {
    pub entry: EntryPoint,
    pub cr3: u64,
}

pub struct Vcpu {
    pub index: u8,
    pub count: u8,
    pub fd: VcpuFd,
    pub base_cpuid: Arc<CpuId>,
    pub boot: Option<BootEntry>,
    pub pio: Arc<Bus>,
    /// Behind a lock only so a device can be attached while the VM runs; the vCPUs only read it.
    pub mmio: Arc<RwLock<Bus>>,
    pub mem: GuestMemory,
    pub stop: Arc<StopSignal>,
    pub control: Arc<VcpuControl>,
    pub counters: Arc<VcpuCounters>,
    pub timeline: Arc<Timeline>,
    /// Installed by the thread on itself before it touches the guest (see `seccomp`).
    pub seccomp: Arc<BpfProgram>,
    /// Whether the host's KVM is kvm-pvm (for the hint on unservable exits), found out before
    /// the filter forbids looking.
    pub host_is_kvm_pvm: bool,
}

impl Vcpu {
    fn configure(&self) -> boot::Result<()> {
        cpuid::apply(
            &self.fd,
            &cpuid::for_vcpu(&self.base_cpuid, self.index, self.count),
        )?;
        msrs::setup_msrs(&self.fd)?;
        regs::setup_fpu(&self.fd)?;
        lapic::setup_lint(&self.fd)?;
        if let Some(b) = self.boot {
            regs::setup_boot_vcpu(&self.fd, b.entry, b.cr3)?;
        }
        Ok(())
    }

    /// The thread body: never returns an error, it stops the VM with the reason instead.
    pub fn run(mut self) {
        // Kicks set this vCPU's immediate_exit from now on; the guard clears the pointer before
        // `self` (and the kvm_run mapping with it) goes at the end of this function.
        let run: *mut kvm_run = self.fd.get_kvm_run();
        let kick = KickTarget::set(run);
        let control = self.control.clone();
        let me = control.register(usize::from(self.index));
        if let Err(e) = seccomp::install(&self.seccomp) {
            self.stop.stop(StopReason::Failed(format!(
                "vcpu {}: cannot install its seccomp filter: {e}",
                self.index
            )));
            return;
        }
        if let Err(e) = self.configure() {
            self.stop
                .stop(StopReason::Failed(format!("vcpu {}: {e}", self.index)));
            return;
        }
        let index = self.index;
        self.timeline.record(|| format!("vcpu {index} first entry"));
        loop {
            // Clear a kick before reading the orders, never after: one landing from here on
            // makes the KVM_RUN below return at once, so no order goes unseen.
            kick.rearm();
            match control.order() {
                Order::Run => {}
                Order::Pause => {
                    me.park();
                    continue;
                }
                Order::Stop => break,
            }
            if self.stop.is_stopping() {
                break;
            }
            if let Some(reason) = self.run_once(run) {
                self.stop.stop(reason);
                break;
            }
        }
    }

    /// Runs the vCPU until its next exit and serves it; `Some` when the VM must stop. `run` is
    /// this vCPU's `kvm_run`, for what kvm-ioctls's exit leaves out.
    fn run_once(&mut self, run: *const kvm_run) -> Option<StopReason> {
        let index = self.index;
        let fail = |what: String| Some(StopReason::Failed(format!("vcpu {index}: {what}")));
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            // A kick (EINTR), or a vCPU not yet runnable (EAGAIN): back to the orders.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => return None,
            Err(e) => return fail(format!("KVM_RUN failed: {e}")),
        };
        let kind = match exit {
            VcpuExit::IoIn(..) | VcpuExit::IoOut(..) => ExitKind::Io,
            VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => ExitKind::Mmio,
            _ => ExitKind::Other,
        };
        self.counters.count(kind);
        match exit {
            // A string instruction (`rep insb`, `rep outsb`) comes as one exit with `count`
            // accesses of `size` bytes each, which the device sees one by one.
            VcpuExit::IoIn(port, data) => {
                for access in data.chunks_mut(io_size(run)) {
                    self.pio.read(u64::from(port), access);
                }
                None
            }
            VcpuExit::IoOut(port, data) => {
                for access in data.chunks(io_size(run)) {
                    self.pio.write(u64::from(port), access);
                }
                None
            }
            VcpuExit::MmioRead(addr, data) => {
                read_bus(&self.mmio).read(addr, data);
                None
            }
            VcpuExit::MmioWrite(addr, data) => {
                read_bus(&self.mmio).write(addr, data);
                None
            }
            // A triple fault: the guest met an exception it could not deliver. Never the
            // guest's own way to reset (that is the i8042 line), so a crash, with the state.
            VcpuExit::Shutdown => Some(StopReason::Crashed(self.describe_triple_fault())),
            VcpuExit::Hlt => Some(StopReason::Shutdown),
            VcpuExit::SystemEvent(kind, _) => match kind {
                KVM_SYSTEM_EVENT_RESET => Some(StopReason::Reset),
                KVM_SYSTEM_EVENT_SHUTDOWN => Some(StopReason::Shutdown),
                KVM_SYSTEM_EVENT_CRASH => fail("the guest reported a crash".into()),
                other => fail(format!("unexpected KVM system event {other}")),
            },
            // Edge-only IOAPIC routes never ask for EOIs; one arriving anyway needs no action.
            VcpuExit::Intr | VcpuExit::IrqWindowOpen | VcpuExit::IoapicEoi(_) => None,
            VcpuExit::InternalError => fail(self.describe_internal_error()),
            VcpuExit::FailEntry(reason, cpu) => fail(format!(
                "KVM could not enter the guest (hardware entry failure reason {reason:#x} on host cpu {cpu}){}",
                self.where_and_hint()
            )),
            other => {
                let name = format!("{other:?}");
                fail(format!(
                    "KVM exit the VMM cannot serve: {name}{}",
                    self.where_and_hint()
                ))
            }
        }
    }
}

/// The MMIO bus for one access; a poisoned lock still holds a usable bus.
fn read_bus(bus: &RwLock<Bus>) -> std::sync::RwLockReadGuard<'_, Bus> {
    bus.read().unwrap_or_else(|p| p.into_inner())
}

/// The size of each access of the port I/O exit in `run` (1, 2 or 4 bytes).
fn io_size(run: *const kvm_run) -> usize {
    // SAFETY: `run` is this vCPU's kvm_run mapping, live for the thread's whole loop; the exit
    // was KVM_EXIT_IO, so the `io` member of the union is the one KVM filled. Only the header is
    // read, not the data area the exit's slice refers to.
    let size = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.io.size).read() };
    usize::from(size).clamp(1, 4)
}
