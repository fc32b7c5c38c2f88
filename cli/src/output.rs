//! Where a command's output goes: this process's stdout/stderr, or (when the daemon runs the
//! command for a client) frames on the client's API connection.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde::Serialize;

use crate::api;
use crate::progress::Bar;

/// The terminal of the user who ran the command.
#[derive(Clone)]
pub struct Console {
    json: bool,
    progress: bool,
    remote: Option<Arc<Mutex<UnixStream>>>,
}

impl Console {
    /// This process's own stdout; progress shown when `progress` (see [`crate::progress::wanted`]).
    pub fn local(json: bool, progress: bool) -> Self {
        Console {
            json,
            progress,
            remote: None,
        }
    }

    /// A client's API connection.
    pub fn remote(json: bool, progress: bool, stream: UnixStream) -> Self {
        Console {
            json,
            progress,
            remote: Some(Arc::new(Mutex::new(stream))),
        }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether progress bars should be drawn (a terminal, and not quiet).
    pub fn progress(&self, quiet: bool) -> bool {
        self.progress && !quiet
    }

    /// A buffered writer for the user's stdout.
    pub fn stdout(&self) -> Box<dyn Write + Send> {
        match &self.remote {
            None => Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout())),
            Some(s) => Box::new(io::BufWriter::with_capacity(
                1 << 20,
                FrameWriter(s.clone()),
            )),
        }
    }

    /// A progress bar (hidden unless `visible`).
    pub fn bar(&self, visible: bool, total: Option<u64>, message: &str) -> Bar {
        match &self.remote {
            None => Bar::local(visible, total, message),
            Some(s) => Bar::remote(visible, total, message, s.clone()),
        }
    }

    /// A printer of listing items.
    pub fn output(&self) -> Output {
        Output {
            json: self.json,
            out: self.stdout(),
        }
    }
}

/// Sends writes as STDOUT frames.
struct FrameWriter(Arc<Mutex<UnixStream>>);

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(api::MAX_FRAME);
        let mut s = self
            .0
            .lock()
            .map_err(|_| io::Error::other("API connection lock poisoned"))?;
        api::write_frame(&mut *s, api::tag::STDOUT, &buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one JSON value per line, or human text.
pub struct Output {
    json: bool,
    out: Box<dyn Write + Send>,
}

impl Output {
    /// Prints `value` as JSON in JSON mode, else the text `human` produces.
    pub fn item<T: Serialize>(&mut self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, value)?;
            self.out.write_all(b"\n")?;
        } else {
            let line = human();
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Prints a human line only (nothing in JSON mode).
    pub fn text(&mut self, line: &str) -> Result<()> {
        if !self.json {
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Flushes buffered output.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
