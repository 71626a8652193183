//! Standard output that ends quietly when its reader goes away (`xception classify ... | head`):
//! printing stops, the work and every output file still complete, and nothing panics.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once standard output's reader has gone (or writing to it failed).
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Set when writing failed for another reason than a closed pipe (a full disk, say).
static FAILED: AtomicBool = AtomicBool::new(false);

/// Standard output as a writer that swallows a closed pipe: what `outln!` and the CSV writer
/// print through.
pub struct Stdout;

impl Stdout {
    /// Runs one write on the real standard output unless it is closed; a closed pipe closes it
    /// quietly, another error closes it with one message.
    fn guarded(&self, write: impl FnOnce(&mut io::StdoutLock<'_>) -> io::Result<()>) {
        if CLOSED.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = write(&mut io::stdout().lock()) {
            CLOSED.store(true, Ordering::Relaxed);
            if e.kind() != io::ErrorKind::BrokenPipe {
                FAILED.store(true, Ordering::Relaxed);
                eprintln!("error: writing to standard output: {e}");
            }
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guarded(|out| out.write_all(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.guarded(|out| out.flush());
        Ok(())
    }
}

/// Whether writing to standard output failed for another reason than a closed pipe (the
/// command then exits 1).
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}
