//! Resource limit names (as the OCI spec writes them, `RLIMIT_NOFILE`) to resource numbers.

use guest_protocol::Rlimit;

use crate::error::Error;

const NAMES: [(&str, libc::c_int); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU as libc::c_int),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as libc::c_int),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as libc::c_int),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as libc::c_int),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as libc::c_int),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as libc::c_int),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as libc::c_int),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as libc::c_int),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as libc::c_int),
    ("RLIMIT_AS", libc::RLIMIT_AS as libc::c_int),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as libc::c_int),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as libc::c_int),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as libc::c_int),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as libc::c_int),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as libc::c_int),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as libc::c_int),
];

/// The resource number of the limit `name`.
pub fn resource(name: &str) -> Option<libc::c_int> {
    NAMES.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

/// A limit to apply: (resource, soft, hard).
pub type Limit = (libc::c_int, u64, u64);

/// Checks the spec's limits and turns them into resource numbers.
pub fn parse(limits: &[Rlimit]) -> Result<Vec<Limit>, Error> {
    limits
        .iter()
        .map(|l| {
            let r = resource(&l.kind)
                .ok_or_else(|| Error::Invalid(format!("unknown rlimit {:?}", l.kind)))?;
            if l.soft > l.hard {
                return Err(Error::Invalid(format!(
                    "rlimit {}: the soft limit {} is above the hard limit {}",
                    l.kind, l.soft, l.hard
                )));
            }
            Ok((r, l.soft, l.hard))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(kind: &str, soft: u64, hard: u64) -> Rlimit {
        Rlimit {
            kind: kind.into(),
            soft,
            hard,
        }
    }

    #[test]
    fn names_map_to_resources() {
        assert_eq!(resource("RLIMIT_NOFILE"), Some(7));
        assert_eq!(resource("RLIMIT_NPROC"), Some(6));
        assert_eq!(resource("RLIMIT_RTTIME"), Some(15));
        assert_eq!(resource("NOFILE"), None);
    }

    #[test]
    fn limits_are_checked() {
        let ok = parse(&[limit("RLIMIT_NOFILE", 1024, 4096)]).unwrap();
        assert_eq!(ok, vec![(7, 1024, 4096)]);
        assert!(parse(&[limit("RLIMIT_NOFILE", 5, 4)]).is_err());
        assert!(parse(&[limit("RLIMIT_FOO", 1, 1)]).is_err());
    }
}
