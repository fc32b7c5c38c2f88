//! Staging files: the content of every file changed since the base, one plain file each in
//! `<stage>/data/`, named by node id (16 hex digits). Writes are `pwrite`s at the file's
//! offsets, so holes stay holes; a missing file is an empty one. At most [`MAX_OPEN`] are
//! kept open; the others are opened again when needed (an fsync through a new descriptor
//! flushes the same inode). The set of files written since the last sync is kept so that a
//! sync flushes exactly those.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::NodeId;

/// Staging files kept open at once.
pub(super) const MAX_OPEN: usize = 256;
/// A sync of more staging files than this is one `syncfs` of their filesystem instead of an
/// `fdatasync` each (after `tar -x` of thousands of files, one call instead of thousands).
pub(super) const SYNCFS_AFTER: usize = 32;

#[derive(Debug)]
pub(super) struct DataFiles {
    dir: PathBuf,
    open: HashMap<NodeId, (File, u64)>,
    tick: u64,
    /// Written (or cut) since the last sync.
    pub dirty: HashSet<NodeId>,
    /// A file was created since the last sync: the directory must be synced too.
    created: bool,
}

impl DataFiles {
    pub(super) fn new(dir: PathBuf) -> DataFiles {
        DataFiles {
            dir,
            open: HashMap::new(),
            tick: 0,
            dirty: HashSet::new(),
            created: false,
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("{:016x}", id.0))
    }

    /// The open file of `id`; with `create`, made if missing, else `None` when missing.
    fn handle(&mut self, id: NodeId, create: bool) -> io::Result<Option<&File>> {
        self.tick += 1;
        let tick = self.tick;
        if self.open.contains_key(&id) {
            let slot = self.open.get_mut(&id).map(|(f, t)| {
                *t = tick;
                &*f
            });
            return Ok(slot);
        }
        let path = self.path(id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                self.created = true;
                f
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if self.open.len() >= MAX_OPEN {
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(id, (file, tick));
        Ok(self.open.get(&id).map(|(f, _)| f))
    }

    /// Writes `data` at `offset` of `id`'s staging file (made if missing).
    pub(super) fn write_at(&mut self, id: NodeId, offset: u64, data: &[u8]) -> io::Result<()> {
        self.dirty.insert(id);
        match self.handle(id, true)? {
            Some(f) => f.write_all_at(data, offset),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Reads into `buf` from `offset`; bytes past the end of the file read as zeros, up to
    /// `buf.len()` (the caller bounds it by the file's size).
    pub(super) fn read_at(&mut self, id: NodeId, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        if let Some(f) = self.handle(id, false)? {
            while done < buf.len() {
                match f.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        buf[done..].fill(0);
        Ok(())
    }

    /// Sets the length of `id`'s staging file (made if missing).
    pub(super) fn set_len(&mut self, id: NodeId, len: u64) -> io::Result<()> {
        self.dirty.insert(id);
        match self.handle(id, true)? {
            Some(f) => f.set_len(len),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// The length of `id`'s staging file (0 if there is none).
    pub(super) fn len(&mut self, id: NodeId) -> io::Result<u64> {
        match self.handle(id, false)? {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }

    /// `fdatasync` of `id`'s staging file, if it exists.
    pub(super) fn sync_file(&mut self, id: NodeId) -> io::Result<()> {
        match self.handle(id, false)? {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Syncs the directory if a file was created in it since the last time.
    pub(super) fn sync_dir(&mut self) -> io::Result<()> {
        if self.created {
            File::open(&self.dir)?.sync_all()?;
            self.created = false;
        }
        Ok(())
    }

    /// Flushes every dirty file of the filesystem holding the staging files (`syncfs`): the
    /// files, the directory, and the journal beside them.
    #[allow(unsafe_code)]
    pub(super) fn sync_everything(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = File::open(&self.dir)?;
        // SAFETY: `syncfs` only reads the descriptor, which `dir` keeps open for the call.
        let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.created = false;
        Ok(())
    }

    /// Deletes `id`'s staging file (nothing if there is none).
    pub(super) fn remove(&mut self, id: NodeId) -> io::Result<()> {
        self.open.remove(&id);
        self.dirty.remove(&id);
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The node ids that have a staging file, and the other names in the directory.
    pub(super) fn list(&self) -> io::Result<(Vec<NodeId>, Vec<PathBuf>)> {
        let mut ids = Vec::new();
        let mut other = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            match name
                .to_str()
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                Some(id) => ids.push(NodeId(id)),
                None => other.push(entry.path()),
            }
        }
        ids.sort();
        Ok((ids, other))
    }
}
