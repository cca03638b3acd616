//! A vCPU thread: configure the vCPU, then run it and serve its exits until the VM stops.

use std::sync::Arc;

use boot::{cpuid, lapic, msrs, regs, EntryPoint, GuestMemory};
use devices::{Bus, StopReason, StopSignal, Timeline};
use kvm_bindings::{
    CpuId, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};

use seccompiler::BpfProgram;

use crate::kvm::KVM_PVM_HINT;
use crate::seccomp;

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
    pub mmio: Arc<Bus>,
    pub mem: GuestMemory,
    pub stop: Arc<StopSignal>,
    pub timeline: Arc<Timeline>,
    /// Installed by the thread on itself before it touches the guest (see `seccomp`).
    pub seccomp: Arc<BpfProgram>,
    /// Whether the host's KVM is kvm-pvm (for the hint on unservable exits), found out before
    /// the filter forbids looking.
    pub host_is_kvm_pvm: bool,
}

const MAX_INSN_BYTES: usize = 15;
const X86_CR0_PG: u64 = 1 << 31;

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
        while !self.stop.is_stopping() {
            if let Some(reason) = self.run_once() {
                self.stop.stop(reason);
                break;
            }
        }
    }

    /// Runs the vCPU until its next exit and serves it; `Some` when the VM must stop.
    fn run_once(&mut self) -> Option<StopReason> {
        let index = self.index;
        let fail = |what: String| Some(StopReason::Failed(format!("vcpu {index}: {what}")));
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                self.pio.read(u64::from(port), data);
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                self.pio.write(u64::from(port), data);
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                self.mmio.read(addr, data);
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                self.mmio.write(addr, data);
                None
            }
            Ok(VcpuExit::Shutdown) | Ok(VcpuExit::Hlt) => Some(StopReason::Shutdown),
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                KVM_SYSTEM_EVENT_RESET => Some(StopReason::Reset),
                KVM_SYSTEM_EVENT_SHUTDOWN => Some(StopReason::Shutdown),
                KVM_SYSTEM_EVENT_CRASH => fail("the guest reported a crash".into()),
                other => fail(format!("unexpected KVM system event {other}")),
            },
            // Edge-only IOAPIC routes never ask for EOIs; one arriving anyway needs no action.
            Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) | Ok(VcpuExit::IoapicEoi(_)) => None,
            Ok(VcpuExit::InternalError) => fail(self.describe_internal_error()),
            Ok(VcpuExit::FailEntry(reason, cpu)) => fail(format!(
                "KVM could not enter the guest (hardware entry failure reason {reason:#x} on host cpu {cpu}){}",
                self.where_and_hint()
            )),
            Ok(other) => {
                let name = format!("{other:?}");
                fail(format!(
                    "KVM exit the VMM cannot serve: {name}{}",
                    self.where_and_hint()
                ))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => fail(format!("KVM_RUN failed: {e}")),
        }
    }

    fn describe_internal_error(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so KVM filled the `internal` member
        // of the exit union (and `emulation_failure`, which shares its first fields, when the
        // suberror says emulation); both are plain integers.
        let (internal, emulation) = unsafe {
            (
                run.__bindgen_anon_1.internal,
                run.__bindgen_anon_1.emulation_failure,
            )
        };
        let kind = match internal.suberror {
            KVM_INTERNAL_ERROR_EMULATION => "emulation failure",
            KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
            KVM_INTERNAL_ERROR_DELIVERY_EV => "exit while delivering an event",
            KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected hardware exit",
            _ => "unknown",
        };
        let mut insn = Vec::new();
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION
            && emulation.ndata >= 3
            && emulation.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0
        {
            // SAFETY: the flag says KVM filled the instruction-bytes member.
            let bytes = unsafe { emulation.__bindgen_anon_1.__bindgen_anon_1 };
            let n = usize::from(bytes.insn_size).min(MAX_INSN_BYTES);
            insn.extend_from_slice(&bytes.insn_bytes[..n]);
        }
        format!(
            "KVM exit the VMM cannot serve: internal error, suberror {} ({kind}){}",
            internal.suberror,
            self.where_and_hint_with(insn)
        )
    }

    fn where_and_hint(&self) -> String {
        self.where_and_hint_with(Vec::new())
    }

    /// ", at RIP 0x..., instruction bytes .." plus the kvm-pvm hint when it applies.
    fn where_and_hint_with(&self, mut insn: Vec<u8>) -> String {
        let mut out = String::new();
        if let Ok(r) = self.fd.get_regs() {
            out.push_str(&format!(" at RIP {:#x}", r.rip));
            if insn.is_empty() {
                insn = self.instruction_at(r.rip);
            }
        }
        if !insn.is_empty() {
            let hex: Vec<String> = insn.iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!(", instruction bytes {}", hex.join(" ")));
        }
        if self.host_is_kvm_pvm {
            out.push_str("; ");
            out.push_str(KVM_PVM_HINT);
        }
        out
    }

    /// Reads up to 15 bytes at the guest's RIP, following its page tables if paging is on.
    fn instruction_at(&self, rip: u64) -> Vec<u8> {
        let Ok(sregs) = self.fd.get_sregs() else {
            return Vec::new();
        };
        let linear = sregs.cs.base.wrapping_add(rip);
        let phys = if sregs.cr0 & X86_CR0_PG != 0 {
            match self.fd.translate_gva(linear) {
                Ok(t) if t.valid != 0 => t.physical_address,
                _ => return Vec::new(),
            }
        } else {
            linear
        };
        let mut bytes = Vec::with_capacity(MAX_INSN_BYTES);
        for i in 0..MAX_INSN_BYTES as u64 {
            match self.mem.read_obj::<u8>(GuestAddress(phys.wrapping_add(i))) {
                Ok(b) => bytes.push(b),
                Err(_) => break,
            }
        }
        bytes
    }
}
