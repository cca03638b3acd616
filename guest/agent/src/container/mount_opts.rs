//! A mount's option strings (`ro`, `nosuid`, `rbind`, `rprivate`, `mode=755`, ...) to mount(2)'s
//! flags, the propagation changes that follow it, and the file system's data string, as runc
//! parses them.

use libc::c_ulong;

use crate::error::Error;

/// The parsed options of one mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags (MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC, ...).
    pub flags: c_ulong,
    /// Propagation changes applied after the mount, in order (MS_PRIVATE | MS_REC, ...).
    pub propagation: Vec<c_ulong>,
    /// The file system's own options, comma-separated (`mode=755,size=65536k`).
    pub data: String,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub fn is_readonly(&self) -> bool {
        self.flags & libc::MS_RDONLY != 0
    }

    /// The flags a bind mount must be remounted with to take effect: anything beyond
    /// MS_BIND/MS_REC/MS_REMOUNT (read-only, nosuid, ...). `None` when there is nothing to apply.
    pub fn bind_remount_flags(&self) -> Option<c_ulong> {
        let extra = self.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        (extra != 0).then_some(self.flags | libc::MS_REMOUNT | libc::MS_BIND)
    }
}

/// (name, clears the flag, flag), runc's table.
const FLAGS: [(&str, bool, c_ulong); 34] = [
    ("acl", false, libc::MS_POSIXACL),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("defaults", false, 0),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("iversion", false, libc::MS_I_VERSION),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("loud", true, libc::MS_SILENT),
    ("mand", false, libc::MS_MANDLOCK),
    ("noacl", true, libc::MS_POSIXACL),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("noiversion", true, libc::MS_I_VERSION),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("nosymfollow", false, libc::MS_NOSYMFOLLOW),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("silent", false, libc::MS_SILENT),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("sync", false, libc::MS_SYNCHRONOUS),
];

const PROPAGATION: [(&str, c_ulong); 8] = [
    ("private", libc::MS_PRIVATE),
    ("shared", libc::MS_SHARED),
    ("slave", libc::MS_SLAVE),
    ("unbindable", libc::MS_UNBINDABLE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Options runc knows that this agent does not apply: refused rather than passed to the kernel as
/// file-system data (where they would fail the mount with a less clear error).
const UNSUPPORTED: [&str; 4] = ["idmap", "ridmap", "rro", "rrw"];

/// Options that only mean something to runc itself and are ignored.
const IGNORED: [&str; 1] = ["tmpcopyup"];

/// Parses the spec's options of one mount.
pub fn parse(options: &[String]) -> Result<MountOptions, Error> {
    let mut parsed = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_str();
        if let Some(&(_, clear, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if clear {
                parsed.flags &= !flag;
            } else {
                parsed.flags |= flag;
            }
        } else if let Some(&(_, flag)) = PROPAGATION.iter().find(|(n, _)| *n == opt) {
            parsed.propagation.push(flag);
        } else if UNSUPPORTED.contains(&opt) || (opt.starts_with("rno") && opt.len() > 3) {
            return Err(Error::Invalid(format!(
                "mount option {opt:?} is not supported by the vmctl agent"
            )));
        } else if IGNORED.contains(&opt) {
        } else if opt.is_empty() || opt.contains(',') {
            return Err(Error::Invalid(format!("malformed mount option {opt:?}")));
        } else {
            data.push(opt);
        }
    }
    parsed.data = data.join(",");
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation_of_a_docker_dev_tmpfs() {
        let o = parse(&opts(&["nosuid", "strictatime", "mode=755", "size=65536k"])).unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
        assert!(!o.is_bind());
    }

    #[test]
    fn devpts_options_become_data() {
        let o = parse(&opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]))
        .unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn a_read_only_rbind_with_propagation() {
        let o = parse(&opts(&["rbind", "rprivate", "ro"])).unwrap();
        assert!(o.is_bind() && o.is_readonly());
        assert_eq!(o.flags & libc::MS_REC, libc::MS_REC);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        let remount = o.bind_remount_flags().unwrap();
        assert_eq!(remount & libc::MS_REMOUNT, libc::MS_REMOUNT);
        assert_eq!(remount & libc::MS_RDONLY, libc::MS_RDONLY);
    }

    #[test]
    fn a_plain_bind_needs_no_remount() {
        let o = parse(&opts(&["rbind", "rw", "rprivate"])).unwrap();
        assert_eq!(o.bind_remount_flags(), None);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = parse(&opts(&["ro", "rw", "nosuid", "suid", "noexec"])).unwrap();
        assert_eq!(o.flags, libc::MS_NOEXEC);
    }

    #[test]
    fn unsupported_and_malformed_options_are_invalid() {
        assert!(parse(&opts(&["rro"])).is_err());
        assert!(parse(&opts(&["rnosuid"])).is_err());
        assert!(parse(&opts(&["mode=755,uid=0"])).is_err());
        assert!(parse(&opts(&[""])).is_err());
        assert_eq!(
            parse(&opts(&["tmpcopyup"])).unwrap(),
            MountOptions::default()
        );
    }
}
