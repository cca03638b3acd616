//! How a test that cannot run here says so, the same way in every crate: `skip_if!(reason)`
//! returns from the test after reporting `SKIPPED <binary>::<test>: <reason>` on stderr (past the
//! test harness's capture) and, when `VMCTL_SKIP_LOG` names a file, as one line appended to it.
//! `make test` counts those lines, prints them, and fails on a skip its allow-list does not name
//! (resources/test.sh, resources/test-skips.allow).

use std::io::Write;

/// The variable naming the file skips are appended to.
pub const LOG_VAR: &str = "VMCTL_SKIP_LOG";

/// `<binary>::<test>` for the running test: the test binary's name without cargo's hash suffix
/// (`tiny_guests-0123456789abcdef` and `build/tests/tiny_guests` are both `tiny_guests`), and the
/// test's name, which the harness gives its thread.
pub fn test_id() -> String {
    let exe = std::env::args().next().unwrap_or_default();
    let file = exe.rsplit('/').next().unwrap_or_default();
    let binary = match file.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name
        }
        _ => file,
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    format!("{binary}::{test}")
}

/// Reports the running test as skipped because of `why`.
pub fn report(why: &str) {
    let line = format!("SKIPPED {}: {}\n", test_id(), why.replace('\n', " "));
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(LOG_VAR) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        // One write per line: O_APPEND keeps lines from parallel tests whole.
        if let Ok(mut log) = log {
            let _ = log.write_all(line.as_bytes());
        }
    }
}

/// Returns from the test, reported as skipped, when `$why` is `Some(reason)`.
#[macro_export]
macro_rules! skip_if {
    ($why:expr) => {
        if let Some(why) = $why {
            $crate::report(&why);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_the_binary_without_its_hash_and_the_test() {
        // Act
        let id = test_id();
        // Assert: this binary is test_skip-<hash>.
        assert_eq!(
            id,
            "test_skip::tests::the_id_names_the_binary_without_its_hash_and_the_test"
        );
    }
}
