//! The FUSE callbacks. Anything that needs blocks runs as a task on the tokio runtime under
//! the mount's timeout; the FUSE thread only answers from memory or hands the reply over.
//!
//! Per-mount tables and their bounds: inodes follow the kernel's lookup counts (`inode.rs`);
//! open files and open directories are at most [`MAX_OPEN_FILES`] and [`MAX_OPEN_DIRS`]
//! (EMFILE beyond), a directory handle holds a cursor and at most one batch of entries
//! (`listing.rs`); leaf data is an LRU bounded in bytes (`cache.rs`); decoded interior nodes
//! are bounded in the reader.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use cairn_store::{BlockSource, Cid, DagReader, EntryKind, NodeInfo, ReadError, RAW};
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::cache::LeafCache;
use crate::error::FsError;
use crate::inode::{Ino, Inode, InodeTable, Refused};
use crate::listing::{file_type, DirStream};
use crate::options::MountOptions;

/// The extended attribute holding a node's CID.
pub(crate) const XATTR_CID: &str = "user.cairn.cid";
/// The extended attribute reporting how much of a node is stored locally.
pub(crate) const XATTR_LOCAL: &str = "user.cairn.local";
/// The extended attribute of the mount root giving the number of inodes the mount holds.
pub(crate) const XATTR_INODES: &str = "user.cairn.inodes";
/// Leaves fetched at once by one read or prefetch.
const FETCH_PARALLEL: usize = 16;
/// Open file handles per mount.
pub(crate) const MAX_OPEN_FILES: usize = 1 << 16;
/// Open directory handles per mount.
pub(crate) const MAX_OPEN_DIRS: usize = 1 << 14;
/// Prefetch tasks in flight for the whole mount.
const PREFETCH_TASKS: usize = 8;
/// Leaves counted for `user.cairn.local` before giving up.
const LOCAL_REPORT_MAX_LEAVES: usize = 1 << 20;

/// State shared by the FUSE thread and the tasks it spawns.
pub(crate) struct Shared<S> {
    pub reader: DagReader<S>,
    pub inodes: Mutex<InodeTable>,
    pub cache: LeafCache,
    /// Leaves being fetched now; waiters share the one fetch.
    inflight: Mutex<HashMap<Cid, Arc<OnceCell<Bytes>>>>,
    handles: Mutex<HashMap<u64, OpenFile>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirStream<S>>>>>,
    next_fh: AtomicU64,
    prefetch: Arc<Semaphore>,
    pub options: MountOptions,
    /// Whether the root resolves any CID by name.
    pub namespace: bool,
    pub uid: u32,
    pub gid: u32,
    /// The times of nodes without a UnixFS mtime (and of synthetic directories).
    pub default_mtime: SystemTime,
}

/// Readahead state of one open file.
#[derive(Debug)]
struct OpenFile {
    cid: Cid,
    size: u64,
    /// Where the next sequential read would start.
    next: u64,
    /// The current window; 0 until a sequential read is seen.
    window: u64,
    /// Everything before this has been prefetched.
    prefetched_to: u64,
}

/// The filesystem handed to fuser.
pub(crate) struct CairnFs<S> {
    pub shared: Arc<Shared<S>>,
    pub rt: Handle,
}

/// The parts of a read as one buffer (no copy for a read inside one leaf).
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| buf.extend_from_slice(p));
            buf.freeze()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single update; a panic cannot leave the state half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn system_time(t: cairn_store::UnixTime) -> SystemTime {
    let nanos = t.nanos.unwrap_or(0).min(999_999_999);
    let base = if t.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.seconds.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))
    };
    base.and_then(|b| b.checked_add(Duration::from_nanos(u64::from(nanos))))
        .unwrap_or(UNIX_EPOCH)
}

/// Answers an extended attribute request: the size when asked for it, else the bytes.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if size < len {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl<S: BlockSource + Clone> Shared<S> {
    pub(crate) fn new(
        reader: DagReader<S>,
        table: InodeTable,
        options: MountOptions,
        namespace: bool,
        uid: u32,
        gid: u32,
    ) -> Self {
        // Content without a recorded mtime shows when it appeared here rather than 1970.
        let default_mtime = options.default_mtime.unwrap_or_else(SystemTime::now);
        Shared {
            default_mtime,
            reader,
            inodes: Mutex::new(table),
            cache: LeafCache::new(options.cache_bytes),
            inflight: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            prefetch: Arc::new(Semaphore::new(PREFETCH_TASKS)),
            options,
            namespace,
            uid,
            gid,
        }
    }

    fn inode(&self, ino: Ino) -> Result<Inode, FsError> {
        lock(&self.inodes)
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    fn attr(&self, ino: Ino, node: Option<&NodeInfo>) -> FileAttr {
        let (kind, size, perm, mtime) = match node {
            None => (FileType::Directory, 0, 0o555, self.default_mtime),
            Some(info) => {
                let default = match info.kind {
                    EntryKind::File => 0o444,
                    EntryKind::Directory => 0o555,
                    EntryKind::Symlink => 0o777,
                };
                // Setuid/setgid/sticky bits from content are never exposed.
                let perm = info.mode.map_or(default, |m| (m & 0o777) as u16);
                (
                    file_type(info.kind),
                    info.size,
                    perm,
                    info.mtime.map_or(self.default_mtime, system_time),
                )
            }
        };
        FileAttr {
            ino: INodeNo(ino.0),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 256 << 10,
            flags: 0,
        }
    }

    /// The attributes of `parent/name` if the table knows it already (no I/O), counting the
    /// lookup the reply will hand the kernel.
    fn known_child(&self, parent: Ino, name: &str) -> Option<FileAttr> {
        let (ino, inode) = lock(&self.inodes).lookup_known(parent, name)?;
        Some(self.attr(ino, inode.node.as_ref()))
    }

    /// `parent/name` answered without waiting, or `None` if that needs a task: from the table,
    /// or from the directory's nodes and the entry's root when they are cached or small and local
    /// (`DagReader::lookup_entry_now`, never the network). A `find` over local content is
    /// answered this way, on the FUSE thread, one round trip per lookup.
    fn lookup_now(&self, parent: Ino, name: &str) -> Option<Result<FileAttr, FsError>> {
        if let Some(attr) = self.known_child(parent, name) {
            return Some(Ok(attr));
        }
        let dir = lock(&self.inodes).get(parent)?.node.clone()?;
        if dir.kind != EntryKind::Directory {
            return None;
        }
        let entry = match self.reader.lookup_entry_now(&dir.cid, name)? {
            Ok(Some(e)) => e,
            Ok(None) => return Some(Err(FsError::NotFound)),
            // The task answers it, and logs why.
            Err(_) => return None,
        };
        let info = match (entry.cid.codec(), entry.tsize) {
            (RAW, Some(size)) => NodeInfo::raw_file(entry.cid, size),
            _ => self.reader.stat_now(&entry.cid)?.ok()?,
        };
        let ino = self.remember(parent, name, info.clone());
        Some(ino.map(|ino| self.attr(ino, Some(&info))))
    }

    /// Adds `parent/name` to the table (or counts one more lookup of it).
    fn remember(&self, parent: Ino, name: &str, info: NodeInfo) -> Result<Ino, FsError> {
        let r = lock(&self.inodes).remember(parent, name, info);
        r.map_err(|refused| match refused {
            Refused::NoParent => FsError::NotFound,
            Refused::TooDeep => FsError::TooDeep,
            Refused::TooManyAliases { cid, first } => {
                if first {
                    tracing::warn!(
                        %cid,
                        max = crate::inode::MAX_DIR_ALIASES,
                        "directory reached through too many paths at once; refusing more \
                         (a DAG that links the same directory from many places?)"
                    );
                }
                FsError::TooManyAliases
            }
        })
    }

    /// A node's metadata; a raw block with a size-carrying link needs no fetch.
    async fn stat_child(
        reader: &DagReader<S>,
        cid: Cid,
        tsize: Option<u64>,
    ) -> Result<NodeInfo, ReadError> {
        match (cid.codec(), tsize) {
            (RAW, Some(size)) => Ok(NodeInfo::raw_file(cid, size)),
            _ => reader.stat(&cid).await,
        }
    }

    async fn lookup(self: Arc<Self>, parent: Ino, name: String) -> Result<FileAttr, FsError> {
        let dir = self.inode(parent)?;
        let info = match &dir.node {
            None if self.namespace => {
                let cid = Cid::try_from(name.as_str()).map_err(|_| FsError::NotFound)?;
                self.reader.stat(&cid).await?
            }
            None => return Err(FsError::NotFound),
            Some(info) if info.kind != EntryKind::Directory => return Err(FsError::NotADirectory),
            Some(info) => {
                let entry = self
                    .reader
                    .lookup_entry(&info.cid, &name)
                    .await?
                    .ok_or(FsError::NotFound)?;
                Self::stat_child(&self.reader, entry.cid, entry.tsize).await?
            }
        };
        let ino = self.remember(parent, &name, info.clone())?;
        Ok(self.attr(ino, Some(&info)))
    }

    /// The data of `leaves` (as returned by `DagReader::leaves`), from the cache or fetched.
    async fn leaf_data(
        self: &Arc<Self>,
        leaves: &[(Cid, u64, u64)],
    ) -> Result<Vec<Bytes>, FsError> {
        let mut out: Vec<Option<Bytes>> = leaves.iter().map(|l| self.cache.get(&l.0)).collect();
        let mut todo: Vec<usize> = (0..leaves.len())
            .filter(|&i| out[i].is_none())
            .rev()
            .collect();
        // One missing leaf (the common case of a read inside one leaf): no task needed.
        if let ([i], 1) = (todo.as_slice(), leaves.len()) {
            let (cid, _, len) = leaves[*i];
            return Ok(vec![self.fetch_leaf(cid, len).await?]);
        }
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < FETCH_PARALLEL {
                let Some(i) = todo.pop() else { break };
                let this = self.clone();
                let (cid, _, len) = leaves[i];
                tasks.spawn(async move { this.fetch_leaf(cid, len).await.map(|d| (i, d)) });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok(Ok((i, data))) => out[i] = Some(data),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(FsError::NotFound),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One leaf's data, from the cache or fetched and checked against the `len` its parent
    /// gives. A read and a prefetch wanting the same leaf share one fetch (and one hash check).
    async fn fetch_leaf(self: &Arc<Self>, cid: Cid, len: u64) -> Result<Bytes, FsError> {
        let cell = {
            let mut inflight = lock(&self.inflight);
            // Looked up under the in-flight lock: a finished fetch is in the cache before it
            // leaves the in-flight map, so no fetch is started twice.
            if let Some(data) = self.cache.get(&cid) {
                return Ok(data);
            }
            inflight.entry(cid).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| async {
                let data = self.reader.node_data(&cid).await?;
                if data.len() as u64 != len {
                    return Err(FsError::from(ReadError::Malformed {
                        cid,
                        reason: "leaf size disagrees with its parent's blocksizes",
                    }));
                }
                self.cache.insert(cid, data.clone());
                Ok(data)
            })
            .await
            .cloned();
        let mut inflight = lock(&self.inflight);
        if inflight.get(&cid).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&cid);
        }
        result
    }

    async fn read(
        self: Arc<Self>,
        fh: u64,
        cid: Cid,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, FsError> {
        let end = offset.saturating_add(u64::from(size));
        let leaves = self.reader.leaves(&cid, offset, u64::from(size)).await?;
        let datas = self.leaf_data(&leaves).await?;
        let parts: Vec<Bytes> = leaves
            .iter()
            .zip(datas)
            .filter_map(|(&(_, start, len), data)| {
                let from = offset.max(start) - start;
                let to = end.min(start + len).checked_sub(start)?;
                (from < to).then(|| data.slice(from as usize..to as usize))
            })
            .collect();
        let out = join(parts);
        self.readahead(fh, offset, out.len() as u64, &Handle::current());
        Ok(out)
    }

    /// [`Shared::read`] on the calling (FUSE) thread when everything it needs is local: the
    /// file's inner nodes cached or small and local, its leaves cached or read and verified
    /// here. `None` sends the read to a task instead (anything missing, or any error, which
    /// the task then reports the usual way).
    fn read_now(
        self: &Arc<Self>,
        fh: u64,
        cid: Cid,
        offset: u64,
        size: u32,
        rt: &Handle,
    ) -> Option<Bytes> {
        let end = offset.saturating_add(u64::from(size));
        let leaves = self
            .reader
            .leaves_now(&cid, offset, u64::from(size))?
            .ok()?;
        let mut parts: Vec<Bytes> = Vec::with_capacity(leaves.len());
        for &(leaf, start, len) in &leaves {
            let data = match self.cache.get(&leaf) {
                Some(d) => d,
                None => {
                    // A prefetch is reading it already: join that fetch on the runtime rather
                    // than read the leaf twice.
                    if lock(&self.inflight).contains_key(&leaf) {
                        return None;
                    }
                    let raw = self.reader.source().get_local_blocking(&leaf)?;
                    // The bytes a node holds itself: a raw leaf is all data; anything else goes
                    // the long way (it needs decoding, and is rare as a leaf).
                    if leaf.codec() != cairn_store::RAW || raw.len() as u64 != len {
                        return None;
                    }
                    self.cache.insert(leaf, raw.clone());
                    raw
                }
            };
            let from = offset.max(start) - start;
            let Some(to) = end.min(start + len).checked_sub(start) else {
                continue;
            };
            if from < to {
                parts.push(data.slice(from as usize..to as usize));
            }
        }
        let out = join(parts);
        self.readahead(fh, offset, out.len() as u64, rt);
        Some(out)
    }

    /// Notes a read on `fh`; on sequential reads, prefetches the next window in the background.
    fn readahead(self: &Arc<Self>, fh: u64, offset: u64, len: u64, rt: &Handle) {
        let plan = {
            let mut handles = lock(&self.handles);
            let Some(h) = handles.get_mut(&fh) else {
                return;
            };
            let slack = h.window.max(self.options.readahead_min);
            // The kernel issues readahead concurrently, so "sequential" tolerates some reordering.
            if offset.abs_diff(h.next) <= slack {
                h.window = if h.window == 0 {
                    self.options.readahead_min
                } else {
                    h.window.saturating_mul(2).min(self.options.readahead_max)
                };
                h.next = h.next.max(offset + len);
            } else {
                h.window = 0;
                h.prefetched_to = 0;
                h.next = offset + len;
            }
            let from = h.prefetched_to.max(offset + len);
            let to = (offset + len).saturating_add(h.window).min(h.size);
            if h.window == 0 || from >= to {
                return;
            }
            let Ok(permit) = self.prefetch.clone().try_acquire_owned() else {
                return;
            };
            h.prefetched_to = to;
            (h.cid, from, to, permit)
        };
        let (cid, from, to, permit) = plan;
        let this = self.clone();
        let timeout = self.options.timeout;
        rt.spawn(async move {
            let work = async {
                let leaves = this.reader.leaves(&cid, from, to - from).await?;
                let missing: Vec<_> = leaves
                    .into_iter()
                    .filter(|l| !this.cache.contains(&l.0))
                    .collect();
                this.leaf_data(&missing).await.map(|_| ())
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%cid, error = %e, "prefetch failed"),
                Err(_) => tracing::debug!(%cid, "prefetch timed out"),
            }
            drop(permit);
        });
    }

    /// "N/M blocks local" for a node: a file's leaves and root, or the node's own block.
    /// The presence checks (store lookups) run on a blocking thread.
    async fn local_report(self: Arc<Self>, info: NodeInfo) -> Result<String, FsError> {
        let mut leaves = Vec::new();
        if info.kind == EntryKind::File && info.cid.codec() != RAW {
            leaves = self.reader.leaves(&info.cid, 0, info.size).await?;
            if leaves.len() > LOCAL_REPORT_MAX_LEAVES {
                leaves.clear();
            }
        }
        let source = self.reader.source().clone();
        let count = move || {
            let (mut local, mut total) = (u64::from(source.has_local(&info.cid)), 1u64);
            for (cid, _, _) in leaves.iter().filter(|l| l.0 != info.cid) {
                total += 1;
                local += u64::from(source.has_local(cid));
            }
            format!("{local}/{total} blocks local")
        };
        tokio::task::spawn_blocking(count)
            .await
            .map_err(|_| FsError::TaskFailed)
    }
}

impl<S: BlockSource + Clone> CairnFs<S> {
    /// Runs `work` as a task under the mount's timeout and hands its result to `done`.
    fn spawn<T, W, D>(&self, cid: Option<Cid>, work: W, done: D)
    where
        T: Send + 'static,
        W: Future<Output = Result<T, FsError>> + Send + 'static,
        D: FnOnce(Result<T, Errno>) + Send + 'static,
    {
        let timeout = self.shared.options.timeout;
        self.rt.spawn(async move {
            let result = match tokio::time::timeout(timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(FsError::Timeout {
                    cid,
                    secs: timeout.as_secs(),
                }),
            };
            done(result.map_err(|e| to_errno(cid, e)))
        });
    }

    /// Answers a `readdir` of directory `ino` from its handle's stream, on the runtime.
    fn spawn_readdir(
        &self,
        (cid, ino, parent): (Cid, Ino, Ino),
        stream: Arc<tokio::sync::Mutex<DirStream<S>>>,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let shared = self.shared.clone();
        let timeout = shared.options.timeout;
        self.rt.spawn(async move {
            let work = async {
                let mut stream = stream.lock().await;
                let reader = &shared.reader;
                stream
                    .fill(reader, &shared.inodes, (ino, parent), offset, &mut reply)
                    .await
            };
            let result = tokio::time::timeout(timeout, work).await;
            match result {
                Ok(Ok(())) => reply.ok(),
                Ok(Err(e)) => reply.error(to_errno(Some(cid), e)),
                Err(_) => reply.error(to_errno(
                    Some(cid),
                    FsError::Timeout {
                        cid: Some(cid),
                        secs: timeout.as_secs(),
                    },
                )),
            }
        });
    }

    fn ttl(&self) -> Duration {
        self.shared.options.attr_ttl
    }

    fn node(&self, ino: INodeNo) -> Result<Inode, Errno> {
        self.shared.inode(Ino(ino.0)).map_err(Errno::from)
    }

    fn file(&self, ino: INodeNo) -> Result<NodeInfo, Errno> {
        match self.node(ino)?.node {
            Some(info) if info.kind == EntryKind::File => Ok(info),
            Some(info) if info.kind == EntryKind::Symlink => Err(Errno::EINVAL),
            _ => Err(Errno::EISDIR),
        }
    }
}

/// The errno for a failed request, with a warning naming the CID when content failed.
fn to_errno(cid: Option<Cid>, e: FsError) -> Errno {
    if e.is_content_failure() {
        match cid {
            Some(cid) => tracing::warn!(%cid, error = %e, "FUSE request failed"),
            None => tracing::warn!(error = %e, "FUSE request failed"),
        }
    }
    Errno::from(e)
}

/// A synthetic root's listing (at most the recently used CIDs).
fn reply_listing(
    ino: INodeNo,
    offset: u64,
    listing: &[(String, EntryKind, Ino)],
    mut reply: ReplyDirectory,
) {
    let dots = [
        (ino, FileType::Directory, "."),
        (ino, FileType::Directory, ".."),
    ];
    let entries = dots.into_iter().chain(
        listing
            .iter()
            .map(|(name, kind, ino)| (INodeNo(ino.0), file_type(*kind), name.as_str())),
    );
    for (i, (ino, kind, name)) in entries
        .enumerate()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
    {
        if reply.add(ino, i as u64 + 1, kind, name) {
            break;
        }
    }
    reply.ok();
}

impl<S: BlockSource + Clone> Filesystem for CairnFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let want = u32::try_from(self.shared.options.readahead_max).unwrap_or(u32::MAX);
        if let Err(max) = config.set_max_readahead(want) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let (ttl, parent) = (self.ttl(), Ino(parent.0));
        match self.shared.lookup_now(parent, name) {
            Some(Ok(attr)) => return reply.entry(&ttl, &attr, Generation(0)),
            Some(Err(e)) => return reply.error(Errno::from(e)),
            None => {}
        }
        // The directory searched, or (in the namespace root) the CID being looked up.
        let cid = self
            .shared
            .inode(parent)
            .ok()
            .and_then(|i| i.node)
            .map(|i| i.cid)
            .or_else(|| Cid::try_from(name).ok());
        let work = self.shared.clone().lookup(parent, name.to_string());
        self.spawn(cid, work, move |r| match r {
            Ok(attr) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        });
    }

    // `batch_forget` keeps fuser's default, which calls this for each node (fuser 0.18 does not
    // export the type of its argument, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.shared.inodes).forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(inode) => reply.attr(
                &self.ttl(),
                &self.shared.attr(Ino(ino.0), inode.node.as_ref()),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .node(ino)
            .map(|i| i.node.and_then(|n| n.symlink_target))
        {
            Ok(Some(target)) => reply.data(target.as_bytes()),
            Ok(None) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.file(ino) {
            Ok(info) => {
                let mut handles = lock(&self.shared.handles);
                if handles.len() >= MAX_OPEN_FILES {
                    return reply.error(Errno::EMFILE);
                }
                let fh = self.shared.next_fh.fetch_add(1, Ordering::Relaxed);
                let state = OpenFile {
                    cid: info.cid,
                    size: info.size,
                    next: 0,
                    window: 0,
                    prefetched_to: 0,
                };
                handles.insert(fh, state);
                drop(handles);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.file(ino) {
            Ok(info) => {
                // Local content is answered here, without a task round trip.
                if let Some(data) = self.shared.read_now(fh.0, info.cid, offset, size, &self.rt) {
                    reply.data(&data);
                    return;
                }
                let work = self.shared.clone().read(fh.0, info.cid, offset, size);
                self.spawn(Some(info.cid), work, move |r| match r {
                    Ok(data) => reply.data(&data),
                    Err(e) => reply.error(e),
                });
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush (and no locks to drop).
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.shared.handles).remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.node(ino).map(|i| i.node) {
            Ok(Some(info)) if info.kind == EntryKind::Directory => {
                let mut dirs = lock(&self.shared.dirs);
                if dirs.len() >= MAX_OPEN_DIRS {
                    return reply.error(Errno::EMFILE);
                }
                let fh = self.shared.next_fh.fetch_add(1, Ordering::Relaxed);
                let stream = DirStream::new(info.cid);
                dirs.insert(fh, Arc::new(tokio::sync::Mutex::new(stream)));
                drop(dirs);
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
                )
            }
            Ok(Some(_)) => reply.error(Errno::ENOTDIR),
            // A synthetic root's listing changes as CIDs are used.
            Ok(None) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        match self.node(ino) {
            Ok(Inode { node: None, .. }) => {
                let recent = lock(&self.shared.inodes).recent();
                reply_listing(ino, offset, &recent, reply)
            }
            Ok(Inode {
                node: Some(info),
                parent,
                ..
            }) => {
                let Some(stream) = lock(&self.shared.dirs).get(&fh.0).cloned() else {
                    return reply.error(Errno::EBADF);
                };
                let parent = if ino.0 == Ino::ROOT.0 {
                    Ino::ROOT
                } else {
                    parent
                };
                self.spawn_readdir((info.cid, Ino(ino.0), parent), stream, offset, reply);
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.shared.dirs).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = lock(&self.shared.inodes).len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if ino.0 == Ino::ROOT.0 && name.to_str() == Some(XATTR_INODES) {
            let count = lock(&self.shared.inodes).len().to_string();
            return reply_xattr(reply, size, count.as_bytes());
        }
        let info = match self.node(ino) {
            Ok(Inode {
                node: Some(info), ..
            }) => info,
            Ok(Inode { node: None, .. }) => return reply.error(Errno::ENODATA),
            Err(e) => return reply.error(e),
        };
        match name.to_str() {
            Some(XATTR_CID) => reply_xattr(reply, size, info.cid.to_string().as_bytes()),
            Some(XATTR_LOCAL) => {
                let cid = info.cid;
                let work = self.shared.clone().local_report(info);
                self.spawn(Some(cid), work, move |r| match r {
                    Ok(text) => reply_xattr(reply, size, text.as_bytes()),
                    Err(e) => reply.error(e),
                });
            }
            _ => reply.error(Errno::ENODATA),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let root = if ino.0 == Ino::ROOT.0 {
            format!("{XATTR_INODES}\0")
        } else {
            String::new()
        };
        match self.node(ino) {
            Ok(Inode { node: Some(_), .. }) => {
                let names = format!("{XATTR_CID}\0{XATTR_LOCAL}\0{root}");
                reply_xattr(reply, size, names.as_bytes())
            }
            Ok(Inode { node: None, .. }) => reply_xattr(reply, size, root.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.node(ino) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    // Everything below would change the tree: a content-addressed mount is read-only.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _d: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _r: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _r: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _r: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(&self, _r: &Request, _p: INodeNo, _n: &OsStr, _t: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _r: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _r: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _d: &[u8],
        _wf: WriteFlags,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _r: &Request,
        _i: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _r: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _r: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
}
