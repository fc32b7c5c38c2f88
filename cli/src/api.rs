//! The local API between the `cairn` CLI and a running `cairn daemon`.
//!
//! Transport: a Unix socket `api/api.sock` inside the repo directory; `api/` is a directory of mode
//! 0700 (created before the socket is bound, so there is no window with looser permissions) and the
//! socket itself 0600, so only
//! the repo's owner can connect and nothing is reachable from other hosts. One connection runs one
//! command. The client sends a request frame (its argv, working directory and whether it has a
//! terminal); the daemon runs the command against its open repo and node and streams frames back.
//!
//! Frame: `tag: u8`, `len: u32 big-endian`, `len` bytes of payload (at most [`MAX_FRAME`]).
//!
//! Limits the daemon enforces (see `daemon`): the whole request frame must arrive within
//! [`REQUEST_DEADLINE`] of connecting and be at most [`MAX_REQUEST`] bytes; at most
//! [`MAX_COMMANDS`] commands run at once, and a complete request waits up to [`SLOT_WAIT`], in
//! arrival order, for one to end; at most [`MAX_CONNECTIONS`] connections are open at once. A
//! connection that closes without sending anything (the client's "is a daemon running" probe)
//! costs nothing but the accept.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 4 << 20;

/// Largest request frame (the JSON [`Request`]) the daemon accepts; the client checks it first.
pub const MAX_REQUEST: usize = 1 << 20;

/// Time from connecting until the whole request frame has arrived (in total, not per read).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Commands the daemon runs at once (each holds a slot from its complete request to its end).
pub const MAX_COMMANDS: usize = 64;

/// How long a complete request waits for a command slot before "the daemon is busy".
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// API connections the daemon keeps open at once (fewer if its descriptor limit is low).
pub const MAX_CONNECTIONS: usize = 1024;

/// The private directory (mode 0700) holding the socket, inside the repo.
pub const SOCKET_DIR: &str = "api";
/// The socket's file name inside [`SOCKET_DIR`].
pub const SOCKET_NAME: &str = "api.sock";

/// Where the daemon of `repo_dir` listens.
pub fn socket_path(repo_dir: &std::path::Path) -> PathBuf {
    repo_dir.join(SOCKET_DIR).join(SOCKET_NAME)
}

/// Frame tags.
pub mod tag {
    /// Client → daemon: the JSON [`super::Request`].
    pub const REQUEST: u8 = b'R';
    /// Daemon → client: bytes for the client's stdout.
    pub const STDOUT: u8 = b'O';
    /// Daemon → client: a JSON [`super::ProgressUpdate`].
    pub const PROGRESS: u8 = b'P';
    /// Daemon → client: the command failed; payload is JSON `{"code": .., "message": ..}`
    /// (the codes of `error::CODES`).
    pub const ERROR: u8 = b'E';
    /// Daemon → client: the command succeeded; nothing follows.
    pub const DONE: u8 = b'K';
}

/// What the client asks the daemon to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The command line, program name first.
    pub argv: Vec<String>,
    /// The client's working directory (relative paths are resolved against it).
    pub cwd: PathBuf,
    /// Whether the client shows progress bars.
    pub progress: bool,
    /// Whether the client's stdout is a terminal (binary output is then refused).
    #[serde(default)]
    pub stdout_tty: bool,
}

/// A progress bar's state, as the daemon reports it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProgressUpdate {
    /// What is in progress.
    pub message: String,
    /// Total, when known.
    pub total: Option<u64>,
    /// Done so far.
    pub position: u64,
    /// The operation ended; the bar goes away.
    pub finished: bool,
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    for piece in payload
        .chunks(MAX_FRAME)
        .chain(payload.is_empty().then_some(&[][..]))
    {
        let len = u32::try_from(piece.len()).map_err(|_| io::Error::other("frame too large"))?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_be_bytes());
        w.write_all(&head)?;
        w.write_all(piece)?;
    }
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("API frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Reads the request frame from a connection that has just been accepted; `Ok(None)` if the
/// client closed it without sending a byte. The payload buffer grows only as bytes arrive, so
/// a declared length costs nothing until it is sent.
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    if r.read(&mut head[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request of {len} bytes exceeds the {MAX_REQUEST}-byte limit"),
        ));
    }
    let mut payload = Vec::with_capacity(len.min(64 << 10));
    let got = r.take(len as u64).read_to_end(&mut payload).await?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some((head[0], payload)))
}

/// One frame as bytes (for replies written without blocking).
pub fn frame_bytes(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    // Infallible: writing into a Vec cannot fail, and callers send short messages.
    let _ = write_frame(&mut out, tag, payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, tag::STDOUT, b"hello").unwrap();
        write_frame(&mut buf, tag::DONE, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((tag::STDOUT, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((tag::DONE, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);

        let mut bad = vec![tag::STDOUT];
        bad.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert!(read_frame(&mut &bad[..]).is_err());
    }

    #[tokio::test]
    async fn requests_are_read_whole_and_bounded() {
        let frame = frame_bytes(tag::REQUEST, b"{}");
        assert_eq!(
            read_request(&mut &frame[..]).await.unwrap(),
            Some((tag::REQUEST, b"{}".to_vec()))
        );
        // Connect and close: the probe.
        assert_eq!(read_request(&mut &[][..]).await.unwrap(), None);
        // Cut short anywhere after the first byte: an error, not a request.
        for cut in 1..frame.len() {
            assert!(read_request(&mut &frame[..cut]).await.is_err(), "cut {cut}");
        }
        let mut big = vec![tag::REQUEST];
        big.extend_from_slice(&(MAX_REQUEST as u32 + 1).to_be_bytes());
        assert!(read_request(&mut &big[..]).await.is_err());
    }
}
