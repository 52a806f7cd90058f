//! Writing results to stdout (`kefu sql`, `kefu rules`, `kefu rules diff`).
//!
//! Everything goes through one locked, buffered writer. A reader that stops
//! early (`kefu sql ... | head -5`) closes the pipe: that is its choice, not
//! a failure, so a broken pipe ends the output quietly with exit 0, as
//! ripgrep and coreutils do (Rust ignores SIGPIPE, so the write sees EPIPE;
//! `println!` would panic on it). Any other write error is an I/O error.

use std::io::{self, BufWriter, StdoutLock, Write};

use kefu::error::{Error, Result};

/// Runs `write` with stdout and flushes it. A broken pipe, during the
/// writes or the flush, is success.
pub fn with_stdout(
    write: impl FnOnce(&mut BufWriter<StdoutLock<'static>>) -> io::Result<()>,
) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            // Drop the buffer without a last flush: it would fail the same way.
            let _ = out.into_parts();
            Ok(())
        }
        Err(e) => {
            let _ = out.into_parts();
            Err(Error::Io(format!("cannot write to stdout: {e}")))
        }
    }
}
