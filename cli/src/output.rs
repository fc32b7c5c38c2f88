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
    /// `-Q/--quiet`: no progress, no acknowledgements (see [`Output`]).
    quiet: bool,
    progress: bool,
    /// Whether the user's stdout is a terminal.
    stdout_tty: bool,
    remote: Option<Arc<Mutex<UnixStream>>>,
}

impl Console {
    /// This process's own stdout; progress shown when `progress` (see [`crate::progress::wanted`]).
    pub fn local(json: bool, quiet: bool, progress: bool) -> Self {
        Console {
            json,
            quiet,
            progress,
            stdout_tty: io::IsTerminal::is_terminal(&io::stdout()),
            remote: None,
        }
    }

    /// A client's API connection (`request` says what the client's terminal is).
    pub fn remote(json: bool, quiet: bool, request: &api::Request, stream: UnixStream) -> Self {
        Console {
            json,
            quiet,
            progress: request.progress,
            stdout_tty: request.stdout_tty,
            remote: Some(Arc::new(Mutex::new(stream))),
        }
    }

    /// Where a command's binary output goes: `-o FILE` (written beside and renamed into place
    /// when complete, see [`BinaryOut::finish`]), `-o -` for stdout whatever it is, and
    /// otherwise stdout, unless it is a terminal and `binary` (the first bytes, or `None` for
    /// output that is always binary) shows that the data is not text.
    pub fn binary_out(
        &self,
        output: Option<&std::path::Path>,
        what: &str,
        first: Option<&[u8]>,
    ) -> Result<BinaryOut> {
        match output {
            Some(p) if p == std::path::Path::new("-") => Ok(BinaryOut::Stdout(self.stdout())),
            Some(p) => BinaryOut::file(p),
            None => {
                let binary = first.is_none_or(looks_binary);
                if self.stdout_tty && binary {
                    crate::fail!(
                        "invalid_input",
                        "{what} is binary data and stdout is a terminal: write it to a file with \
                         `-o FILE`, pipe it (`| xxd | less`), or force it with `-o -`"
                    );
                }
                Ok(BinaryOut::Stdout(self.stdout()))
            }
        }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether progress bars should be drawn (a terminal, and not quiet).
    pub fn progress(&self) -> bool {
        self.progress && !self.quiet
    }

    /// Whether `-Q/--quiet` was given.
    pub fn quiet(&self) -> bool {
        self.quiet
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
            quiet: self.quiet,
            out: self.stdout(),
        }
    }
}

/// Whether bytes (the start of some output) are not text: a NUL, or not UTF-8 (a character
/// cut at the end of the sample is allowed).
pub fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return true;
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    }
}

/// Binary output of a command (see [`Console::binary_out`]).
pub enum BinaryOut {
    /// The user's stdout.
    Stdout(Box<dyn Write + Send>),
    /// A file being written under a temporary name beside its final one.
    File {
        tmp: std::path::PathBuf,
        dest: std::path::PathBuf,
        file: io::BufWriter<std::fs::File>,
    },
}

impl BinaryOut {
    fn file(dest: &std::path::Path) -> Result<BinaryOut> {
        use anyhow::Context;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_string());
        let tmp = dest.with_file_name(format!(".{name}.cairn-partial-{}", std::process::id()));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(BinaryOut::File {
            tmp,
            dest: dest.to_path_buf(),
            file: io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Completes the output: flushes stdout, or syncs the file and renames it into place. Not
    /// called (dropped) on failure: a partial file is removed, an existing one left as it was.
    pub fn finish(mut self) -> Result<()> {
        use anyhow::Context;
        match &mut self {
            BinaryOut::Stdout(w) => w.flush()?,
            BinaryOut::File { tmp, dest, file } => {
                file.flush()
                    .and_then(|()| file.get_ref().sync_all())
                    .and_then(|()| std::fs::rename(&*tmp, &*dest))
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                // Renamed: nothing for drop to remove.
                tmp.clear();
            }
        }
        Ok(())
    }
}

impl Write for BinaryOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BinaryOut::Stdout(w) => w.write(buf),
            BinaryOut::File { file, .. } => file.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            BinaryOut::Stdout(w) => w.flush(),
            BinaryOut::File { file, .. } => file.flush(),
        }
    }
}

impl Drop for BinaryOut {
    fn drop(&mut self) {
        if let BinaryOut::File { tmp, .. } = self {
            if !tmp.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&*tmp);
            }
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

/// Writes one JSON value per line (JSON Lines), or human text.
///
/// Three kinds of lines: [`Output::item`] is a command's result (a listing entry, a CID, a
/// report), always printed; [`Output::ack`] acknowledges a change ("pinned X"), left out with
/// `--quiet`; [`Output::text`] is a human note, left out with `--quiet` and with `--json`.
pub struct Output {
    json: bool,
    quiet: bool,
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

    /// Prints `value` (JSON) or `human` (text) unless `--quiet`: the acknowledgement of a change.
    pub fn ack<T: Serialize>(&mut self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.item(value, human)
    }

    /// Prints a human line only (nothing in JSON mode or with `--quiet`).
    pub fn text(&mut self, line: &str) -> Result<()> {
        if !self.json && !self.quiet {
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
