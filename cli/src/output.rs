//! Printing results: human text or `--json`, to a locked, buffered stdout.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

/// Writes one JSON value per line, or human text.
pub struct Output {
    json: bool,
    out: io::BufWriter<io::StdoutLock<'static>>,
}

impl Output {
    /// A printer for `--json` or text mode.
    pub fn new(json: bool) -> Self {
        Output {
            json,
            out: io::BufWriter::new(io::stdout().lock()),
        }
    }

    /// Whether JSON was requested.
    pub fn json(&self) -> bool {
        self.json
    }

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

    /// Flushes buffered output.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
