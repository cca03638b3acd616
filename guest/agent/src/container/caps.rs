//! Capability names (as the OCI spec writes them, `CAP_CHOWN`) to numbers and bit sets.

use guest_protocol::Capabilities;

use crate::error::Error;

/// linux/capability.h, in number order: the name of capability N is `NAMES[N]`.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of capability `name` (case-insensitive; `CAP_` may be left out, as runc accepts).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// The set of capabilities `names` as bits (bit N for capability N).
pub fn bits(names: &[String]) -> Result<u64, Error> {
    names.iter().try_fold(0u64, |acc, name| {
        number(name)
            .map(|n| acc | (1u64 << n))
            .ok_or_else(|| Error::Invalid(format!("unknown capability {name:?}")))
    })
}

/// The five sets of a process, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapBits {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapBits {
    pub fn from_spec(caps: &Capabilities) -> Result<CapBits, Error> {
        Ok(CapBits {
            bounding: bits(&caps.bounding)?,
            effective: bits(&caps.effective)?,
            permitted: bits(&caps.permitted)?,
            inheritable: bits(&caps.inheritable)?,
            ambient: bits(&caps.ambient)?,
        })
    }
}

/// The highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap), or
/// the highest this table knows when that cannot be read.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
        .min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_kernels_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_AUDIT_WRITE"), Some(29));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("cap_kill"), Some(5));
        assert_eq!(number("MKNOD"), Some(27));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn sets_become_bits_and_unknown_names_are_invalid() {
        let names = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
        assert_eq!(bits(&names).unwrap(), 0b10_0001);
        let bad = vec!["CAP_CHOWN".to_string(), "CAP_FLY".to_string()];
        let err = bits(&bad).unwrap_err();
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
    }
}
