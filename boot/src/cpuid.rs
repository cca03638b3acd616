//! CPUID for each vCPU: KVM's supported set, with the topology of an N-vCPU single-socket machine.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use crate::{Error, Result};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PERFMON: u32 = 0xA;
const LEAF_EXT_TOPOLOGY: u32 = 0xB;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1F;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001E;

const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// KVM's supported CPUID, fetched once per VM.
pub fn supported(kvm: &Kvm) -> Result<CpuId> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::SupportedCpuid)
}

/// Number of APIC-ID bits needed to number `count` cores.
fn id_bits(count: u8) -> u32 {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros()
}

fn is_amd(entries: &[kvm_cpuid_entry2]) -> bool {
    entries
        .iter()
        .find(|e| e.function == 0)
        .is_some_and(|e| [e.ebx, e.edx, e.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163])
}

/// KVM's supported CPUID plus what KVM emulates but leaves out of that list: the TSC-deadline
/// timer (KVM_CAP_TSC_DEADLINE_TIMER). Without it Linux calibrates and verifies the LAPIC timer
/// against the PIT, which costs hundreds of milliseconds under nested virtualization.
pub fn supported_with_emulated(kvm: &Kvm) -> Result<CpuId> {
    let mut cpuid = supported(kvm)?;
    if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
        for e in cpuid.as_mut_slice() {
            if e.function == LEAF_FEATURES {
                e.ecx |= ECX_TSC_DEADLINE;
            }
        }
    }
    Ok(cpuid)
}

/// The CPUID of vCPU `index` (its APIC ID) in a machine of `count` vCPUs: one socket, one thread
/// per core.
pub fn for_vcpu(base: &CpuId, index: u8, count: u8) -> CpuId {
    let mut cpuid = base.clone();
    let amd = is_amd(cpuid.as_slice());
    let apic_id = u32::from(index);
    let count32 = u32::from(count.max(1));
    for e in cpuid.as_mut_slice() {
        match e.function {
            LEAF_FEATURES => {
                // APIC ID, logical processors per package, CLFLUSH line size (8 x 8 bytes).
                e.ebx = (apic_id << 24) | ((count32 & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff);
                e.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS if !amd => {
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { count32 - 1 } else { 0 };
                e.eax = (e.eax & 0x3ff) | (sharing << 14) | ((count32 - 1) << 26);
            }
            LEAF_PERFMON => {
                // No virtual PMU: the guest must not program counters we do not back.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
                let (eax, ebx, level_type) = match e.index {
                    0 => (0, 1, LEVEL_TYPE_SMT),
                    1 => (id_bits(count), count32, LEVEL_TYPE_CORE),
                    _ => (0, 0, 0),
                };
                e.eax = eax;
                e.ebx = ebx;
                e.ecx = (level_type << 8) | (e.index & 0xff);
                e.edx = apic_id;
            }
            LEAF_AMD_SIZES if amd => {
                e.ecx = (e.ecx & !0xf0ff) | (id_bits(count) << 12) | (count32 - 1);
            }
            LEAF_AMD_EXT_APIC_ID if amd => {
                e.eax = apic_id;
                e.ebx = apic_id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
    cpuid
}

/// Gives the vCPU its CPUID.
pub fn apply(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<()> {
    vcpu.set_cpuid2(cpuid).map_err(|source| Error::Vcpu {
        what: "CPUID",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    fn base() -> CpuId {
        CpuId::from_entries(&[
            entry(0, 0),
            entry(LEAF_FEATURES, 0),
            entry(LEAF_EXT_TOPOLOGY, 0),
            entry(LEAF_EXT_TOPOLOGY, 1),
        ])
        .unwrap()
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn each_vcpu_gets_its_apic_id() {
        let cpuid = for_vcpu(&base(), 3, 4);
        assert_eq!(find(&cpuid, LEAF_FEATURES, 0).ebx >> 24, 3);
        assert_eq!(find(&cpuid, LEAF_EXT_TOPOLOGY, 0).edx, 3);
        assert_ne!(find(&cpuid, LEAF_FEATURES, 0).edx & EDX_HTT, 0);
    }

    #[test]
    fn topology_counts_every_vcpu() {
        let cpuid = for_vcpu(&base(), 0, 6);
        let core = find(&cpuid, LEAF_EXT_TOPOLOGY, 1);
        assert_eq!(core.ebx, 6);
        assert_eq!(core.eax, 3);
        assert_eq!((core.ecx >> 8) & 0xff, LEVEL_TYPE_CORE);
        assert_eq!((find(&cpuid, LEAF_FEATURES, 0).ebx >> 16) & 0xff, 6);
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let cpuid = for_vcpu(&base(), 0, 1);
        assert_eq!(find(&cpuid, LEAF_FEATURES, 0).edx & EDX_HTT, 0);
        assert_ne!(find(&cpuid, LEAF_FEATURES, 0).ecx & ECX_HYPERVISOR, 0);
    }
}
