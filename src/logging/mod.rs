//! Logs on standard error: text or JSON; under journald without timestamps
//! or colours and with a `<N>` syslog priority on each line, so that
//! `journalctl -p warning` finds warnings. The level comes from `RUST_LOG`
//! or `[log] level`, and a reload applies a changed `[log] level`.

mod addr;
mod batch;
mod plain;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub(crate) use addr::LogAddr;
pub(crate) use batch::batched;
use plain::PlainLine;

use crate::config::{LogConfig, LogFormat};

type SetLevel = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The installed logger, for reloads.
pub struct Logging {
    /// `[log] format` as the file said it at start (the command line may
    /// have overridden it).
    configured_format: LogFormat,
    /// `RUST_LOG` set the level: the configuration's level does not apply.
    from_env: bool,
    set_level: SetLevel,
}

/// Installs the logger for the process from `[log]`: `level` is a tracing
/// filter (`info`, `tftproxy=debug`), overridden by a valid `RUST_LOG`;
/// `format_override` is the command line's `--log-format`.
pub fn init(log: &LogConfig, format_override: Option<LogFormat>) -> Logging {
    let level = log.level.as_str();
    let format = format_override.unwrap_or(log.format);
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(filter) => (filter, true),
            Err(error) => {
                // No logger yet: say it on stderr directly.
                eprintln!("tftproxy: RUST_LOG={text:?} is not a valid filter ({error}); using [log] level {level:?}");
                (EnvFilter::new(level), false)
            }
        },
        Err(_) => (EnvFilter::new(level), false),
    };
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(batch::Stderr)
        .with_env_filter(filter);
    // The builder's type differs per arm; the reload handle is made alike.
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())) as SetLevel
        }};
    }
    let set_level = match (format, under_journald) {
        (LogFormat::Json, _) => install!(builder.json()),
        (LogFormat::Text, true) => {
            install!(builder.with_ansi(false).event_format(PlainLine::new(true)))
        }
        (LogFormat::Text, false) if colours_wanted() => install!(builder.with_ansi(true)),
        (LogFormat::Text, false) => {
            install!(builder.with_ansi(false).event_format(PlainLine::new(false)))
        }
    };
    Logging {
        configured_format: log.format,
        from_env,
        set_level,
    }
}

impl Logging {
    /// Applies a reloaded `[log]` section: the level now (unless `RUST_LOG`
    /// set it); a new format needs a restart, and says so.
    pub fn apply(&self, log: &LogConfig) {
        if self.from_env {
            tracing::debug!("RUST_LOG is set: [log] level is not applied");
        } else {
            match EnvFilter::try_new(&log.level) {
                Ok(filter) => {
                    if let Err(error) = (self.set_level)(filter) {
                        tracing::warn!(%error, "cannot change the log level");
                    }
                }
                Err(error) => tracing::warn!(%error, level = %log.level, "invalid [log] level"),
            }
        }
        if log.format != self.configured_format {
            tracing::warn!("[log] format changes take effect at the next start");
        }
    }
}

/// Colours on a terminal, unless `NO_COLOR` is set (no-color.org).
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
