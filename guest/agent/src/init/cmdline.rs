//! What vmctl-init reads from the kernel command line (/proc/cmdline).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use thiserror::Error;

use super::base64url::{self, DecodeError};

/// The parameter carrying the command: base64url (no padding) of its argv joined by NUL bytes.
pub const CMD_PARAM: &str = "vmctl.cmd=";
/// The terminal type given to the workload, when the command line has one.
pub const TERM_PARAM: &str = "TERM=";
/// `vmctl.tty=1`: the host side is a terminal; keep the console a cooked terminal for the command
/// (echo, line editing, Ctrl-C) instead of a raw byte pipe.
pub const TTY_PARAM: &str = "vmctl.tty=";
/// `vmctl.agent=1` (guest_protocol::AGENT_CMDLINE_FLAG): run as the container agent.
pub const AGENT_PARAM: &str = "vmctl.agent=";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CmdError {
    #[error("{CMD_PARAM} is not valid base64url: {0}")]
    Base64(#[from] DecodeError),
    #[error("{CMD_PARAM} holds an empty command")]
    Empty,
}

/// The parts of the kernel command line vmctl-init acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BootArgs {
    /// The raw (still encoded) value of the last `vmctl.cmd=`, if any.
    pub cmd: Option<String>,
    /// The value of the last `TERM=`, if any.
    pub term: Option<String>,
    /// The last `vmctl.tty=` was `1`.
    pub tty: bool,
    /// The last `vmctl.agent=` was `1`.
    pub agent: bool,
}

impl BootArgs {
    /// Parses the kernel command line. Parameters are separated by white space; double quotes group
    /// white space into a parameter and are dropped, as the kernel does. The whole line is searched,
    /// including what follows `--`. The last occurrence of a parameter wins.
    pub fn parse(cmdline: &str) -> BootArgs {
        let mut args = BootArgs::default();
        for param in split_params(cmdline) {
            if let Some(v) = param.strip_prefix(CMD_PARAM) {
                args.cmd = Some(v.to_owned());
            } else if let Some(v) = param.strip_prefix(TERM_PARAM) {
                args.term = Some(v.to_owned());
            } else if let Some(v) = param.strip_prefix(TTY_PARAM) {
                args.tty = v == "1";
            } else if let Some(v) = param.strip_prefix(AGENT_PARAM) {
                args.agent = v == "1";
            }
        }
        args
    }

    /// The command's argv, decoded, or `None` when there is no `vmctl.cmd=`.
    pub fn argv(&self) -> Option<Result<Vec<OsString>, CmdError>> {
        self.cmd.as_deref().map(decode_argv)
    }
}

/// Splits a kernel command line into parameters (quotes removed).
fn split_params(cmdline: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut started = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    params.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        params.push(cur);
    }
    params
}

/// Decodes `vmctl.cmd=`'s value into argv: base64url, then split at every NUL byte (so an argument
/// may be empty, but the program name may not).
pub fn decode_argv(encoded: &str) -> Result<Vec<OsString>, CmdError> {
    let bytes = base64url::decode(encoded.as_bytes())?;
    let argv: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    if argv[0].is_empty() {
        return Err(CmdError::Empty);
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_command() {
        let a = BootArgs::parse("console=ttyS0 reboot=k panic=-1 quiet\n");
        assert_eq!(a, BootArgs::default());
        assert!(a.argv().is_none());
    }

    #[test]
    fn command_and_term() {
        // "sh\0-c\0echo hi"
        let a = BootArgs::parse(
            "console=ttyS0 quiet TERM=xterm-256color virtio_mmio.device=4K@0xd0000000:5 vmctl.cmd=c2gALWMAZWNobyBoaQ\n",
        );
        assert_eq!(a.term.as_deref(), Some("xterm-256color"));
        assert_eq!(a.argv().unwrap().unwrap(), os(&["sh", "-c", "echo hi"]));
    }

    #[test]
    fn last_occurrence_wins_and_after_double_dash() {
        let a = BootArgs::parse("vmctl.cmd=Zm9v TERM=a -- TERM=b vmctl.cmd=dHJ1ZQ");
        assert_eq!(a.term.as_deref(), Some("b"));
        assert_eq!(a.argv().unwrap().unwrap(), os(&["true"]));
    }

    #[test]
    fn quotes_and_whitespace() {
        let a = BootArgs::parse("  foo=\"a b  c\"\tTERM=\"vt100\"   x \n");
        assert_eq!(a.term.as_deref(), Some("vt100"));
        assert_eq!(
            split_params("  foo=\"a b  c\"\tbar   \"\" x"),
            ["foo=a b  c", "bar", "", "x"]
        );
    }

    #[test]
    fn similar_names_are_not_ours() {
        let tty = BootArgs::parse("vmctl.tty=1 vmctl.cmd=dHJ1ZQ");
        assert!(tty.tty);
        assert!(!BootArgs::parse("vmctl.tty=0").tty);
        let a = BootArgs::parse("xvmctl.cmd=Zm9v vmctl.cmdline=Zm9v MYTERM=x");
        assert_eq!(a, BootArgs::default());
    }

    #[test]
    fn agent_mode_follows_the_protocol_flag() {
        let line = format!(
            "console=ttyS0 ro {} quiet",
            guest_protocol::AGENT_CMDLINE_FLAG
        );
        assert!(BootArgs::parse(&line).agent);
        assert!(!BootArgs::parse("vmctl.agent=0").agent);
        assert!(!BootArgs::parse("vmctl.agent=1 vmctl.agent=0").agent);
        assert!(!BootArgs::parse("xvmctl.agent=1").agent);
    }

    #[test]
    fn argv_edge_cases() {
        // "a\0\0b": empty argument in the middle
        assert_eq!(decode_argv("YQAAYg").unwrap(), os(&["a", "", "b"]));
        // "a\0": trailing empty argument
        assert_eq!(decode_argv("YQA").unwrap(), os(&["a", ""]));
        // non-UTF-8 bytes pass through
        assert_eq!(
            decode_argv("_w").unwrap(),
            vec![OsString::from_vec(vec![0xff])]
        );
        assert_eq!(decode_argv(""), Err(CmdError::Empty));
        assert_eq!(decode_argv("AGE"), Err(CmdError::Empty)); // "\0a"
        assert!(matches!(decode_argv("a*b"), Err(CmdError::Base64(_))));
    }
}
