//! The core of a writable share mount: a staged overlay of changes on top of a committed root
//! directory, durable on disk, and the commit that turns it into a new root DAG.
//!
//! [`Overlay`] answers what FUSE will ask (lookup, getattr, readdir, create, mkdir, symlink,
//! unlink, rmdir, rename, read, write, setattr, sync) on stable node ids ([`NodeId`], the
//! inode numbers: they survive renames and commits). Unchanged files and directories are read
//! lazily from committed blocks through a [`DagReader`]; a file changed for the first time is
//! copied into its staging file and written there.
//!
//! # Staging directory
//! ```text
//! <stage>/journal        the tree operations since the base version (`overlay/journal.rs`)
//! <stage>/data/<id>      the content of each changed file, 16 hex digits of its node id
//! <stage>/commit.tmp     a committed file's content while a mode/mtime-only change re-encodes it
//! ```
//!
//! # Durability
//! Every tree operation appends one journal record before it changes memory (one `pwrite`;
//! writes of file content append nothing). [`Overlay::sync`] (FUSE `fsync`/`fdatasync`) then
//! makes everything durable in this order: a record of the mtime each staging file written
//! since the last sync got, `fdatasync` of each of those files and `fsync` of `data/` if a
//! staging file was created (or one `syncfs` when there are many), `fdatasync` of the journal;
//! only then are the staging files of removed nodes deleted. So whatever `sync` returned for survives `kill -9` and power loss: opening
//! replays the intact prefix of the journal over the base (a torn tail is cut, never applied)
//! and takes each staged file's content and length from its staging file.
//!
//! # Layout
//! - `tree`: the staged tree in memory and [`Tree::apply`](tree::Tree), shared by live
//!   operations and replay.
//! - `journal`: the record format, reading with torn tails, appends.
//! - `data`: staging files.
//! - `commit`: [`Overlay::commit`] and [`Overlay::committed`].

mod commit;
mod data;
mod journal;
mod rebase;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_store::{
    BlockSource, Cid, DagReader, DirCursor, EntryKind, ImportError, NodeInfo, ReadError, UnixTime,
    UpdateError, RAW,
};

pub use commit::CommitStats;

use data::DataFiles;
use journal::{Journal, JournalError, Record};
use tree::{Base, Content, Known, Node, Slot, Tree};

/// A node of the overlay. Stable while the overlay is open, across renames and commits; the
/// root is [`NodeId::ROOT`]. (A restart numbers nodes again, as the kernel forgets them all.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The root directory (FUSE's root inode).
    pub const ROOT: NodeId = NodeId(1);
}

/// The longest entry name, in bytes (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest symlink target, in bytes (Linux's `PATH_MAX`).
pub const SYMLINK_MAX: usize = 4096;
/// The largest file size (offsets are `off_t`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// `rename` flag: fail with `EEXIST` if the destination exists.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// `rename` flag: swap source and destination, which must both exist.
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

/// The attributes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// The node.
    pub id: NodeId,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// File: content bytes; symlink: target bytes; directory: 0.
    pub size: u64,
    /// Permission bits (`0o7777`). Committed nodes that record none: 0644, 0755, 0777.
    pub mode: u32,
    /// Modification time (committed nodes that record none: when the overlay was opened).
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
    /// 2 for directories, 1 otherwise, 0 for an unlinked node still held.
    pub nlink: u32,
    /// Whether the node or something below it has changes not yet committed.
    pub dirty: bool,
}

/// A time to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time (`touch` without a date): not recorded as an explicit mtime.
    Now,
    /// This time (`touch -d`, `utimes`, `tar -x`, `rsync -a`): recorded in the commit.
    At(SystemTime),
}

/// What a `setattr` changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New file size (truncate or extend with a hole).
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// The entry name.
    pub name: String,
    /// Its node, if the overlay holds one for it (listings create none).
    pub id: Option<NodeId>,
    /// Its kind, when known without reading its block (`None`: stat `cid`).
    pub kind: Option<EntryKind>,
    /// The committed root of an entry of the committed listing.
    pub cid: Option<Cid>,
}

/// Where a file's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileContent {
    /// Unchanged: the committed DAG `cid` (read it through the usual read path).
    Committed(Cid),
    /// Changed: the staging file (read it with [`Overlay::read`]).
    Staged,
}

/// Why an overlay operation failed. [`OverlayError::errno`] is what FUSE answers.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// No entry of that name, or a node the overlay no longer holds.
    #[error("no such file or directory")]
    NotFound,
    /// The name is taken.
    #[error("an entry of that name exists")]
    Exists,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotADirectory,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsADirectory,
    /// `rmdir`, or a rename over a directory, that is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// A name with NUL or `/`, `.`, `..`, empty, or not UTF-8 (UnixFS names are UTF-8).
    #[error("invalid name {0:?}: names are UTF-8 without NUL or '/' and are not \".\" or \"..\"")]
    InvalidName(String),
    /// A name over [`NAME_MAX`] bytes, or a symlink target over [`SYMLINK_MAX`].
    #[error("name of {0} bytes is too long")]
    NameTooLong(usize),
    /// An argument that makes no sense here.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A file would grow past [`MAX_FILE_SIZE`].
    #[error("file too large")]
    TooLarge,
    /// Hard links are not supported (a node has one parent).
    #[error("hard links are not supported on shared folders")]
    NoHardLinks,
    /// Committed content could not be read.
    #[error(transparent)]
    Read(Box<ReadError>),
    /// A staging file or the journal failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The staging journal is not one (wrong magic, damaged header).
    #[error("the staging journal {} is damaged ({why}); move it away to discard the staged changes", path.display())]
    BadJournal {
        /// The journal.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// A journal record does not fit the tree (a bug, or a journal of another share).
    #[error("the staging journal {} does not replay at offset {offset}: {why}", path.display())]
    Inconsistent {
        /// The journal.
        path: PathBuf,
        /// Where the record ends.
        offset: u64,
        /// What did not fit.
        why: &'static str,
    },
    /// The journal's changes were staged over another version than the one given.
    #[error("the staged changes in {} were made on version {journal_base}, not on the head {head}; open the overlay on {journal_base} to keep them", path.display())]
    HeadMoved {
        /// The journal.
        path: PathBuf,
        /// The version the changes were made on (boxed: two CIDs would make every error big).
        journal_base: Box<Cid>,
        /// The version given to open.
        head: Box<Cid>,
    },
    /// The committed root is not a directory.
    #[error("the committed root {0} is not a directory")]
    RootNotADirectory(Cid),
    /// Building the commit failed.
    #[error("building the commit failed")]
    Import(#[from] ImportError),
    /// Updating a sharded directory failed.
    #[error("building the commit failed")]
    Update(#[from] UpdateError),
    /// The base version's id tree could not be read, or the new one not built.
    #[error("the share's node identities: {0}")]
    Identity(#[from] cairn_store::identity::IdentityError),
    /// A rebase onto another version while changes are staged (commit them first).
    #[error("changes are staged (or a file is open for writing); commit them first")]
    Staged,
    /// `committed` without a matching `commit` just before it.
    #[error("no commit with root {0} is pending (something changed since it was built)")]
    NotPending(Cid),
}

impl From<ReadError> for OverlayError {
    fn from(e: ReadError) -> Self {
        OverlayError::Read(Box::new(e))
    }
}

impl From<JournalError> for OverlayError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io { path, source } => OverlayError::Io { path, source },
            JournalError::Bad { path, why } => OverlayError::BadJournal { path, why },
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OverlayError + '_ {
    move |source| OverlayError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The staging area's identity seed: read from `<stage>/id-seed`, or made (16 random bytes,
/// written and synced) if it is missing or damaged. Losing it changes only the identities of
/// nodes not committed yet.
fn id_seed(stage: &Path) -> Result<[u8; 16], OverlayError> {
    let path = stage.join("id-seed");
    if let Ok(b) = fs::read(&path) {
        if let Ok(seed) = <[u8; 16]>::try_from(b.as_slice()) {
            return Ok(seed);
        }
    }
    let seed = cairn_store::identity::new_id().to_le_bytes();
    let mut f = fs::File::create(&path).map_err(io_at(&path))?;
    io::Write::write_all(&mut f, &seed).map_err(io_at(&path))?;
    f.sync_all().map_err(io_at(&path))?;
    Ok(seed)
}

fn no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl OverlayError {
    /// Whether the failure was a full disk.
    pub fn is_no_space(&self) -> bool {
        match self {
            OverlayError::Io { source, .. } => no_space(source),
            OverlayError::Read(e) => {
                matches!(&**e, ReadError::Get(cairn_store::GetError::Store(s)) if s.is_no_space())
            }
            OverlayError::Import(ImportError::Store(s)) => s.is_no_space(),
            OverlayError::Update(UpdateError::Store(s)) => s.is_no_space(),
            _ => false,
        }
    }

    /// The errno Linux answers for this failure.
    pub fn errno(&self) -> i32 {
        if self.is_no_space() {
            return libc::ENOSPC;
        }
        match self {
            OverlayError::NotFound => libc::ENOENT,
            OverlayError::Exists => libc::EEXIST,
            OverlayError::NotADirectory => libc::ENOTDIR,
            OverlayError::IsADirectory => libc::EISDIR,
            OverlayError::NotEmpty => libc::ENOTEMPTY,
            OverlayError::InvalidName(_) | OverlayError::Invalid(_) => libc::EINVAL,
            OverlayError::NameTooLong(_) => libc::ENAMETOOLONG,
            OverlayError::TooLarge => libc::EFBIG,
            OverlayError::NoHardLinks => libc::EPERM,
            OverlayError::Read(e) => match **e {
                ReadError::NotFound { .. } => libc::ENOENT,
                _ => libc::EIO,
            },
            _ => libc::EIO,
        }
    }
}

impl From<OverlayError> for fuser::Errno {
    fn from(e: OverlayError) -> fuser::Errno {
        fuser::Errno::from_i32(e.errno())
    }
}

/// The time now, as UnixFS records it.
fn now() -> UnixTime {
    unix_time(SystemTime::now())
}

fn unix_time(t: SystemTime) -> UnixTime {
    let (seconds, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-s, 0),
                n => (-s - 1, 1_000_000_000 - n),
            }
        }
    };
    UnixTime {
        seconds,
        nanos: (nanos > 0).then_some(nanos),
    }
}

fn system_time(t: UnixTime) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanos.unwrap_or(0)));
    if t.seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    }
}

/// Checks an entry name: the errno Linux uses for names it cannot store.
fn check_name(name: &OsStr) -> Result<String, OverlayError> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(OverlayError::NameTooLong(b.len()));
    }
    let shown = || String::from_utf8_lossy(b).into_owned();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&0) || b.contains(&b'/') {
        return Err(OverlayError::InvalidName(shown()));
    }
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| OverlayError::InvalidName(shown()))
}

fn check_target(target: &OsStr) -> Result<String, OverlayError> {
    let b = target.as_bytes();
    if b.len() > SYMLINK_MAX {
        return Err(OverlayError::NameTooLong(b.len()));
    }
    if b.is_empty() {
        return Err(OverlayError::NotFound);
    }
    if b.contains(&0) {
        return Err(OverlayError::InvalidName(
            String::from_utf8_lossy(b).into_owned(),
        ));
    }
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| OverlayError::InvalidName(String::from_utf8_lossy(b).into_owned()))
}

/// The staged overlay of one writable share (see the module doc).
#[derive(Debug)]
pub struct Overlay<S> {
    stage: PathBuf,
    reader: DagReader<S>,
    /// The committed version the staged changes apply to.
    base_root: Cid,
    /// The base version's id tree, when known.
    base_ids: Option<Cid>,
    /// This staging area's seed for the identities of nodes made in it (`<stage>/id-seed`).
    id_seed: [u8; 16],
    tree: Tree,
    journal: Journal,
    data: DataFiles,
    /// The commit built last, until something changes.
    pending: Option<commit::Pending>,
}

impl<S: BlockSource + Clone> Overlay<S> {
    /// Opens the staging directory `stage_dir` (made if missing) over the committed root
    /// directory `committed_root` (the share's head), replaying the journal there: the tree
    /// is as it was at the last record written (at least at the last [`Overlay::sync`]).
    ///
    /// A journal made on another version is used only when that is known to be safe: it is
    /// discarded when it stages no change, or when its last record says it was committed as
    /// `committed_root` (the reset after that commit did not happen); when changes followed
    /// such a commit, they are all replayed over the journal's own base (which the head
    /// contains), and [`Overlay::base`] says so. Otherwise [`OverlayError::HeadMoved`]: the
    /// head moved under staged changes, and the caller decides.
    pub async fn open(
        stage_dir: &Path,
        committed_root: Cid,
        reader: DagReader<S>,
    ) -> Result<Overlay<S>, OverlayError> {
        let data_dir = stage_dir.join("data");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(io_at(&data_dir))?;
        let path = stage_dir.join("journal");
        let replayed = journal::read(&path)?;
        let (base, records, valid_len, next_id) = match replayed {
            None => (committed_root, Vec::new(), None, 0),
            Some(r) if r.base == committed_root => {
                if r.file_len > r.valid_len {
                    tracing::warn!(journal = %path.display(), offset = r.valid_len, "cutting a torn tail off the staging journal");
                }
                (r.base, r.records, Some(r.valid_len), r.next_id)
            }
            Some(r) => {
                let is_head = |rec: &Record| matches!(rec, Record::Committed { root } if *root == committed_root);
                let changes_nothing = r
                    .records
                    .iter()
                    .all(|(rec, _)| matches!(rec, Record::Bind { .. } | Record::Committed { .. }));
                if changes_nothing || r.records.last().is_some_and(|(rec, _)| is_head(rec)) {
                    (committed_root, Vec::new(), None, r.next_id)
                } else if r.records.iter().any(|(rec, _)| is_head(rec)) {
                    tracing::warn!(
                        journal = %path.display(), base = %r.base, head = %committed_root,
                        "changes followed a commit whose reset did not happen; replaying them over the earlier version"
                    );
                    (r.base, r.records, Some(r.valid_len), r.next_id)
                } else {
                    return Err(OverlayError::HeadMoved {
                        path,
                        journal_base: Box::new(r.base),
                        head: Box::new(committed_root),
                    });
                }
            }
        };
        let info = reader.stat(&base).await?;
        if info.kind != EntryKind::Directory {
            return Err(OverlayError::RootNotADirectory(base));
        }
        let mut tree = Tree::new(Base::from_info(&info, 0), now());
        tree.next_id = tree.next_id.max(next_id);
        for (rec, end) in &records {
            tree.apply(rec).map_err(|e| OverlayError::Inconsistent {
                path: path.clone(),
                offset: *end,
                why: e.0,
            })?;
        }
        let mut data = DataFiles::new(data_dir);
        let (ids, other) = data.list().map_err(io_at(data.dir()))?;
        for id in ids {
            let keep = tree.node(id).is_some_and(Node::staged) && tree.in_tree(id);
            if !keep {
                let p = data.path(id);
                data.remove(id).map_err(io_at(&p))?;
            }
        }
        for p in other {
            let _ = fs::remove_file(&p);
        }
        tree.doomed.clear();
        let staged: Vec<NodeId> = tree
            .nodes
            .iter()
            .filter(|(_, n)| n.staged())
            .map(|(id, _)| *id)
            .collect();
        for id in staged {
            let len = data.len(id).map_err(io_at(&data.path(id)))?;
            if let Some(Content::File { size, .. }) = tree.node_mut(id).map(|n| &mut n.content) {
                *size = len;
            }
        }
        let _ = fs::remove_file(stage_dir.join(commit::TEMP_FILE));
        let journal = match valid_len {
            Some(len) => Journal::open(&path, len)?,
            None => Journal::create(&path, base, tree.next_id)?,
        };
        Ok(Overlay {
            stage: stage_dir.to_path_buf(),
            reader,
            base_root: base,
            base_ids: None,
            id_seed: id_seed(stage_dir)?,
            tree,
            journal,
            data,
            pending: None,
        })
    }

    /// The committed version the staged changes apply to.
    pub fn base(&self) -> Cid {
        self.base_root
    }

    /// The base version's id tree, when known.
    pub fn base_ids(&self) -> Option<Cid> {
        self.base_ids
    }

    /// Says that `ids` is the id tree of the base version (the share head's, when the base
    /// is the head): node identities of the next commit are taken from it.
    pub fn set_base_ids(&mut self, ids: Option<Cid>) {
        self.base_ids = ids;
    }

    /// The reader committed content is read through.
    pub fn reader(&self) -> &DagReader<S> {
        &self.reader
    }

    fn node(&self, id: NodeId) -> Result<&Node, OverlayError> {
        self.tree.node(id).ok_or(OverlayError::NotFound)
    }

    fn bug(&self, why: tree::Inconsistent) -> OverlayError {
        OverlayError::Inconsistent {
            path: self.journal.path().to_path_buf(),
            offset: self.journal.len(),
            why: why.0,
        }
    }

    /// Appends `rec` and applies it; records about nodes outside the tree (unlinked, still
    /// open) are applied only: they would not replay, and such nodes do not survive a restart.
    fn log(&mut self, rec: Record, about: NodeId) -> Result<(), OverlayError> {
        if !matches!(rec, Record::Bind { .. }) {
            self.pending = None;
        }
        if self.tree.in_tree(about) {
            self.journal
                .append(&rec)
                .map_err(io_at(self.journal.path()))?;
        }
        self.tree.apply(&rec).map_err(|e| self.bug(e))
    }

    /// The node named `name` in directory `parent`, reading the committed listing if need be.
    /// The child `name` of `parent`, which must exist.
    async fn existing_child(&mut self, parent: NodeId, name: &str) -> Result<NodeId, OverlayError> {
        self.child(parent, name)
            .await?
            .ok_or(OverlayError::NotFound)
    }

    async fn child(&mut self, parent: NodeId, name: &str) -> Result<Option<NodeId>, OverlayError> {
        let p = self.node(parent)?;
        if p.dir().is_none() {
            return Err(OverlayError::NotADirectory);
        }
        match self.tree.known(parent, name) {
            Known::Node(id) => return Ok(Some(id)),
            Known::Removed => return Ok(None),
            Known::Committed => {}
        }
        let Some(base) = p.base.as_ref().map(|b| b.cid) else {
            return Ok(None);
        };
        let Some(entry) = self.reader.lookup_entry(&base, name).await? else {
            return Ok(None);
        };
        let info = match entry.tsize {
            Some(t) if entry.cid.codec() == RAW => NodeInfo::raw_file(entry.cid, t),
            _ => self.reader.stat(&entry.cid).await?,
        };
        let base = Base::from_info(&info, entry.tsize.unwrap_or(0));
        let id = self
            .tree
            .add_committed(parent, name, info.kind, base)
            .map_err(|e| self.bug(e))?;
        Ok(Some(id))
    }

    /// A directory in the tree (not one that was removed while held).
    fn live_dir(&self, id: NodeId) -> Result<(), OverlayError> {
        if self.node(id)?.dir().is_none() {
            return Err(OverlayError::NotADirectory);
        }
        if !self.tree.in_tree(id) {
            return Err(OverlayError::NotFound);
        }
        Ok(())
    }

    /// Makes the journal name `id` (and its ancestors) before a record about it. Nodes out of
    /// the tree are not journaled (see [`Overlay::log`]), so they need no name.
    fn bind(&mut self, id: NodeId) -> Result<(), OverlayError> {
        if !self.tree.in_tree(id) {
            self.node(id)?;
            return Ok(());
        }
        let mut chain = Vec::new();
        let mut at = id;
        loop {
            let n = self.node(at)?;
            if n.bound {
                break;
            }
            let Some(p) = n.parent else {
                return Err(self.bug(tree::Inconsistent("an unbound node outside the tree")));
            };
            chain.push(at);
            at = p;
        }
        for id in chain.into_iter().rev() {
            let n = self.node(id)?;
            let (Some(parent), Some(base)) = (n.parent, n.base.clone()) else {
                return Err(self.bug(tree::Inconsistent("an unbound node without a base")));
            };
            let rec = Record::Bind {
                parent,
                id,
                name: n.name.clone(),
                kind: n.kind(),
                base,
            };
            self.log(rec, id)?;
        }
        Ok(())
    }

    fn attr(&self, id: NodeId, n: &Node) -> Attr {
        let size = match &n.content {
            Content::File { size, .. } => *size,
            Content::Dir(_) => 0,
            Content::Symlink(t) => t.len() as u64,
        };
        let linked = n.parent.is_some() || id == NodeId::ROOT;
        Attr {
            id,
            kind: n.kind(),
            size,
            mode: n.mode,
            mtime: system_time(n.mtime),
            ctime: system_time(n.ctime),
            nlink: match (linked, n.kind()) {
                (false, _) => 0,
                (true, EntryKind::Directory) => 2,
                (true, _) => 1,
            },
            dirty: n.dirty,
        }
    }

    /// The attributes of `id`.
    pub fn getattr(&self, id: NodeId) -> Result<Attr, OverlayError> {
        Ok(self.attr(id, self.node(id)?))
    }

    /// Looks `name` up in directory `parent`; the kernel now holds one more reference to the
    /// node (see [`Overlay::forget`]).
    pub async fn lookup(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
    ) -> Result<Attr, OverlayError> {
        let name = check_name(name.as_ref())?;
        let id = self.existing_child(parent, &name).await?;
        if let Some(n) = self.tree.node_mut(id) {
            n.lookups += 1;
        }
        self.getattr(id)
    }

    /// The kernel dropped `n` references to `id`: a node nobody needs any more leaves memory.
    pub fn forget(&mut self, id: NodeId, n: u64) {
        if let Some(node) = self.tree.node_mut(id) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.tree.drop_unused(id);
            }
        }
    }

    async fn make(
        &mut self,
        parent: NodeId,
        name: &OsStr,
        kind: EntryKind,
        mode: u32,
        target: String,
    ) -> Result<Attr, OverlayError> {
        let name = check_name(name)?;
        self.live_dir(parent)?;
        if self.child(parent, &name).await?.is_some() {
            return Err(OverlayError::Exists);
        }
        self.bind(parent)?;
        let id = self.tree.alloc();
        let rec = Record::New {
            parent,
            id,
            name,
            kind,
            mode: mode & 0o7777,
            time: now(),
            target,
        };
        self.log(rec, parent)?;
        if let Some(n) = self.tree.node_mut(id) {
            n.lookups += 1;
        }
        self.getattr(id)
    }

    /// Creates an empty file (`O_CREAT|O_EXCL`: `EEXIST` if the name is taken). `mode` is
    /// taken as given (`& 0o7777`): the caller applies the umask.
    pub async fn create(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
        mode: u32,
    ) -> Result<Attr, OverlayError> {
        self.make(parent, name.as_ref(), EntryKind::File, mode, String::new())
            .await
    }

    /// Creates a directory (`mode` as for [`Overlay::create`]).
    pub async fn mkdir(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
        mode: u32,
    ) -> Result<Attr, OverlayError> {
        self.make(
            parent,
            name.as_ref(),
            EntryKind::Directory,
            mode,
            String::new(),
        )
        .await
    }

    /// Creates a symlink to `target`.
    pub async fn symlink(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
        target: impl AsRef<OsStr>,
    ) -> Result<Attr, OverlayError> {
        let target = check_target(target.as_ref())?;
        self.make(parent, name.as_ref(), EntryKind::Symlink, 0o777, target)
            .await
    }

    /// Hard links are refused: a node has one parent, as UnixFS has no link count.
    pub fn link(
        &mut self,
        _id: NodeId,
        _parent: NodeId,
        _name: impl AsRef<OsStr>,
    ) -> Result<Attr, OverlayError> {
        Err(OverlayError::NoHardLinks)
    }

    /// Removes a file or symlink. The node stays readable and writable through its id while
    /// the kernel holds it.
    pub async fn unlink(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
    ) -> Result<(), OverlayError> {
        let name = check_name(name.as_ref())?;
        self.live_dir(parent)?;
        let id = self.existing_child(parent, &name).await?;
        if self.node(id)?.kind() == EntryKind::Directory {
            return Err(OverlayError::IsADirectory);
        }
        self.bind(id)?;
        self.log(
            Record::Remove {
                parent,
                name,
                time: now(),
            },
            parent,
        )
    }

    /// Removes an empty directory.
    pub async fn rmdir(
        &mut self,
        parent: NodeId,
        name: impl AsRef<OsStr>,
    ) -> Result<(), OverlayError> {
        let name = check_name(name.as_ref())?;
        self.live_dir(parent)?;
        let id = self.existing_child(parent, &name).await?;
        if self.node(id)?.kind() != EntryKind::Directory {
            return Err(OverlayError::NotADirectory);
        }
        if !self.is_empty(id).await? {
            return Err(OverlayError::NotEmpty);
        }
        self.bind(id)?;
        self.log(
            Record::Remove {
                parent,
                name,
                time: now(),
            },
            parent,
        )
    }

    /// Whether directory `id` has no entries.
    async fn is_empty(&self, id: NodeId) -> Result<bool, OverlayError> {
        let n = self.node(id)?;
        let Some(d) = n.dir() else {
            return Err(OverlayError::NotADirectory);
        };
        if !d.known.is_empty() || d.changes.values().any(|s| matches!(s, Slot::Node(_))) {
            return Ok(false);
        }
        let Some(base) = n.base.as_ref().filter(|b| b.nonempty).map(|b| b.cid) else {
            return Ok(true);
        };
        let removed: HashSet<String> = d.changes.keys().cloned().collect();
        let mut cursor = self.reader.dir_cursor(&base);
        while let Some(e) = cursor.next_entry().await? {
            if !removed.contains(&e.name) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Renames `src_name` in `src_parent` to `dst_name` in `dst_parent`, replacing what is
    /// there as `rename(2)` does; `flags` may hold [`RENAME_NOREPLACE`] or
    /// [`RENAME_EXCHANGE`] (any other flag, or both: `EINVAL`).
    pub async fn rename(
        &mut self,
        src_parent: NodeId,
        src_name: impl AsRef<OsStr>,
        dst_parent: NodeId,
        dst_name: impl AsRef<OsStr>,
        flags: u32,
    ) -> Result<(), OverlayError> {
        let src_name = check_name(src_name.as_ref())?;
        let dst_name = check_name(dst_name.as_ref())?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 {
            return Err(OverlayError::Invalid("unsupported rename flags"));
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        let noreplace = flags & RENAME_NOREPLACE != 0;
        if exchange && noreplace {
            return Err(OverlayError::Invalid(
                "RENAME_EXCHANGE and RENAME_NOREPLACE exclude each other",
            ));
        }
        self.live_dir(src_parent)?;
        self.live_dir(dst_parent)?;
        let src = self.existing_child(src_parent, &src_name).await?;
        let dst = self.child(dst_parent, &dst_name).await?;
        if exchange && dst.is_none() {
            return Err(OverlayError::NotFound);
        }
        if noreplace && dst.is_some() {
            return Err(OverlayError::Exists);
        }
        if dst == Some(src) {
            return Ok(());
        }
        let src_dir = self.node(src)?.kind() == EntryKind::Directory;
        if src_dir && self.tree.is_ancestor(src, dst_parent) {
            return Err(OverlayError::Invalid(
                "a directory cannot move below itself",
            ));
        }
        if let Some(d) = dst {
            let dst_dir = self.node(d)?.kind() == EntryKind::Directory;
            if exchange {
                if dst_dir && self.tree.is_ancestor(d, src_parent) {
                    return Err(OverlayError::Invalid(
                        "a directory cannot move below itself",
                    ));
                }
            } else if src_dir && !dst_dir {
                return Err(OverlayError::NotADirectory);
            } else if !src_dir && dst_dir {
                return Err(OverlayError::IsADirectory);
            } else if dst_dir && !self.is_empty(d).await? {
                return Err(OverlayError::NotEmpty);
            }
        }
        self.bind(src)?;
        self.bind(dst_parent)?;
        if let Some(d) = dst {
            self.bind(d)?;
        }
        self.log(
            Record::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                exchange,
                time: now(),
            },
            src_parent,
        )
    }

    fn file_size(&self, id: NodeId) -> Result<(u64, bool), OverlayError> {
        match &self.node(id)?.content {
            Content::File { size, staged } => Ok((*size, *staged)),
            Content::Dir(_) => Err(OverlayError::IsADirectory),
            Content::Symlink(_) => Err(OverlayError::Invalid("not a regular file")),
        }
    }

    /// Moves a committed file's content into its staging file (the first `keep` bytes, all
    /// by default): copied, synced, then journaled.
    async fn stage(&mut self, id: NodeId, keep: Option<u64>) -> Result<(), OverlayError> {
        let (size, staged) = self.file_size(id)?;
        if staged {
            return Ok(());
        }
        let Some(cid) = self.node(id)?.base.as_ref().map(|b| b.cid) else {
            return Err(self.bug(tree::Inconsistent("an unstaged file without a base")));
        };
        let copied = keep.map_or(size, |k| k.min(size));
        self.bind(id)?;
        if let Err(e) = self.copy_committed(id, &cid, copied).await {
            let _ = self.data.remove(id);
            return Err(e);
        }
        if let Err(e) = self.log(Record::Stage { id, copied }, id) {
            let _ = self.data.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// Writes the first `len` bytes of committed file `cid` into `id`'s staging file (all-zero
    /// chunks stay holes) and makes it durable.
    async fn copy_committed(
        &mut self,
        id: NodeId,
        cid: &Cid,
        len: u64,
    ) -> Result<(), OverlayError> {
        let path = self.data.path(id);
        self.data.remove(id).map_err(io_at(&path))?;
        let mut cursor = self.reader.cursor(cid, 0);
        let mut pos = 0u64;
        while pos < len {
            let Some(chunk) = cursor.next_chunk().await? else {
                break;
            };
            let take = chunk
                .len()
                .min(usize::try_from(len - pos).unwrap_or(usize::MAX));
            let piece = &chunk[..take];
            if piece.iter().any(|&b| b != 0) {
                self.data.write_at(id, pos, piece).map_err(io_at(&path))?;
            }
            pos += take as u64;
        }
        self.data.set_len(id, len).map_err(io_at(&path))?;
        self.data.sync_file(id).map_err(io_at(&path))?;
        self.data.sync_dir().map_err(io_at(&path))?;
        self.data.dirty.remove(&id);
        Ok(())
    }

    /// The content changed: mtime and ctime are now (recorded in the journal at the next sync).
    fn content_changed(&mut self, id: NodeId, size: u64) {
        self.pending = None;
        let t = now();
        if let Some(n) = self.tree.node_mut(id) {
            if let Content::File { size: s, .. } = &mut n.content {
                *s = size;
            }
            n.mtime = t;
            n.ctime = t;
        }
        self.tree.mark_dirty(id);
    }

    /// Writes `data` at `offset` of file `id`; returns the bytes written.
    pub async fn write(
        &mut self,
        id: NodeId,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, OverlayError> {
        if let Some(done) = self.write_now(id, offset, data) {
            return done;
        }
        self.stage(id, None).await?;
        self.write_now(id, offset, data)
            .unwrap_or_else(|| Err(self.bug(tree::Inconsistent("a file just staged is not"))))
    }

    /// [`Overlay::write`] without waiting: `None` when file `id` is not staged yet (its first
    /// write copies committed content, which may need blocks; call `write` then).
    pub fn write_now(
        &mut self,
        id: NodeId,
        offset: u64,
        data: &[u8],
    ) -> Option<Result<usize, OverlayError>> {
        let (size, staged) = match self.file_size(id) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let Some(end) = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_FILE_SIZE)
        else {
            return Some(Err(OverlayError::TooLarge));
        };
        if data.is_empty() {
            return Some(Ok(0));
        }
        if !staged {
            return None;
        }
        let path = self.data.path(id);
        if let Err(e) = self.data.write_at(id, offset, data) {
            return Some(Err(io_at(&path)(e)));
        }
        self.content_changed(id, size.max(end));
        Some(Ok(data.len()))
    }

    /// [`Overlay::read`] of a staged file without waiting: `None` when file `id` is committed
    /// content (read it through the read path, see [`Overlay::content`]).
    pub fn read_now(
        &mut self,
        id: NodeId,
        offset: u64,
        len: usize,
    ) -> Option<Result<Bytes, OverlayError>> {
        let (size, staged) = match self.file_size(id) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        if !staged {
            return None;
        }
        if offset >= size || len == 0 {
            return Some(Ok(Bytes::new()));
        }
        let n = usize::try_from((size - offset).min(len as u64)).unwrap_or(len);
        let mut buf = vec![0u8; n];
        let path = self.data.path(id);
        Some(
            self.data
                .read_at(id, offset, &mut buf)
                .map(|()| Bytes::from(buf))
                .map_err(io_at(&path)),
        )
    }

    /// Up to `len` bytes of file `id` from `offset` (fewer at the end of the file).
    pub async fn read(
        &mut self,
        id: NodeId,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, OverlayError> {
        if let Some(staged) = self.read_now(id, offset, len) {
            return staged;
        }
        let (size, _) = self.file_size(id)?;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let n = usize::try_from((size - offset).min(len as u64)).unwrap_or(len);
        let Some(cid) = self.node(id)?.base.as_ref().map(|b| b.cid) else {
            return Ok(Bytes::new());
        };
        Ok(self.reader.read(&cid, offset, n).await?)
    }

    /// Where file `id`'s content is, for a read path of its own.
    pub fn content(&self, id: NodeId) -> Result<FileContent, OverlayError> {
        let (_, staged) = self.file_size(id)?;
        match (&self.node(id)?.base, staged) {
            (Some(b), false) => Ok(FileContent::Committed(b.cid)),
            _ => Ok(FileContent::Staged),
        }
    }

    /// The CID of `id` as of the last commit (`None`: made since).
    pub fn committed_cid(&self, id: NodeId) -> Result<Option<Cid>, OverlayError> {
        Ok(self.node(id)?.base.as_ref().map(|b| b.cid))
    }

    /// The target of symlink `id`.
    pub fn readlink(&self, id: NodeId) -> Result<String, OverlayError> {
        match &self.node(id)?.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(OverlayError::Invalid("not a symlink")),
        }
    }

    /// Changes mode, size (truncating, or extending with a hole) and mtime.
    pub async fn setattr(&mut self, id: NodeId, set: SetAttr) -> Result<Attr, OverlayError> {
        if let Some(new) = set.size {
            let (size, staged) = self.file_size(id)?;
            if new > MAX_FILE_SIZE {
                return Err(OverlayError::TooLarge);
            }
            if staged || new != size {
                self.stage(id, Some(new)).await?;
                let path = self.data.path(id);
                self.data.set_len(id, new).map_err(io_at(&path))?;
                self.content_changed(id, new);
            }
        }
        if set.mode.is_some() || set.mtime.is_some() {
            self.bind(id)?;
            let t = now();
            let (mtime, explicit) = match set.mtime {
                None => (None, false),
                Some(TimeSet::Now) => (Some(t), false),
                Some(TimeSet::At(x)) => (Some(unix_time(x)), true),
            };
            let rec = Record::SetAttr {
                id,
                mode: set.mode.map(|m| m & 0o7777),
                mtime,
                explicit,
                ctime: t,
            };
            self.log(rec, id)?;
        }
        self.getattr(id)
    }

    /// Makes every change so far durable (FUSE `fsync`, `fdatasync`, `fsyncdir`): the
    /// staging files written since the last sync, then the journal (see the module doc).
    pub fn sync(&mut self) -> Result<(), OverlayError> {
        let mut dirty: Vec<NodeId> = self
            .data
            .dirty
            .iter()
            .copied()
            .filter(|id| self.tree.node(*id).is_some_and(Node::staged) && self.tree.in_tree(*id))
            .collect();
        dirty.sort();
        for &id in &dirty {
            let Some(n) = self.tree.node(id) else {
                continue;
            };
            let rec = Record::SetAttr {
                id,
                mode: None,
                mtime: Some(n.mtime),
                explicit: false,
                ctime: n.ctime,
            };
            self.journal
                .append(&rec)
                .map_err(io_at(self.journal.path()))?;
            self.tree.apply(&rec).map_err(|e| self.bug(e))?;
        }
        let dir = self.data.dir().to_path_buf();
        if dirty.len() > data::SYNCFS_AFTER {
            self.data.sync_everything().map_err(io_at(&dir))?;
        } else {
            for &id in &dirty {
                let path = self.data.path(id);
                self.data.sync_file(id).map_err(io_at(&path))?;
            }
            self.data.sync_dir().map_err(io_at(&dir))?;
        }
        cairn_store::crash_point("overlay-data-synced");
        self.journal.sync().map_err(io_at(self.journal.path()))?;
        self.data.dirty.clear();
        for id in std::mem::take(&mut self.tree.doomed) {
            let path = self.data.path(id);
            self.data.remove(id).map_err(io_at(&path))?;
        }
        Ok(())
    }

    /// A streamed listing of directory `id`: the committed entries that are still there, then
    /// the new ones. It is a snapshot of the changes at this call.
    pub fn dir_cursor(&self, id: NodeId) -> Result<OverlayDir<S>, OverlayError> {
        let n = self.node(id)?;
        let Some(d) = n.dir() else {
            return Err(OverlayError::NotADirectory);
        };
        let hidden: HashSet<String> = d.changes.keys().cloned().collect();
        let known: HashMap<String, (NodeId, EntryKind)> = d
            .known
            .iter()
            .filter_map(|(name, id)| Some((name.clone(), (*id, self.tree.node(*id)?.kind()))))
            .collect();
        let added: Vec<DirItem> = d
            .changes
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Node(c) => {
                    let child = self.tree.node(*c)?;
                    Some(DirItem {
                        name: name.clone(),
                        id: Some(*c),
                        kind: Some(child.kind()),
                        cid: child.base.as_ref().map(|b| b.cid),
                    })
                }
                Slot::Removed => None,
            })
            .collect();
        Ok(OverlayDir {
            base: n.base.as_ref().map(|b| self.reader.dir_cursor(&b.cid)),
            hidden,
            known,
            added: added.into_iter(),
        })
    }

    /// Every entry of directory `id`, in name order, with every kind known (committed entries
    /// are stat'ed). For small directories and tests; a FUSE `readdir` streams
    /// [`Overlay::dir_cursor`].
    pub async fn read_dir(&self, id: NodeId) -> Result<Vec<DirItem>, OverlayError> {
        let mut cursor = self.dir_cursor(id)?;
        let mut out = Vec::new();
        while let Some(mut item) = cursor.next_entry().await? {
            if let (None, Some(cid)) = (item.kind, item.cid) {
                item.kind = Some(self.reader.stat(&cid).await?.kind);
            }
            out.push(item);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A listing of one overlay directory (see [`Overlay::dir_cursor`]).
#[derive(Debug)]
pub struct OverlayDir<S> {
    base: Option<DirCursor<S>>,
    hidden: HashSet<String>,
    known: HashMap<String, (NodeId, EntryKind)>,
    added: std::vec::IntoIter<DirItem>,
}

impl<S: BlockSource + Clone> OverlayDir<S> {
    /// The next entry, or `None` at the end.
    pub async fn next_entry(&mut self) -> Result<Option<DirItem>, OverlayError> {
        if let Some(cursor) = &mut self.base {
            while let Some(e) = cursor.next_entry().await? {
                if self.hidden.contains(&e.name) {
                    continue;
                }
                let (id, kind) = match self.known.get(&e.name) {
                    Some((id, kind)) => (Some(*id), Some(*kind)),
                    None => (None, (e.cid.codec() == RAW).then_some(EntryKind::File)),
                };
                return Ok(Some(DirItem {
                    name: e.name,
                    id,
                    kind,
                    cid: Some(e.cid),
                }));
            }
            self.base = None;
        }
        Ok(self.added.next())
    }
}
