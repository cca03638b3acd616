//! What a vCPU says about an exit it cannot serve: the reason, where the guest was (RIP and the
//! instruction bytes there) and, on kvm-pvm hosts, why; and about a triple fault: its registers.

use kvm_bindings::{
    KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
};
use vm_memory::{Bytes, GuestAddress};

use super::Vcpu;
use crate::kvm::KVM_PVM_HINT;

const MAX_INSN_BYTES: usize = 15;
/// Where a vCPU starts after INIT (CS:IP F000:FFF0): no vmctl guest runs there.
const RESET_RIP: u64 = 0xFFF0;
const RESET_CS: u16 = 0xF000;
/// On AMD SVM the hardware leaves the vCPU's state undefined after a shutdown, and KVM INITs the
/// vCPU before it reports the exit; Intel VT-x and kvm-pvm keep the state at the fault.
const REGISTERS_LOST: &str = "the registers at the fault are lost: this host's KVM reset the vCPU \
     before reporting the shutdown (AMD SVM does; Intel VT-x keeps them); below, the reset state";
const X86_CR0_PG: u64 = 1 << 31;

impl Vcpu {
    /// "triple fault on vcpu N" and, on the lines after, the vCPU's registers as the fault left
    /// them: what a kernel developer needs to find the faulting code.
    pub(super) fn describe_triple_fault(&self) -> String {
        let mut out = format!(
            "the guest crashed: triple fault on vcpu {} (an exception the CPU could not deliver)",
            self.index
        );
        let regs = self.fd.get_regs();
        let sregs = self.fd.get_sregs();
        if let (Ok(r), Ok(s)) = (&regs, &sregs) {
            if r.rip == RESET_RIP && s.cs.selector == RESET_CS {
                out.push_str(&format!("\n  {REGISTERS_LOST}"));
            }
        }
        match regs {
            Ok(r) => {
                out.push_str(&format!(
                    "\n  rip={:#018x} rsp={:#018x} rflags={:#010x}\n  \
                     rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n  \
                     rsi={:#018x} rdi={:#018x} rbp={:#018x}\n  \
                     r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}\n  \
                     r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}",
                    r.rip,
                    r.rsp,
                    r.rflags,
                    r.rax,
                    r.rbx,
                    r.rcx,
                    r.rdx,
                    r.rsi,
                    r.rdi,
                    r.rbp,
                    r.r8,
                    r.r9,
                    r.r10,
                    r.r11,
                    r.r12,
                    r.r13,
                    r.r14,
                    r.r15
                ));
                let insn = self.instruction_at(r.rip);
                if !insn.is_empty() {
                    let hex: Vec<String> = insn.iter().map(|b| format!("{b:02x}")).collect();
                    out.push_str(&format!("\n  instruction bytes at rip: {}", hex.join(" ")));
                }
            }
            Err(e) => out.push_str(&format!("\n  (general registers unreadable: {e})")),
        }
        match sregs {
            Ok(s) => out.push_str(&format!(
                "\n  cr0={:#018x} cr2={:#018x} cr3={:#018x} cr4={:#018x} efer={:#x}\n  \
                 cs={:#06x} ss={:#06x} ds={:#06x} gdt={:#x}/{:#x} idt={:#x}/{:#x} (base/limit)",
                s.cr0,
                s.cr2,
                s.cr3,
                s.cr4,
                s.efer,
                s.cs.selector,
                s.ss.selector,
                s.ds.selector,
                s.gdt.base,
                s.gdt.limit,
                s.idt.base,
                s.idt.limit
            )),
            Err(e) => out.push_str(&format!("\n  (control registers unreadable: {e})")),
        }
        out
    }

    pub(super) fn describe_internal_error(&mut self) -> String {
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

    pub(super) fn where_and_hint(&self) -> String {
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
