//! The guest kernel command line, and how a COMMAND travels on it.

/// Used when `--cmdline` is not given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";

/// The command line: the user's (or the default), then the COMMAND as
/// `vmctl.cmd=<base64url of argv joined by NUL>` for the guest's init. With `terminal` (the
/// host's $TERM when stdin is a terminal), `vmctl.tty=1 TERM=...` ask init for a cooked console.
pub fn build(user: Option<&str>, command: &[String], terminal: Option<&str>) -> String {
    let mut line = user.unwrap_or(DEFAULT_CMDLINE).trim().to_owned();
    if !command.is_empty() {
        let mut push = |s: &str| {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(s);
        };
        if let Some(term) = terminal {
            push("vmctl.tty=1");
            // A TERM with spaces or quotes cannot travel on the command line; init defaults it.
            if !term.is_empty() && term.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
                push(&format!("TERM={term}"));
            }
        }
        push(&format!(
            "vmctl.cmd={}",
            base64url(command.join("\0").as_bytes())
        ));
    }
    line
}

/// Base64 with the URL-safe alphabet and no padding: nothing in it is special to the kernel's
/// command-line parser.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn command_is_appended_to_the_default() {
        let line = build(None, &["uname".into(), "-r".into()], None);
        assert_eq!(
            line,
            format!("{DEFAULT_CMDLINE} vmctl.cmd={}", base64url(b"uname\0-r"))
        );
    }

    #[test]
    fn user_cmdline_replaces_the_default_whole() {
        assert_eq!(build(Some("status=3"), &[], Some("xterm")), "status=3");
    }

    #[test]
    fn a_terminal_asks_for_a_cooked_console() {
        let line = build(Some("quiet"), &["sh".into()], Some("xterm-256color"));
        assert_eq!(
            line,
            format!(
                "quiet vmctl.tty=1 TERM=xterm-256color vmctl.cmd={}",
                base64url(b"sh")
            )
        );
        let odd = build(Some(""), &["sh".into()], Some("bad term"));
        assert_eq!(odd, format!("vmctl.tty=1 vmctl.cmd={}", base64url(b"sh")));
    }
}
