//! The agent's own messages: one line each on the console (stderr), `vmctl-agent: ...`.

use std::io::Write;

pub fn log(msg: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "vmctl-agent: {msg}");
}

/// `log!("...", args)`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::agent::log::log(format_args!($($arg)*)) };
}
