//! What the host can afford to give a VM: its RAM, and the kernel memory KVM spends on mapping
//! pmem files.

use crate::{Error, Result};

/// KVM's bookkeeping for a memory slot (reverse maps, large-page info) costs host kernel memory in
/// proportion to the slot's size, invisible in the VMM's RSS: a sparse 1 TiB pmem file took
/// ~2.5 GiB of MemAvailable (about 1/400 of its size) and 3-4 s to register.
const SLOT_COST_DIVISOR: u64 = 400;
/// At most 1/8 of the host's available memory may go to that bookkeeping for one VM's pmem files.
const SLOT_COST_SHARE: u64 = 8;

/// The host's RAM in MiB (0 when unknown).
pub fn host_memory_mib() -> u64 {
    // SAFETY: sysinfo only writes into the struct we pass.
    unsafe {
        let mut info: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut info) != 0 {
            return 0;
        }
        (info.totalram as u64).saturating_mul(u64::from(info.mem_unit)) >> 20
    }
}

/// MemAvailable from /proc/meminfo, in MiB (None when unknown).
fn mem_available_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib >> 10)
}

/// Checks that pmem regions of `total_bytes` in all cost KVM no more than the host can spare.
pub fn check_pmem(total_bytes: u64) -> Result<()> {
    let Some(available_mib) = mem_available_mib() else {
        return Ok(()); // no /proc: nothing to measure against
    };
    check_pmem_against(total_bytes, available_mib)
}

fn check_pmem_against(total_bytes: u64, available_mib: u64) -> Result<()> {
    let cost_mib = (total_bytes / SLOT_COST_DIVISOR) >> 20;
    if cost_mib > available_mib / SLOT_COST_SHARE {
        return Err(Error::PmemTooCostly {
            total_gib: total_bytes >> 30,
            cost_mib,
            available_mib,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmem_is_refused_once_its_bookkeeping_passes_an_eighth_of_available_memory() {
        // Arrange: 16 GiB available, so 2 GiB of bookkeeping, ~800 GiB of pmem.
        let available_mib = 16 << 10;
        // Act
        let small = check_pmem_against(512 << 30, available_mib);
        let large = check_pmem_against(1 << 40, available_mib);
        // Assert
        assert!(small.is_ok());
        let message = large.unwrap_err().to_string();
        assert!(message.contains("1024 GiB"), "{message}");
        assert!(message.contains("2621 MiB"), "{message}");
        assert!(message.contains("--disk"), "{message}");
    }
}
