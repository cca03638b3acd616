//! Checks of single values the host sends: paths, share tags, names, sysctl keys. Each failure is
//! an `Error::Invalid` saying what is wrong.

use crate::error::Error;

/// The longest string the agent takes for a path, a name or a value it passes to the kernel.
pub const MAX_STRING: usize = 4096;

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

/// A string that can become a C string: no NUL byte, at most [`MAX_STRING`] bytes.
pub fn c_safe(what: &str, s: &str) -> Result<(), Error> {
    if s.contains('\0') {
        return Err(invalid(format!("{what} {s:?} holds a NUL byte")));
    }
    if s.len() > MAX_STRING {
        return Err(invalid(format!(
            "{what} is {} bytes long (at most {MAX_STRING})",
            s.len()
        )));
    }
    Ok(())
}

/// An absolute path inside the container.
pub fn absolute(what: &str, path: &str) -> Result<(), Error> {
    c_safe(what, path)?;
    if !path.starts_with('/') {
        return Err(invalid(format!("{what} {path:?} is not an absolute path")));
    }
    Ok(())
}

/// A share's tag: it names a directory under /run/vmctl/shares and goes into 9P's mount options,
/// so 1-128 printable ASCII characters without `/`, `,` or white space, and not `.` or `..`.
pub fn tag(tag: &str) -> Result<(), Error> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag != "."
        && tag != ".."
        && tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b',');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "share tag {tag:?} is not 1-128 printable ASCII characters without '/', ',' or spaces"
        )))
    }
}

/// A single file name (no `/`, not `.` or `..`, not empty).
pub fn file_name(what: &str, name: &str) -> Result<(), Error> {
    c_safe(what, name)?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(invalid(format!("{what} {name:?} is not a plain file name")));
    }
    Ok(())
}

/// A host or domain name: at most 64 bytes (the kernel's limit), no NUL.
pub fn uts_name(what: &str, name: &str) -> Result<(), Error> {
    c_safe(what, name)?;
    if name.len() > 64 {
        return Err(invalid(format!("{what} {name:?} is longer than 64 bytes")));
    }
    Ok(())
}

/// A sysctl key (`net.ipv4.ip_forward`, or with slashes) to its path under /proc/sys.
pub fn sysctl_path(key: &str) -> Result<String, Error> {
    c_safe("sysctl key", key)?;
    let rel = key.replace('.', "/");
    let ok = !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != ".." && c.bytes().all(|b| b.is_ascii_graphic()));
    if !ok {
        return Err(invalid(format!("sysctl key {key:?} is not a valid key")));
    }
    Ok(format!("/proc/sys/{rel}"))
}

/// A list of at most `max` entries.
pub fn at_most<T>(what: &str, list: &[T], max: usize) -> Result<(), Error> {
    if list.len() > max {
        return Err(invalid(format!("{} {what} (at most {max})", list.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_nul_free() {
        assert!(absolute("destination", "/etc/hosts").is_ok());
        assert!(absolute("destination", "etc/hosts").is_err());
        assert!(absolute("destination", "/a\0b").is_err());
        assert!(absolute("destination", &format!("/{}", "a".repeat(MAX_STRING))).is_err());
    }

    #[test]
    fn tags_are_safe_names() {
        for good in ["rootfs", "m1", "vol-data_2.x", "a:b"] {
            assert!(tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a,b", "a b", "é", &"x".repeat(129)] {
            assert!(tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sysctl_keys_become_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("kernel/msgmax").unwrap(),
            "/proc/sys/kernel/msgmax"
        );
        for bad in ["", "net..x", "../x", "/net/x", "a b"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_and_uts_names() {
        assert!(file_name("file", "hosts").is_ok());
        assert!(file_name("file", "a/b").is_err());
        assert!(file_name("file", "..").is_err());
        assert!(uts_name("hostname", "abc").is_ok());
        assert!(uts_name("hostname", &"h".repeat(65)).is_err());
    }
}
