//! Errors: [`MountError`] for setting up a mount, `FsError` for one filesystem request.

use std::io;
use std::path::PathBuf;

use cairn_store::{Cid, ReadError};
use fuser::Errno;

/// Why a mount could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point does not exist.
    #[error("mount point {} does not exist; create an empty directory there first", path.display())]
    MissingMountpoint {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point is a file or something else.
    #[error("mount point {} is not a directory", path.display())]
    NotADirectory {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point has entries that the mount would hide.
    #[error("mount point {} is not empty; mount on an empty directory", path.display())]
    NotEmpty {
        /// The mount point.
        path: PathBuf,
    },
    /// Something is mounted there already.
    #[error("{} is already a mount point; unmount it first (fusermount3 -u {})", path.display(), path.display())]
    AlreadyMounted {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point could not be examined.
    #[error("cannot examine mount point {}", path.display())]
    Inspect {
        /// The mount point.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The root CID could not be read.
    #[error("cannot mount: {0}")]
    Root(Box<ReadError>),
    /// The root CID did not arrive in time.
    #[error("cannot mount {cid}: its root block did not arrive within {secs} s")]
    RootTimeout {
        /// The root.
        cid: Cid,
        /// The deadline, in seconds.
        secs: u64,
    },
    /// The kernel or fusermount3 refused the mount.
    #[error("FUSE mount on {} failed (is /dev/fuse available and fusermount3 installed?)", path.display())]
    Fuse {
        /// The mount point.
        path: PathBuf,
        /// The error from the mount.
        #[source]
        source: io::Error,
    },
    /// The share's staged changes could not be opened.
    #[error("cannot open the share's staged changes: {0}")]
    Staged(Box<crate::overlay::OverlayError>),
    /// The share's staged changes did not open in time.
    #[error("opening the share's staged changes took longer than {secs} s")]
    StagedTimeout {
        /// The deadline, in seconds.
        secs: u64,
    },
    /// Unmounting failed (for example because the mount point is busy).
    #[error("unmounting {} failed", path.display())]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The error from the unmount.
        #[source]
        source: io::Error,
    },
}

/// Why one filesystem request failed; turned into an errno at the edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    #[error(transparent)]
    Read(Box<ReadError>),
    #[error("{} did not arrive within {secs} s", cid.map_or_else(|| "content".to_string(), |c| c.to_string()))]
    Timeout { cid: Option<Cid>, secs: u64 },
    #[error("no such entry")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("a worker task failed")]
    TaskFailed,
    #[error("directories nest deeper than the mount allows")]
    TooDeep,
    #[error("directory reached through too many paths at once")]
    TooManyAliases,
}

impl From<ReadError> for MountError {
    fn from(e: ReadError) -> Self {
        MountError::Root(Box::new(e))
    }
}

impl From<ReadError> for FsError {
    fn from(e: ReadError) -> Self {
        FsError::Read(Box::new(e))
    }
}

impl FsError {
    /// Whether the failure is about content (worth a warning naming the CID), rather than a
    /// normal answer such as "no such file".
    pub(crate) fn is_content_failure(&self) -> bool {
        matches!(
            self,
            FsError::Read(_) | FsError::Timeout { .. } | FsError::TaskFailed
        )
    }
}

impl From<FsError> for Errno {
    fn from(e: FsError) -> Errno {
        match e {
            FsError::Read(e) => match *e {
                ReadError::NotFound { .. } => Errno::ENOENT,
                ReadError::NotADirectory { .. } => Errno::ENOTDIR,
                ReadError::NotAFile { .. } => Errno::EISDIR,
                // A full disk is ENOSPC, never a generic I/O error (store errors keep their kind).
                ReadError::Get(cairn_store::GetError::Store(ref s)) if s.is_no_space() => {
                    Errno::ENOSPC
                }
                _ => Errno::EIO,
            },
            FsError::NotFound => Errno::ENOENT,
            FsError::NotADirectory => Errno::ENOTDIR,
            // "Too many levels": the path goes deeper than `MAX_DIR_DEPTH`.
            FsError::TooDeep => Errno::ELOOP,
            // "Too many links": the directory is reached through `MAX_DIR_ALIASES` paths.
            FsError::TooManyAliases => Errno::EMLINK,
            FsError::Timeout { .. } | FsError::TaskFailed => Errno::EIO,
        }
    }
}
