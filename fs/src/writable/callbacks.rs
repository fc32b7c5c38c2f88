//! The FUSE callbacks of a writable share mount.
//!
//! Node ids are inode numbers ([`NodeId::ROOT`] is FUSE's root). Lookups, listings and reads
//! of committed content wait at most the mount's timeout for blocks; tree changes and writes
//! do not time out (a first write to a committed file copies it, however long it is), and
//! `fsync` returns once the change is durable and committed.
//!
//! Decided here: hard links are refused with `EPERM` (UnixFS has no link count); ownership
//! is not stored (`chown` succeeds and changes nothing, as on a FAT mount with `quiet`); atime
//! is not kept (the mount is `noatime`); special files (devices, FIFOs, sockets) are refused
//! with `EPERM`; extended attributes other than `user.cairn.*` cannot be set (`ENOTSUP`);
//! `flock` and POSIX locks are handled by the kernel, locally; `fallocate` only reserves
//! (mode 0, growing the file with a hole).

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_store::{BlockSource, EntryKind};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use super::{DirHandle, OpenFile, Staged, State};
use crate::filesystem::{disk_space, lock, reply_xattr, XATTR_VERSION};
use crate::listing::file_type;
use crate::overlay::{Attr, FileContent, NodeId, Overlay, OverlayError, SetAttr, TimeSet};

/// How long the kernel may cache entries and attributes. Every change goes through this
/// mount, which the kernel sees, so this could be long; it is short to bound the damage of a
/// mistake.
const TTL: Duration = Duration::from_secs(1);
/// The I/O size `stat` suggests (`cp`, `cat` read and write this much at a time).
const BLKSIZE: u32 = 1 << 20;
/// The extended attribute holding a node's CID as of the last commit.
pub(crate) const XATTR_CID: &str = "user.cairn.cid";
/// The extended attribute saying whether a node has uncommitted changes.
pub(crate) const XATTR_DIRTY: &str = "user.cairn.dirty";
/// Open handles of files and directories, each.
const MAX_HANDLES: usize = 1 << 16;

/// One overlay operation in progress, borrowing the overlay.
type OverlayOp<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, OverlayError>> + Send + 'a>>;

/// The filesystem handed to fuser.
pub(crate) struct ShareFs<S> {
    pub state: Arc<State<S>>,
    pub rt: Handle,
}

/// The errno for a failed request, with a warning when it is not the caller's doing.
fn errno(e: OverlayError) -> Errno {
    let n = e.errno();
    if n == libc::EIO {
        tracing::warn!(error = %e, "share mount request failed");
    } else if n == libc::ENOSPC {
        tracing::warn!("share mount: the disk is full");
    }
    Errno::from_i32(n)
}

fn file_attr(a: &Attr, uid: u32, gid: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.id.0),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid,
        gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// An inode number for a listed entry the overlay holds no node for yet (its real number
/// comes with the lookup that `stat` makes): stable for the name, never a real node's.
fn listed_ino(dir: NodeId, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir.0, name).hash(&mut h);
    h.finish() | (1 << 62)
}

/// Runs `request` here, on the FUSE thread, as far as it goes without waiting: most requests
/// finish (the overlay's lock is free and what they need is in memory), and answering them here
/// saves two thread switches each, which is most of what a small request costs (`tar -x` of
/// small files). A request that has to wait (for the lock, or for a block) becomes a task on the
/// runtime, which polls it on from where it stopped.
fn drive<F: Future<Output = ()> + Send + 'static>(rt: &Handle, request: F) {
    let mut request = Box::pin(request);
    let _runtime = rt.enter();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if request.as_mut().poll(&mut cx).is_pending() {
        rt.spawn(request);
    }
}

impl<S: BlockSource + Clone> ShareFs<S> {
    /// Runs `work` (under `limit`, if any) and hands its result to `done`, through [`drive`].
    fn spawn<T, W, D>(&self, limit: Option<Duration>, work: W, done: D)
    where
        T: Send + 'static,
        W: Future<Output = Result<T, Errno>> + Send + 'static,
        D: FnOnce(Result<T, Errno>) + Send + 'static,
    {
        drive(&self.rt, async move {
            let result = match limit {
                Some(d) => match tokio::time::timeout(d, work).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(secs = d.as_secs(), "share mount request timed out");
                        Err(Errno::EIO)
                    }
                },
                None => work.await,
            };
            done(result)
        });
    }

    /// Runs tree change `op` on the overlay once its lock is taken (no timeout: see the module
    /// doc), its error as an errno, and hands the result to `done`.
    fn change<T, F, D>(&self, op: F, done: D)
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Overlay<S>) -> OverlayOp<'a, T> + Send + 'static,
        D: FnOnce(Result<T, Errno>) + Send + 'static,
    {
        let state = self.state.clone();
        self.spawn(
            None,
            async move {
                let mut st = state.staged.lock().await;
                op(&mut st.overlay).await.map_err(errno)
            },
            done,
        );
    }

    /// Runs `work` on the overlay: here if its lock is free, else as a task once it is.
    fn now_or_later<T, W, D>(&self, work: W, done: D)
    where
        T: Send + 'static,
        W: FnOnce(&mut Staged<S>) -> Result<T, Errno> + Send + 'static,
        D: FnOnce(Result<T, Errno>) + Send + 'static,
    {
        if let Ok(mut st) = self.state.staged.try_lock() {
            let r = work(&mut st);
            drop(st);
            return done(r);
        }
        let state = self.state.clone();
        self.spawn(
            None,
            async move {
                let mut st = state.staged.lock().await;
                work(&mut st)
            },
            done,
        );
    }

    /// Replies with a new entry, counting it as changed.
    fn entry_done(&self, reply: ReplyEntry) -> impl FnOnce(Result<Attr, Errno>) + Send + 'static {
        let state = self.state.clone();
        move |r| match r {
            Ok(a) => {
                state.touched();
                reply.entry(&TTL, &file_attr(&a, state.uid, state.gid), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    /// Replies to a change without a result, counting it as changed.
    fn change_done(&self, reply: ReplyEmpty) -> impl FnOnce(Result<(), Errno>) + Send + 'static {
        let state = self.state.clone();
        move |r| match r {
            Ok(()) => {
                state.touched();
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn new_fh(&self) -> u64 {
        self.state.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads committed file `cid` through the read-only mount's read path.
    fn read_committed(
        &self,
        fh: u64,
        (cid, file_size): (cairn_store::Cid, u64),
        offset: u64,
        size: u32,
        reply: ReplyData,
    ) {
        let reads = self.state.reads.clone();
        reads.track_open(fh, cid, file_size);
        if let Some(data) = reads.read_now(fh, cid, offset, size, &self.rt) {
            return reply.data(&data);
        }
        let timeout = self.state.options.timeout;
        self.spawn(
            Some(timeout),
            async move { reads.read(fh, cid, offset, size).await.map_err(Errno::from) },
            move |r| match r {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(e),
            },
        );
    }

    /// Makes the staged changes durable, then commits them (`fsync` and `fsyncdir`).
    fn sync_and_commit(&self, reply: ReplyEmpty) {
        let state = self.state.clone();
        // A task of its own: a commit is long work for the FUSE thread.
        self.rt.spawn(async move {
            let r = async {
                state.staged.lock().await.overlay.sync().map_err(errno)?;
                // The data is durable now; a commit that fails is tried again later, and
                // does not make this fsync fail.
                if let Err(e) = state.commit().await {
                    tracing::warn!(error = %e, "commit after fsync failed; the changes stay staged");
                }
                Ok::<(), Errno>(())
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }
}

impl<S: BlockSource + Clone> Filesystem for ShareFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let want = u32::try_from(self.state.options.readahead_max).unwrap_or(u32::MAX);
        if let Err(max) = config.set_max_readahead(want) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn destroy(&mut self) {
        self.state.closed.store(true, Ordering::Release);
        self.state.wake.notify_one();
        // The last changes: durable and committed before the session ends. On a thread of its
        // own, which may wait on the runtime wherever this is called from.
        let state = self.state.clone();
        let rt = self.rt.clone();
        let last = std::thread::spawn(move || {
            rt.block_on(async move {
                if let Err(e) = state.staged.lock().await.overlay.sync() {
                    tracing::warn!(error = %e, "cannot sync the staged changes at unmount");
                }
                state.commit().await
            })
        });
        match last.join() {
            Ok(Ok(Some(c))) => {
                tracing::info!(sequence = c.sequence, root = %c.root, "committed at unmount")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "the commit at unmount failed; the changes stay staged and are committed at the next mount"
            ),
            Err(_) => tracing::warn!("the commit at unmount panicked"),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (state, name) = (self.state.clone(), name.to_os_string());
        let done_state = self.state.clone();
        self.spawn(
            Some(self.state.options.timeout),
            async move {
                let mut st = state.staged.lock().await;
                st.overlay
                    .lookup(NodeId(parent.0), &name)
                    .await
                    .map_err(errno)
            },
            move |r| match r {
                Ok(a) => reply.entry(
                    &TTL,
                    &file_attr(&a, done_state.uid, done_state.gid),
                    Generation(0),
                ),
                Err(e) => reply.error(e),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.now_or_later(
            move |st| {
                st.overlay.forget(NodeId(ino.0), nlookup);
                Ok(())
            },
            |_| {},
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (uid, gid) = (self.state.uid, self.state.gid);
        self.now_or_later(
            move |st| st.overlay.getattr(NodeId(ino.0)).map_err(errno),
            move |r| match r {
                Ok(a) => reply.attr(&TTL, &file_attr(&a, uid, gid)),
                Err(e) => reply.error(e),
            },
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            size,
            mtime: mtime.map(|t| match t {
                TimeOrNow::Now => TimeSet::Now,
                TimeOrNow::SpecificTime(t) => TimeSet::At(t),
            }),
        };
        let changes = set != SetAttr::default();
        let state = self.state.clone();
        let done_state = self.state.clone();
        self.spawn(
            None,
            async move {
                let mut st = state.staged.lock().await;
                let id = NodeId(ino.0);
                if changes {
                    st.overlay.setattr(id, set).await.map_err(errno)
                } else {
                    // Ownership and atime only: not stored.
                    st.overlay.getattr(id).map_err(errno)
                }
            },
            move |r| match r {
                Ok(a) => {
                    if changes {
                        done_state.touched();
                    }
                    reply.attr(&TTL, &file_attr(&a, done_state.uid, done_state.gid))
                }
                Err(e) => reply.error(e),
            },
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.now_or_later(
            move |st| st.overlay.readlink(NodeId(ino.0)).map_err(errno),
            move |r| match r {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(e),
            },
        );
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let (name, mode) = (name.to_os_string(), mode & !umask);
        let done = self.entry_done(reply);
        self.change(
            move |ov| Box::pin(ov.create(NodeId(parent.0), name, mode)),
            done,
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, mode) = (name.to_os_string(), mode & !umask);
        let done = self.entry_done(reply);
        self.change(
            move |ov| Box::pin(ov.mkdir(NodeId(parent.0), name, mode)),
            done,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        let done = self.change_done(reply);
        self.change(move |ov| Box::pin(ov.unlink(NodeId(parent.0), name)), done);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        let done = self.change_done(reply);
        self.change(move |ov| Box::pin(ov.rmdir(NodeId(parent.0), name)), done);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target) = (link_name.to_os_string(), OsString::from(target));
        let done = self.entry_done(reply);
        self.change(
            move |ov| Box::pin(ov.symlink(NodeId(parent.0), name, target)),
            done,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.to_os_string(), newname.to_os_string());
        let done = self.change_done(reply);
        self.change(
            move |ov| {
                Box::pin(ov.rename(
                    NodeId(parent.0),
                    name,
                    NodeId(newparent.0),
                    newname,
                    flags.bits(),
                ))
            },
            done,
        );
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // A node has one parent: UnixFS has no link count (see the module doc).
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let state = self.state.clone();
        let fh = self.new_fh();
        self.now_or_later(
            move |st| {
                let a = st.overlay.getattr(NodeId(ino.0)).map_err(errno)?;
                match a.kind {
                    EntryKind::File => {}
                    EntryKind::Directory => return Err(Errno::EISDIR),
                    EntryKind::Symlink => return Err(Errno::ELOOP),
                }
                let mut files = lock(&state.files);
                if files.len() >= MAX_HANDLES {
                    return Err(Errno::EMFILE);
                }
                files.insert(fh, OpenFile { id: a.id, writable });
                Ok(())
            },
            move |r| match r {
                // Every change to the file goes through this mount, so the kernel's pages stay
                // true across opens.
                Ok(()) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            },
        );
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
        let id = NodeId(ino.0);
        let len = size as usize;
        // Where the content is: staged (read it now), or committed (the read path).
        let where_now = move |st: &mut Staged<S>| -> Result<Result<bytes::Bytes, (cairn_store::Cid, u64)>, Errno> {
            if let Some(r) = st.overlay.read_now(id, offset, len) {
                return r.map(Ok).map_err(errno);
            }
            match st.overlay.content(id).map_err(errno)? {
                FileContent::Committed(cid) => {
                    let a = st.overlay.getattr(id).map_err(errno)?;
                    Ok(Err((cid, a.size)))
                }
                FileContent::Staged => Err(Errno::EIO),
            }
        };
        if let Ok(mut st) = self.state.staged.try_lock() {
            let r = where_now(&mut st);
            drop(st);
            return match r {
                Ok(Ok(data)) => reply.data(&data),
                Ok(Err(committed)) => self.read_committed(fh.0, committed, offset, size, reply),
                Err(e) => reply.error(e),
            };
        }
        let state = self.state.clone();
        let reads = self.state.reads.clone();
        self.spawn(
            Some(self.state.options.timeout),
            async move {
                let r = {
                    let mut st = state.staged.lock().await;
                    where_now(&mut st)?
                };
                match r {
                    Ok(data) => Ok(data),
                    Err((cid, file_size)) => {
                        reads.track_open(fh.0, cid, file_size);
                        reads
                            .read(fh.0, cid, offset, size)
                            .await
                            .map_err(Errno::from)
                    }
                }
            },
            move |r| match r {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(e),
            },
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let id = NodeId(ino.0);
        let written = |state: &State<S>, r: Result<usize, OverlayError>, reply: ReplyWrite| match r
        {
            Ok(n) => {
                state.touched();
                reply.written(u32::try_from(n).unwrap_or(u32::MAX))
            }
            Err(e) => reply.error(errno(e)),
        };
        // A staged file: one pwrite, here.
        if let Ok(mut st) = self.state.staged.try_lock() {
            if let Some(r) = st.overlay.write_now(id, offset, data) {
                drop(st);
                return written(&self.state, r, reply);
            }
        }
        let state = self.state.clone();
        let data = data.to_vec();
        drive(&self.rt, async move {
            let r = {
                let mut st = state.staged.lock().await;
                st.overlay.write(id, offset, &data).await
            };
            written(&state, r, reply)
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes reach the staging file when they are made; durability is fsync's.
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
        lock(&self.state.files).remove(&fh.0);
        self.state.reads.close_open(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync_and_commit(reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let state = self.state.clone();
        let fh = self.new_fh();
        self.now_or_later(
            move |st| {
                let id = NodeId(ino.0);
                let cursor = st.overlay.dir_cursor(id).map_err(errno)?;
                let mut dirs = lock(&state.dirs);
                if dirs.len() >= MAX_HANDLES {
                    return Err(Errno::EMFILE);
                }
                let handle = DirHandle {
                    dir: id,
                    cursor,
                    next: 3,
                    held: None,
                };
                dirs.insert(fh, Arc::new(tokio::sync::Mutex::new(handle)));
                Ok(())
            },
            move |r| match r {
                Ok(()) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(handle) = lock(&self.state.dirs).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let state = self.state.clone();
        let reader = self.state.reads.reader.clone();
        drive(&self.rt, async move {
            let work = async {
                let mut h = handle.lock().await;
                let mut off = offset;
                for (o, name) in [(1, "."), (2, "..")] {
                    if off < o {
                        if reply.add(ino, o, FileType::Directory, name) {
                            return Ok(());
                        }
                        off = o;
                    }
                }
                let want = off + 1;
                let held_fits = h.held.is_some() && h.next == want;
                if h.next != want || (h.held.is_some() && !held_fits) {
                    // A rewind (or a seek): list again from the start.
                    let cursor = {
                        let st = state.staged.lock().await;
                        st.overlay.dir_cursor(h.dir).map_err(errno)?
                    };
                    h.cursor = cursor;
                    h.next = 3;
                    h.held = None;
                    while h.next < want {
                        if h.cursor.next_entry().await.map_err(errno)?.is_none() {
                            return Ok(());
                        }
                        h.next += 1;
                    }
                }
                loop {
                    let (entry_ino, kind, name) = match h.held.take() {
                        Some(held) => held,
                        None => {
                            let Some(item) = h.cursor.next_entry().await.map_err(errno)? else {
                                return Ok(());
                            };
                            let kind = match (item.kind, item.cid) {
                                (Some(k), _) => k,
                                (None, Some(cid)) => {
                                    reader
                                        .stat(&cid)
                                        .await
                                        .map_err(|e| errno(OverlayError::from(e)))?
                                        .kind
                                }
                                (None, None) => EntryKind::File,
                            };
                            let entry_ino = item
                                .id
                                .map_or_else(|| listed_ino(h.dir, &item.name), |id| id.0);
                            (entry_ino, file_type(kind), item.name)
                        }
                    };
                    let at = h.next;
                    if reply.add(INodeNo(entry_ino), at, kind, &name) {
                        h.held = Some((entry_ino, kind, name));
                        return Ok(());
                    }
                    h.next += 1;
                }
            };
            let limit = state.options.timeout;
            match tokio::time::timeout(limit, work).await {
                Ok(Ok(())) => reply.ok(),
                Ok(Err(e)) => reply.error(e),
                Err(_) => reply.error(Errno::EIO),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.state.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync_and_commit(reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let name_max = crate::overlay::NAME_MAX as u32;
        match self.state.options.space_of.as_deref().and_then(disk_space) {
            Some(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, 0, s.ffree, s.bsize, name_max, s.bsize,
            ),
            None => reply.statfs(0, 0, 0, 0, 0, 4096, name_max, 4096),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_string_lossy().into_owned();
        self.now_or_later(
            move |st| {
                let id = NodeId(ino.0);
                let value = match name.as_str() {
                    XATTR_CID => match st.overlay.committed_cid(id).map_err(errno)? {
                        Some(cid) => cid.to_string(),
                        None => return Err(Errno::ENODATA),
                    },
                    XATTR_DIRTY => {
                        let dirty = st.overlay.getattr(id).map_err(errno)?.dirty;
                        if dirty { "true" } else { "false" }.to_string()
                    }
                    XATTR_VERSION if id == NodeId::ROOT => st.sequence.to_string(),
                    _ => return Err(Errno::ENODATA),
                };
                Ok(value)
            },
            move |r| match r {
                Ok(v) => reply_xattr(reply, size, v.as_bytes()),
                Err(e) => reply.error(e),
            },
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.now_or_later(
            move |st| {
                let id = NodeId(ino.0);
                let mut names = Vec::new();
                if st.overlay.committed_cid(id).map_err(errno)?.is_some() {
                    names.extend_from_slice(XATTR_CID.as_bytes());
                    names.push(0);
                }
                names.extend_from_slice(XATTR_DIRTY.as_bytes());
                names.push(0);
                if id == NodeId::ROOT {
                    names.extend_from_slice(XATTR_VERSION.as_bytes());
                    names.push(0);
                }
                Ok(names)
            },
            move |r| match r {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(e),
            },
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (state, name) = (self.state.clone(), name.to_os_string());
        let done_state = self.state.clone();
        let fh = self.new_fh();
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.spawn(
            None,
            async move {
                if lock(&state.files).len() >= MAX_HANDLES {
                    return Err(Errno::EMFILE);
                }
                let mut st = state.staged.lock().await;
                let a = st
                    .overlay
                    .create(NodeId(parent.0), &name, mode & !umask)
                    .await
                    .map_err(errno)?;
                lock(&state.files).insert(fh, OpenFile { id: a.id, writable });
                Ok(a)
            },
            move |r| match r {
                Ok(a) => {
                    done_state.touched();
                    reply.created(
                        &TTL,
                        &file_attr(&a, done_state.uid, done_state.gid),
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE,
                    )
                }
                Err(e) => reply.error(e),
            },
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let state = self.state.clone();
        let done = self.change_done(reply);
        self.spawn(
            None,
            async move {
                let id = NodeId(ino.0);
                let mut st = state.staged.lock().await;
                let size = st.overlay.getattr(id).map_err(errno)?.size;
                let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
                if end > size {
                    let set = SetAttr {
                        size: Some(end),
                        ..SetAttr::default()
                    };
                    st.overlay.setattr(id, set).await.map_err(errno)?;
                }
                Ok(())
            },
            done,
        );
    }
}
