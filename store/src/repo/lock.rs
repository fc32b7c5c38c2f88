//! The exclusive repo lock: `flock(LOCK_EX | LOCK_NB)` on `repo.lock`, holding our pid.
//!
//! The lock belongs to the open file description, so a second open in the same process is
//! refused too, and the kernel drops it when the process dies (even by SIGKILL): a stale
//! `repo.lock` file never blocks anyone.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// An exclusive hold on a repo, released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// Why the lock could not be taken.
pub(crate) enum LockError {
    /// Another open file description holds it; the pid it wrote, if readable.
    Held(Option<u32>),
    /// The lock file could not be opened or written.
    Io(io::Error),
}

#[allow(unsafe_code)]
fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: `flock` only takes the descriptor, which `f` keeps open for the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

impl RepoLock {
    /// Takes the lock on `path`, creating the file if needed, and writes our pid into it.
    pub(crate) fn acquire(path: &Path) -> Result<RepoLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        if !try_flock(&file).map_err(LockError::Io)? {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held(pid));
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.rewind().map_err(LockError::Io)?;
        writeln!(file, "{}", std::process::id()).map_err(LockError::Io)?;
        Ok(RepoLock { _file: file })
    }
}
