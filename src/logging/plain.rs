//! The text log line without colours (a file, a pipe, journald), written
//! directly rather than through `tracing-subscriber`'s general formatter:
//! the same bytes, at a third of the instructions. In a boot storm every
//! file served logs one line, and the general formatter (styles, padding,
//! every value through `core::fmt`) was a quarter of the daemon's user-space
//! instructions per file (README, "Benchmarks").
//!
//! The line is `<time> <LEVEL> <target>: <message> <name>=<value> …`, as
//! `tracing-subscriber` writes it: strings quoted and escaped as `Debug`
//! does, other values as their `Debug` (for `%x`, their `Display`). Events
//! bridged from the `log` crate carry their real target in fields, and go to
//! the general formatter, which reads it there.

use std::fmt;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{format, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as plain text lines.
pub(super) struct PlainLine {
    /// Under journald: no time (the journal has it), and the syslog
    /// priority first (`<6>` for info), which journald reads.
    journald: bool,
    /// For bridged `log` events.
    general: format::Format<format::Full, ()>,
}

impl PlainLine {
    pub(super) fn new(journald: bool) -> PlainLine {
        PlainLine {
            journald,
            general: format().without_time().with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let level = *metadata.level();
        if self.journald {
            writer.write_str(syslog_priority(level))?;
        } else {
            let now = humantime::format_rfc3339_micros(SystemTime::now());
            write!(writer, "{now} ")?;
        }
        if metadata.fields().field("log.target").is_some() {
            return self.general.format_event(ctx, writer, event);
        }
        writer.write_str(padded(level))?;
        writer.write_char(' ')?;
        writer.write_str(metadata.target())?;
        writer.write_char(':')?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// `tracing-subscriber`'s level column: right-aligned in five.
fn padded(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// The syslog priority journald reads at the start of a line: `<3>` error
/// … `<7>` debug.
fn syslog_priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Writes each field as ` name=value` (the message bare), keeping the first
/// error.
struct Fields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        self.writer.write_char(' ')?;
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    fn integer(&mut self, field: &Field, digits: &str) {
        if self.result.is_ok() {
            self.result = self
                .name(field)
                .and_then(|()| self.writer.write_str(digits));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.name(field).and_then(|()| {
            if field.name() == "message" {
                self.writer.write_str(value)
            } else if value
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            {
                // Nothing to escape: what `Debug` would write, without it.
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, itoa::Buffer::new().format(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self
                .name(field)
                .and_then(|()| write!(self.writer, "{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn events() {
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        tracing::info!(%client, name = "SEP001122AABBCC.cnf.xml", bytes = 13_000u64, "served");
        tracing::warn!(
            name = "a \"quoted\"\tname\\é",
            delta = -3i64,
            ok = true,
            "odd {}",
            42
        );
        tracing::error!(list = ?vec![1, 2], "failed");
        tracing::info!(only = 1u64);
    }

    fn written(make: impl FnOnce(Captured) -> tracing::Dispatch) -> String {
        let captured = Captured::default();
        tracing::dispatcher::with_default(&make(captured.clone()), events);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_line_is_what_the_general_formatter_writes() {
        let general = written(|out| {
            tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .without_time()
                .into()
        });
        let plain = written(|out| {
            tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .event_format(PlainLine::new(true))
                .into()
        });
        assert_eq!(general.lines().count(), 4, "{general}");
        let priorities = ["<6>", "<4>", "<3>", "<6>"];
        for ((general, plain), priority) in general.lines().zip(plain.lines()).zip(priorities) {
            assert_eq!(plain, format!("{priority}{general}"));
        }
    }

    #[test]
    fn a_line_off_journald_starts_with_the_time() {
        let plain = written(|out| {
            tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .event_format(PlainLine::new(false))
                .into()
        });
        let first = plain.lines().next().unwrap();
        let (time, rest) = first.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{first}");
        assert!(
            rest.starts_with(
                " INFO tftproxy::logging::plain::tests: served client=192.0.2.7:40000"
            ),
            "{rest}"
        );
    }
}
