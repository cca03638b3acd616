//! `--log` and `--log-format`: runc's log lines, which containerd's shim reads back (the last
//! `"level":"error"` line becomes Docker's error text).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::oci::time;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Mutex<File>,
    format: Format,
    min: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sends log lines to `path` (appended) from now on; `debug` lets debug lines through.
/// A log that cannot be opened is reported on stderr and otherwise ignored, as runc does not
/// fail a command for it either.
pub fn init(path: &Path, format: Format, debug: bool) {
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => {
            let _ = LOGGER.set(Logger {
                file: Mutex::new(file),
                format,
                min: if debug { Level::Debug } else { Level::Info },
            });
        }
        Err(e) => eprintln!("vmctl: cannot open the log {}: {e}", path.display()),
    }
}

pub fn log(level: Level, msg: &str) {
    let Some(logger) = LOGGER.get() else { return };
    if level < logger.min {
        return;
    }
    let line = match logger.format {
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.name().into());
            obj.insert("msg".into(), msg.into());
            obj.insert("time".into(), time::now().into());
            format!("{}\n", serde_json::Value::Object(obj))
        }
        Format::Text => format!(
            "time=\"{}\" level={} msg={:?}\n",
            time::now(),
            level.name(),
            msg
        ),
    };
    if let Ok(mut f) = logger.file.lock() {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn error(msg: &str) {
    log(Level::Error, msg)
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
