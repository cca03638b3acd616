//! Finds the program to run as Go's exec.LookPath does for runc: a name with a slash is used as it
//! is, any other is searched in the PATH of the process's own environment.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::sys;

/// runc's words for a program missing from every PATH directory.
pub const NOT_IN_PATH: &str = "executable file not found in $PATH";

/// The value of the last `PATH=` entry of `env`.
pub fn path_of(env: &[String]) -> Option<&str> {
    env.iter().rev().find_map(|e| e.strip_prefix("PATH="))
}

/// The file to execute for `program`: NotFound (a shell's 127) or NotExecutable (126) when there
/// is none. Checked with the calling process's effective ids, from its cwd and root.
pub fn look_path(program: &str, path: Option<&str>) -> Result<PathBuf, Error> {
    if program.is_empty() {
        return Err(not_found(program, NOT_IN_PATH.into()));
    }
    if program.contains('/') {
        return match executable(Path::new(program)) {
            Ok(()) => Ok(PathBuf::from(program)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(
                program,
                format!("stat {program}: {}", reason(&e)),
            )),
            Err(e) => Err(Error::NotExecutable {
                program: program.into(),
                reason: reason(&e),
            }),
        };
    }
    // Go: no PATH at all searches nothing; an empty entry is the current directory.
    for dir in path.map(|p| p.split(':')).into_iter().flatten() {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(not_found(program, NOT_IN_PATH.into()))
}

fn not_found(program: &str, reason: String) -> Error {
    Error::NotFound {
        program: program.into(),
        reason,
    }
}

/// "permission denied", "is a directory": the error's text without Rust's " (os error N)".
fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_ascii_lowercase()
}

/// Go's findExecutable: a file (not a directory) the effective ids may execute.
fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    sys::fs::eaccess(&sys::cpath(path)?, libc::X_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use guest_protocol::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// bin/ with `tool` (0755), `data` (0644) and `sub/` (a directory).
    fn scratch(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("vmctl-lookpath-{name}-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(bin.join("sub")).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), "x").unwrap();
        std::fs::set_permissions(bin.join("data"), std::fs::Permissions::from_mode(0o644)).unwrap();
        Dir(dir)
    }

    #[test]
    fn the_last_path_entry_wins() {
        let env = vec!["PATH=/a".to_string(), "X=1".into(), "PATH=/b:/c".into()];
        assert_eq!(path_of(&env), Some("/b:/c"));
        assert_eq!(path_of(&["PATHX=1".to_string()]), None);
    }

    #[test]
    fn a_name_is_searched_in_path_in_order() {
        let d = scratch("search");
        let bin = d.0.join("bin");
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(look_path("tool", Some(&path)).unwrap(), bin.join("tool"));
    }

    #[test]
    fn a_missing_path_is_reported_in_runcs_words() {
        // Arrange: Docker turns "no such file or directory" (Go's lowercase text) into 127.
        let program = "/nonexistent/program";
        // Act
        let err = look_path(program, None).unwrap_err();
        // Assert
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "exec: \"/nonexistent/program\": stat /nonexistent/program: no such file or directory"
        );
    }

    #[test]
    fn missing_not_executable_and_directories_in_path_are_not_found() {
        let d = scratch("missing");
        let path = d.0.join("bin").display().to_string();
        for name in ["nope", "data", "sub"] {
            let err = look_path(name, Some(&path)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{name}");
            assert_eq!(
                err.to_string(),
                format!("exec: \"{name}\": executable file not found in $PATH")
            );
        }
        assert_eq!(
            look_path("tool", None).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn a_path_with_a_slash_is_checked_as_it_is() {
        let d = scratch("slash");
        let bin = d.0.join("bin");
        let tool = bin.join("tool").display().to_string();
        assert_eq!(look_path(&tool, None).unwrap(), PathBuf::from(&tool));
        let missing = bin.join("nope").display().to_string();
        assert_eq!(
            look_path(&missing, None).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let dir = bin.join("sub").display().to_string();
        let err = look_path(&dir, None).unwrap_err();
        assert!(matches!(err, Error::NotExecutable { .. }), "{err}");
        assert!(err.to_string().ends_with("is a directory"), "{err}");
    }

    #[test]
    fn a_file_without_execute_permission_is_not_executable() {
        // root may execute any file with an x bit, and none without one
        let d = scratch("noexec");
        let data = d.0.join("bin").join("data").display().to_string();
        let err = look_path(&data, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotExecutable);
        assert!(err.to_string().ends_with("permission denied"), "{err}");
    }
}
