//! A process spec, checked and turned into what its set-up applies: C strings, limits, capability
//! bits. Built in the agent before forking, so the child only applies it.

use std::ffi::CString;

use guest_protocol::{ProcessSpec, WindowSize};

use super::caps::CapBits;
use super::check;
use super::rlimits::{self, Limit};
use crate::error::Error;

/// Limits on list sizes (a frame already bounds the total to 1 MiB).
const MAX_ARGS: usize = 65536;
const MAX_ENV: usize = 65536;
const MAX_GROUPS: usize = 65536;
const MAX_RLIMITS: usize = 64;
/// umask when the spec gives none (runc's).
pub const DEFAULT_UMASK: u32 = 0o022;

#[derive(Clone, Debug)]
pub struct ProcessPlan {
    /// args[0], the program to look up in PATH.
    pub program: String,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// The PATH of the process's environment, which finds `program`.
    pub path_env: Option<String>,
    pub cwd: CString,
    pub terminal: bool,
    pub console_size: Option<WindowSize>,
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
    pub additional_gids: Vec<u32>,
    pub rlimits: Vec<Limit>,
    pub no_new_privileges: bool,
    /// `None`: the capabilities are left as the kernel's uid rules make them.
    pub caps: Option<CapBits>,
    pub oom_score_adj: Option<i32>,
}

impl ProcessPlan {
    /// Checks `spec` (every value, as the host may send anything) and prepares it.
    pub fn new(spec: &ProcessSpec) -> Result<ProcessPlan, Error> {
        let program = spec
            .args
            .first()
            .ok_or_else(|| {
                Error::Invalid("the process has no args (args[0] is the program)".into())
            })?
            .clone();
        check::at_most("args", &spec.args, MAX_ARGS)?;
        check::at_most("env entries", &spec.env, MAX_ENV)?;
        check::at_most("additional gids", &spec.user.additional_gids, MAX_GROUPS)?;
        check::at_most("rlimits", &spec.rlimits, MAX_RLIMITS)?;
        let argv = to_cstrings("argument", &spec.args)?;
        for e in &spec.env {
            if !e.contains('=') {
                return Err(Error::Invalid(format!(
                    "environment entry {e:?} is not NAME=VALUE"
                )));
            }
        }
        let env = to_cstrings("environment entry", &spec.env)?;
        check::absolute("cwd", &spec.cwd)?;
        let umask = spec.user.umask.unwrap_or(DEFAULT_UMASK);
        if umask > 0o777 {
            return Err(Error::Invalid(format!("umask {umask:#o} is above 0777")));
        }
        if let Some(adj) = spec.oom_score_adj {
            if !(-1000..=1000).contains(&adj) {
                return Err(Error::Invalid(format!(
                    "oom_score_adj {adj} is outside -1000..=1000"
                )));
            }
        }
        let caps = spec
            .capabilities
            .as_ref()
            .map(CapBits::from_spec)
            .transpose()?;
        Ok(ProcessPlan {
            path_env: super::lookpath::path_of(&spec.env).map(str::to_owned),
            program,
            argv,
            env,
            cwd: cstring("cwd", &spec.cwd)?,
            terminal: spec.terminal,
            console_size: spec.console_size,
            uid: spec.user.uid,
            gid: spec.user.gid,
            umask,
            additional_gids: spec.user.additional_gids.clone(),
            rlimits: rlimits::parse(&spec.rlimits)?,
            no_new_privileges: spec.no_new_privileges,
            caps,
            oom_score_adj: spec.oom_score_adj,
        })
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{what} {s:?} holds a NUL byte")))
}

fn to_cstrings(what: &str, list: &[String]) -> Result<Vec<CString>, Error> {
    list.iter().map(|s| cstring(what, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_protocol::{Capabilities, ErrorKind, Rlimit, User};

    fn spec() -> ProcessSpec {
        ProcessSpec {
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "TERM=xterm".into()],
            cwd: "/".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_docker_like_process_is_prepared() {
        let mut s = spec();
        s.user = User {
            uid: 1000,
            gid: 100,
            umask: None,
            additional_gids: vec![10, 20],
        };
        s.capabilities = Some(Capabilities {
            bounding: vec!["CAP_KILL".into()],
            ..Default::default()
        });
        s.rlimits = vec![Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            soft: 100,
            hard: 200,
        }];

        let p = ProcessPlan::new(&s).unwrap();

        assert_eq!(p.program, "sh");
        assert_eq!(p.path_env.as_deref(), Some("/usr/bin:/bin"));
        assert_eq!(p.umask, DEFAULT_UMASK);
        assert_eq!(p.caps.unwrap().bounding, 1 << 5);
        assert_eq!(p.rlimits, vec![(7, 100, 200)]);
        assert_eq!(p.argv.len(), 3);
    }

    #[test]
    fn bad_values_are_invalid_not_fatal() {
        type Change = Box<dyn Fn(&mut ProcessSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("no args", Box::new(|s| s.args.clear())),
            ("NUL in arg", Box::new(|s| s.args.push("a\0b".into()))),
            ("env without =", Box::new(|s| s.env.push("JUSTNAME".into()))),
            ("relative cwd", Box::new(|s| s.cwd = "tmp".into())),
            ("umask", Box::new(|s| s.user.umask = Some(0o1777))),
            ("oom", Box::new(|s| s.oom_score_adj = Some(5000))),
            (
                "capability",
                Box::new(|s| {
                    s.capabilities = Some(Capabilities {
                        effective: vec!["CAP_NOPE".into()],
                        ..Default::default()
                    })
                }),
            ),
            (
                "rlimit",
                Box::new(|s| {
                    s.rlimits.push(Rlimit {
                        kind: "RLIMIT_X".into(),
                        soft: 1,
                        hard: 1,
                    })
                }),
            ),
        ];
        for (name, change) in cases {
            let mut s = spec();
            change(&mut s);
            let err = ProcessPlan::new(&s).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{name}: {err}");
        }
    }
}
