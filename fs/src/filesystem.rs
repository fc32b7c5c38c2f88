//! The FUSE callbacks. Anything that needs blocks runs as a task on the tokio runtime under
//! the mount's timeout; the FUSE thread only answers from memory or hands the reply over.
//!
//! Per-mount tables and their bounds: inodes follow the kernel's lookup counts (`inode.rs`);
//! open files and open directories are at most [`MAX_OPEN_FILES`] and [`MAX_OPEN_DIRS`]
//! (EMFILE beyond), a directory handle holds a cursor and at most one batch of entries
//! (`listing.rs`); leaf data is an LRU bounded in bytes (`cache.rs`); decoded interior nodes
//! are bounded in the reader.

mod attr;
pub(crate) mod follow;
mod lookup;
mod read;
mod xattr;

use read::OpenFile;
pub(crate) use xattr::reply_xattr;

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
/// The extended attribute of a share mount's root giving the version (sequence number) shown.
pub(crate) const XATTR_VERSION: &str = "user.cairn.version";
/// How long the kernel may keep a namespace root's entry for a mutable name (`<mnt>/k51…`).
const NAME_TTL: Duration = Duration::from_secs(1);
/// The extended attribute of a following mount's root: `1` while the version shown may not be
/// the newest (no peer that has the share is reachable), else `0`.
pub(crate) const XATTR_STALE: &str = "user.cairn.stale";
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
    /// A following mount: the version (sequence number) it shows.
    pub version: Mutex<Option<u64>>,
    /// A following mount: whether that version may not be the newest.
    pub stale: std::sync::atomic::AtomicBool,
    /// A namespace mount: resolves names in its root that are not CIDs (IPNS names).
    pub names: Option<crate::options::NameResolver>,
}

/// The filesystem handed to fuser.
pub(crate) struct CairnFs<S> {
    pub shared: Arc<Shared<S>>,
    pub rt: Handle,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single update; a panic cannot leave the state half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            version: Mutex::new(None),
            stale: std::sync::atomic::AtomicBool::new(false),
            names: None,
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

/// The longest name a mount shows (and, writable, accepts).
pub(crate) const NAME_MAX: u32 = 255;

/// The space of the filesystem holding `path`, in `bsize` units.
pub(crate) struct DiskSpace {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub ffree: u64,
    pub bsize: u32,
}

#[allow(unsafe_code)] // statvfs(3): no safe wrapper in this crate's dependencies.
pub(crate) fn disk_space(path: &Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized, writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Some(DiskSpace {
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        ffree: st.f_ffree,
        bsize: u32::try_from(frsize).unwrap_or(4096),
    })
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
        // A share id is also a CID (of a key, with nothing to mount): a name first.
        let mutable = name.parse::<cairn_store::IpnsName>().is_ok() || Cid::try_from(name).is_err();
        if parent == Ino::ROOT && self.shared.namespace && mutable {
            if let Some(names) = self.shared.names.clone() {
                // A mutable name: resolved at each lookup, and the kernel keeps the entry only
                // briefly, so `<mnt>/<name>` moves with the name.
                let work = self.shared.clone().lookup_name(names, name.to_string());
                return self.spawn(None, work, move |r| match r {
                    Ok(attr) => reply.entry(&NAME_TTL, &attr, Generation(0)),
                    Err(e) => reply.error(e),
                });
            }
        }
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
                let state = OpenFile::new(info.cid, info.size);
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
        // The version the handle opened: a following mount may have moved on since, and an
        // open file keeps reading one version.
        let opened = lock(&self.shared.handles).get(&fh.0).map(|h| h.cid);
        match self.file(ino) {
            Ok(mut info) => {
                if let Some(cid) = opened {
                    info.cid = cid;
                }
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
        match self.shared.options.space_of.as_deref().and_then(disk_space) {
            Some(s) => reply.statfs(
                s.blocks,
                s.bfree,
                s.bavail,
                files,
                s.ffree,
                s.bsize,
                crate::filesystem::NAME_MAX,
                s.bsize,
            ),
            None => reply.statfs(0, 0, 0, files, 0, 4096, NAME_MAX, 4096),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if ino.0 == Ino::ROOT.0 && name.to_str() == Some(XATTR_INODES) {
            let count = lock(&self.shared.inodes).len().to_string();
            return reply_xattr(reply, size, count.as_bytes());
        }
        if ino.0 == Ino::ROOT.0 && name.to_str() == Some(XATTR_VERSION) {
            return match *lock(&self.shared.version) {
                Some(v) => reply_xattr(reply, size, v.to_string().as_bytes()),
                None => reply.error(Errno::ENODATA),
            };
        }
        if ino.0 == Ino::ROOT.0 && name.to_str() == Some(XATTR_STALE) {
            return match *lock(&self.shared.version) {
                Some(_) => {
                    let stale = self.shared.stale.load(std::sync::atomic::Ordering::Relaxed);
                    reply_xattr(reply, size, if stale { b"1" } else { b"0" })
                }
                None => reply.error(Errno::ENODATA),
            };
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
        let root = match (ino.0 == Ino::ROOT.0, *lock(&self.shared.version)) {
            (true, Some(_)) => format!("{XATTR_INODES}\0{XATTR_VERSION}\0{XATTR_STALE}\0"),
            (true, None) => format!("{XATTR_INODES}\0"),
            (false, _) => String::new(),
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
