//! The blockstore trait: where blocks live on this machine.

use std::fmt;
use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use cid::Cid;

use crate::block::Block;

/// Errors of a blockstore operation. Each keeps its source, so a caller can tell a full disk
/// ([`StoreError::is_no_space`]) from corruption or a damaged index.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The free-space guard refused a write: the disk holding the repo is nearly full.
    #[error(
        "no space left on device: {free} bytes free at {path}, {reserve} kept in reserve; \
         free some space or run `cairn repo gc`"
    )]
    NoSpace {
        /// The directory whose filesystem is full.
        path: PathBuf,
        /// Bytes available to this user.
        free: u64,
        /// The reserve that writes must leave free (`[store] reserve_mib`).
        reserve: u64,
    },
    /// The disk is full (the OS said `ENOSPC`; the guard was off or the disk filled up from
    /// outside). Nothing already stored is lost.
    #[error("no space left on device while trying to {op} {path}; free some space, then retry")]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
    },
    /// A file of the store could not be read or written.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done (`read`, `write`, `create`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The index database (sled) failed.
    #[error("block index error")]
    Index(#[source] IndexError),
    /// The index cannot be trusted: missing, damaged or disagreeing with the block files.
    #[error("{problem}; run `cairn repo repair` to rebuild the index from the block files")]
    Untrusted {
        /// What is wrong with it.
        problem: IndexProblem,
    },
    /// A block on disk does not match its CID.
    #[error("corrupt block on disk: {cid} does not match its content")]
    Corrupt {
        /// The CID under which the bad bytes were stored.
        cid: Cid,
    },
    /// A stored key could not be decoded as a CID.
    #[error("blockstore holds an undecodable key ({len} bytes)")]
    BadKey {
        /// Length of the key.
        len: usize,
    },
    /// A record of a pack or journal file does not decode.
    #[error("damaged record in {path} at byte {offset}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
    /// A store that is not backed by files failed internally (poisoned lock, injected fault).
    #[error("{0}")]
    Internal(&'static str),
}

impl StoreError {
    /// Whether this error means the disk is full (the guard, or the OS's `ENOSPC`).
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::NoSpace { .. } | StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => is_enospc(source),
            StoreError::Index(e) => e.is_no_space(),
            _ => false,
        }
    }
}

pub(crate) fn is_enospc(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Why the index cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexProblem {
    /// sled would not open the database.
    #[error("the block index at {path} is damaged ({reason})")]
    Damaged {
        /// The database directory.
        path: PathBuf,
        /// sled's complaint.
        reason: String,
    },
    /// The database is empty (deleted?) while block files exist.
    #[error("the block index at {path} is missing or empty, but {files} block files exist")]
    Missing {
        /// The database directory.
        path: PathBuf,
        /// Block files and pack records found.
        files: u64,
    },
    /// More blocks on disk than the index knows.
    #[error("the block index knows {indexed} blocks, but {on_disk} are on disk")]
    Disagrees {
        /// Blocks in the index.
        indexed: u64,
        /// Blocks found in the block files.
        on_disk: u64,
    },
    /// The pin journal is gone while blocks exist.
    #[error("the pin journal {path} is missing, so what is pinned is unknown")]
    NoPinJournal {
        /// Where it should be.
        path: PathBuf,
    },
}

/// An error of the index database, kept opaque so that sled's types stay out of the API.
#[derive(Debug)]
pub struct IndexError(pub(crate) sled::Error);

impl IndexError {
    fn is_no_space(&self) -> bool {
        matches!(&self.0, sled::Error::Io(e) if is_enospc(e))
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            sled::Error::Io(e) => write!(f, "{e}"),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for IndexError {}

/// Space and count statistics of a blockstore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of blocks.
    pub blocks: u64,
    /// Sum of the block sizes in bytes.
    pub bytes: u64,
    /// Size of the store's files on disk, in bytes.
    pub disk_bytes: u64,
}

/// A local, synchronous store of blocks keyed by CID.
///
/// Implementations must be safe to share between threads. `get` returns the bytes as stored;
/// [`Blockstore::get_verified`] additionally checks them against the CID.
pub trait Blockstore: Send + Sync + 'static {
    /// Stores a block. Returns `true` if it was new.
    fn put(&self, block: &Block) -> Result<bool, StoreError>;
    /// Stores many blocks at once (one batch, one durability point).
    fn put_many(&self, blocks: &[Block]) -> Result<(), StoreError> {
        for b in blocks {
            self.put(b)?;
        }
        Ok(())
    }
    /// The bytes stored under `cid`, unverified.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError>;
    /// Whether a block is present.
    fn has(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// Size in bytes of a stored block.
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError>;
    /// Removes a block. Returns `true` if it was present.
    fn delete(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// Every CID in the store.
    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_>;
    /// Count and size statistics.
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// The block under `cid`, checked against the CID.
    fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        match self.get(cid)? {
            Some(data) => {
                crate::hash::verify(cid, &data).map_err(|_| StoreError::Corrupt { cid: *cid })?;
                Ok(Some(data))
            }
            None => Ok(None),
        }
    }
}
