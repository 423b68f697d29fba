//! Log lines written together: inside [`batched`], the lines a thread logs
//! are kept and written to standard error in one `write` when the batch
//! ends, instead of one `write` per line.
//!
//! Why: in a boot storm a TFTP driver ends dozens of transfers per turn of
//! its loop, each with a "served" line; a system call per line was 2.6 % of
//! the daemon's CPU (README, "Benchmarks"). A batch never spans an `.await`
//! (it is a closure), so the lines of one turn are out within that turn,
//! in the order logged; nothing waits on a thread or a channel, and nothing
//! is dropped. Outside a batch, a line is written at once, as before.

use std::cell::RefCell;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// A batch this large is written at once, without waiting for its end.
const FLUSH_AT: usize = 64 << 10;

thread_local! {
    /// The lines of the batch this thread is in, if any.
    static PENDING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Runs `work`, writing the lines it logs on this thread in one go when it
/// returns (or panics). Nested batches join the outermost one.
pub(crate) fn batched<R>(work: impl FnOnce() -> R) -> R {
    let outermost = PENDING.with_borrow_mut(|pending| {
        let outermost = pending.is_none();
        if outermost {
            *pending = Some(Vec::new());
        }
        outermost
    });
    // `then`, not `then_some`: that would make (and drop at once) an
    // `EndOfBatch` for a nested batch too, ending the outer one.
    let _end = outermost.then(|| EndOfBatch);
    work()
}

/// Writes the batch out when the outermost [`batched`] is left.
struct EndOfBatch;

impl Drop for EndOfBatch {
    fn drop(&mut self) {
        if let Some(lines) = PENDING.with_borrow_mut(Option::take) {
            write_out(&lines);
        }
    }
}

fn write_out(lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    // As for an unbatched line: nowhere to report a failed log write.
    #[cfg(not(test))]
    let _ = io::stderr().write_all(lines);
    #[cfg(test)]
    tests::WRITTEN.with_borrow_mut(|written| written.push(lines.to_vec()));
}

/// The logger's writer: standard error, through the thread's batch if any.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let kept = PENDING.with_borrow_mut(|pending| {
            let lines = pending.as_mut()?;
            lines.extend_from_slice(line);
            if lines.len() >= FLUSH_AT {
                write_out(lines);
                lines.clear();
            }
            Some(())
        });
        match kept {
            Some(()) => Ok(line.len()),
            None => io::stderr().write(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// What was written, one entry per `write`.
        pub(super) static WRITTEN: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    fn written() -> Vec<Vec<u8>> {
        WRITTEN.with_borrow_mut(std::mem::take)
    }

    fn pending() -> Option<Vec<u8>> {
        PENDING.with_borrow(Clone::clone)
    }

    #[test]
    fn lines_of_a_batch_are_kept_until_it_ends_and_nested_batches_join_it() {
        batched(|| {
            Stderr.write_all(b"first\n").unwrap();
            batched(|| Stderr.write_all(b"second\n").unwrap());
            // The inner batch ended, the lines are still held for the outer.
            assert_eq!(pending().as_deref(), Some(&b"first\nsecond\n"[..]));
            assert!(written().is_empty());
        });
        assert_eq!(pending(), None);
        assert_eq!(
            written(),
            [b"first\nsecond\n".to_vec()],
            "one write, at the end"
        );
    }

    #[test]
    fn a_batch_is_written_out_even_when_its_work_panics() {
        let unwound = std::panic::catch_unwind(|| {
            batched(|| {
                Stderr.write_all(b"before the panic\n").unwrap();
                panic!("work failed");
            })
        });
        assert!(unwound.is_err());
        assert_eq!(pending(), None);
        assert_eq!(written(), [b"before the panic\n".to_vec()]);
    }

    #[test]
    fn a_large_batch_is_written_before_it_ends() {
        batched(|| {
            let line = vec![b'x'; FLUSH_AT / 2];
            Stderr.write_all(&line).unwrap();
            assert_eq!(pending().map(|p| p.len()), Some(FLUSH_AT / 2));
            Stderr.write_all(&line).unwrap();
            assert_eq!(pending().map(|p| p.len()), Some(0), "written at the bound");
            assert_eq!(written().concat().len(), FLUSH_AT);
        });
        assert!(written().is_empty(), "nothing left to write");
    }
}
