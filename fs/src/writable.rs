//! A writable share mount: the FUSE callbacks over an [`Overlay`] of staged changes, and the
//! committer that turns them into new versions of the share.
//!
//! Every request runs as a task on the runtime and takes the overlay's lock (a fair, async
//! mutex), except the two hot paths, which the FUSE thread answers itself when the lock is
//! free: a write to a file that is staged already (one `pwrite`), and a read (of a staged
//! file: one `pread`; of committed content: the read-only mount's read path, with its leaf
//! cache and readahead).
//!
//! # Layout
//! - `callbacks`: the `fuser::Filesystem` implementation.
//! - `committer`: when commits happen (fsync, a quiet period after writes, at the latest every
//!   few seconds while writes go on, on request, at unmount) and what a commit does.

mod callbacks;
mod committer;

pub use committer::{
    AdvanceError, AdvanceJob, Advanced, CommitError, CommitOutcome, CommitPolicy, MountBase,
    PublishError, PublishFuture, Published, ShareControl, ShareStore,
};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_store::{BlockSource, Cid, ImportOptions};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::filesystem::Shared;
use crate::options::MountOptions;
use crate::overlay::{NodeId, Overlay, OverlayDir, OverlayError};

/// What a writable mount of a share needs besides its blocks.
pub struct ShareMount {
    /// The share's id (its IPNS name), as [`ShareControl::id`] reports it.
    pub id: String,
    /// A name for the mount table (`cairn:<label>`).
    pub label: String,
    /// The share's staging directory (made if missing; one mount at a time uses it).
    pub stage: PathBuf,
    /// The share's head: its root directory, size and sequence number.
    pub head: Cid,
    /// The head's content size.
    pub head_size: u64,
    /// The head's sequence number.
    pub sequence: u64,
    /// The head's id tree (its nodes' identities), if it has one.
    pub ids: Option<Cid>,
    /// Where commits go.
    pub store: Arc<dyn ShareStore>,
    /// How commits chunk and encode files (those of `cairn add`).
    pub import: ImportOptions,
    /// When commits happen.
    pub policy: CommitPolicy,
}

impl std::fmt::Debug for ShareMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareMount")
            .field("label", &self.label)
            .field("stage", &self.stage)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// The overlay and what goes with the version it is based on; behind one lock.
pub(crate) struct Staged<S> {
    pub overlay: Overlay<S>,
    /// The content size of the base version.
    pub base_size: u64,
    /// The sequence number of the base version.
    pub sequence: u64,
}

/// When writes happened since the last commit.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// The first change not yet committed.
    pub first: Option<Instant>,
    /// The latest change.
    pub last: Option<Instant>,
    /// After a failed commit: not again before this.
    pub retry_at: Option<Instant>,
}

/// One `readdir` stream: a snapshot of the directory's listing at `opendir` (or at a rewind).
pub(crate) struct DirHandle<S> {
    pub dir: NodeId,
    pub cursor: OverlayDir<S>,
    /// The offset of the next item the cursor (or `held`) yields; the first item is 3.
    pub next: u64,
    /// An item read from the cursor that did not fit the last reply.
    pub held: Option<(u64, fuser::FileType, String)>,
}

/// An open file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenFile {
    pub id: NodeId,
    pub writable: bool,
}

/// State shared by the FUSE threads, the tasks they spawn and the committer.
pub(crate) struct State<S> {
    pub staged: tokio::sync::Mutex<Staged<S>>,
    pub store: Arc<dyn ShareStore>,
    pub import: ImportOptions,
    pub policy: CommitPolicy,
    pub activity: Mutex<Activity>,
    /// Wakes the committer when something changed.
    pub wake: Arc<Notify>,
    /// Set when the session ends: the committer stops.
    pub closed: AtomicBool,
    /// Open file handles.
    pub files: Mutex<HashMap<u64, OpenFile>>,
    pub dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirHandle<S>>>>>,
    pub next_fh: AtomicU64,
    /// The read path for committed content (leaf cache, readahead), as on read-only mounts.
    pub reads: Arc<Shared<S>>,
    pub options: MountOptions,
    pub uid: u32,
    pub gid: u32,
    /// The session's notifier, once mounted (kernel cache invalidation after a rebase).
    pub notifier: std::sync::OnceLock<fuser::Notifier>,
}

impl<S: BlockSource + Clone> State<S> {
    /// The nodes open for writing now.
    pub(crate) fn open_writers(&self) -> std::collections::HashSet<NodeId> {
        crate::filesystem::lock(&self.files)
            .values()
            .filter(|f| f.writable)
            .map(|f| f.id)
            .collect()
    }
}

/// Why opening the staged changes failed, as a mount error.
pub(crate) fn open_error(e: OverlayError) -> crate::error::MountError {
    crate::error::MountError::Staged(Box::new(e))
}

pub(crate) use callbacks::ShareFs;
pub(crate) use committer::run as committer_task;

/// Handle of the runtime and the state, for the session.
pub(crate) fn new_fs<S: BlockSource + Clone>(state: Arc<State<S>>, rt: Handle) -> ShareFs<S> {
    ShareFs { state, rt }
}
