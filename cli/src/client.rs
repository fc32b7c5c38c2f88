//! The CLI side of the local API: sends the command line to the daemon and replays what comes
//! back on this terminal.
//!
//! Whether a daemon runs is learnt by connecting: a connection that is closed without sending
//! anything costs the daemon no command slot, and the same connection then carries the command.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::api::{self, ProgressUpdate, Request};
use crate::progress;

/// Connects to the daemon of `repo_dir`, if one is running.
pub fn connect(repo_dir: &Path) -> Option<UnixStream> {
    UnixStream::connect(api::socket_path(repo_dir)).ok()
}

/// Runs `argv` in the daemon behind `stream`, printing its output here.
pub fn run(mut stream: UnixStream, argv: Vec<String>, show_progress: bool) -> Result<()> {
    let request = Request {
        argv,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        progress: show_progress,
        stdout_tty: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let payload = serde_json::to_vec(&request)?;
    if payload.len() > api::MAX_REQUEST {
        bail!(
            "the command line is too long to send to the daemon ({} bytes of request, at most {})",
            payload.len(),
            api::MAX_REQUEST
        );
    }
    if let Err(e) = api::write_frame(&mut stream, api::tag::REQUEST, &payload) {
        // The daemon may have refused the connection before reading it: show why.
        if let Ok(Some((api::tag::ERROR, message))) = api::read_frame(&mut stream) {
            return Err(crate::error::from_frame(&message));
        }
        return Err(e).context("cannot send the command to the daemon");
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        let frame = api::read_frame(&mut reader).context("lost the connection to the daemon")?;
        let Some((tag, payload)) = frame else {
            bail!("the daemon closed the connection before the command finished");
        };
        match tag {
            api::tag::STDOUT => out.write_all(&payload)?,
            api::tag::PROGRESS => {
                let Ok(update) = serde_json::from_slice::<ProgressUpdate>(&payload) else {
                    continue;
                };
                if update.finished {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    continue;
                }
                let b = bar
                    .get_or_insert_with(|| progress::indicatif_bar(update.total, &update.message));
                b.set_position(update.position);
            }
            api::tag::ERROR => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                out.flush()?;
                return Err(crate::error::from_frame(&payload));
            }
            api::tag::DONE => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                out.flush()?;
                return Ok(());
            }
            other => bail!("unexpected frame {other:#x} from the daemon"),
        }
    }
}

/// Saves stdin into a file in `dir` (for commands that read stdin when the daemon runs them).
/// At most `limit` bytes are kept; the file is readable by its owner only.
pub fn spool_stdin(dir: &Path, limit: u64) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("stdin-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut stdin = std::io::stdin().lock().take(limit);
    loop {
        let n = stdin.read(&mut buf).context("cannot read stdin")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
    }
    Ok(path)
}
