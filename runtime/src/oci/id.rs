//! Container ids, as runc accepts them.

use crate::Error;

/// The longest id accepted (runc has no limit; a socket path in the state directory must stay
/// under the kernel's 108 bytes, so the id is bounded well below that with a short --root).
pub const MAX_ID_LEN: usize = 64;

/// Checks that `id` is a container id runc would accept: letters, digits, `_`, `+`, `-` and `.`,
/// not `.` or `..`, at most [`MAX_ID_LEN`] characters.
pub fn validate(id: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id == "." || id == ".." || !id.chars().all(ok_char) {
        return Err(Error::Usage(format!(
            "invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'"
        )));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::Usage(format!(
            "invalid container id {id:?}: longer than {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for id in ["a", "c1", "ed66504a2a7c", "x_y+z-1.2"] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_paths_and_odd_characters() {
        for id in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(validate(id).is_err(), "{id}");
        }
    }
}
