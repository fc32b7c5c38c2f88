//! Setting up and tearing down a mount.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_store::{BlockSource, Cid, DagReader, EntryKind};
use fuser::{BackgroundSession, MountOption, SessionACL};
use tokio::runtime::Handle;

use crate::error::MountError;
use crate::filesystem::{CairnFs, Shared};
use crate::inode::{Ino, InodeTable};
use crate::options::{FollowHead, MountOptions, MountRoot};
use crate::overlay::{NodeId, Overlay};
use crate::writable::{
    new_fs, Activity, CommitError, CommitOutcome, ShareControl, ShareMount, Staged, State,
};
use std::collections::HashMap;

/// Decoded interior nodes kept by a mount's reader (which also bounds them to 32 MiB).
const NODE_CACHE: usize = 4096;
/// Threads reading FUSE requests, each with its own cloned `/dev/fuse` descriptor. Requests only
/// wait on memory (block work runs on the runtime), so a few threads are enough to keep the
/// kernel's queue drained while others write replies.
const FUSE_THREADS: usize = 2;

/// A live mount. Dropping it (or calling [`MountHandle::unmount`]) unmounts.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    /// The root of a one-CID read-only mount.
    root: Option<cairn_store::Cid>,
    share: Option<ShareControl>,
    /// The task moving a following mount to new versions.
    follower: Option<tokio::task::AbortHandle>,
}

impl MountHandle {
    /// The CID a one-CID read-only mount shows.
    pub fn root(&self) -> Option<cairn_store::Cid> {
        self.root
    }

    /// The controls of a writable share mount (`None` for read-only mounts).
    pub fn share(&self) -> Option<&ShareControl> {
        self.share.as_ref()
    }

    /// Where the mount is.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts (lazily: open files keep working until closed) and waits for the session to end.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), MountError> {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            // A file is still open on the mount: detach it now. The session threads keep
            // serving open files and end when the kernel drops the last reference.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.detach(),
            Err(source) => Err(MountError::Unmount {
                path: self.mountpoint.clone(),
                source,
            }),
        }
    }

    /// A lazy unmount (`fusermount3 -u -z`, which root and users both may run).
    fn detach(&self) -> Result<(), MountError> {
        let unmount = |source| MountError::Unmount {
            path: self.mountpoint.clone(),
            source,
        };
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mountpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(unmount)?;
        if status.success() {
            tracing::info!(mountpoint = %self.mountpoint.display(), "busy: detached lazily");
            Ok(())
        } else {
            Err(unmount(io::Error::from_raw_os_error(libc::EBUSY)))
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(error = %e, "unmount on drop failed");
        }
    }
}

/// Mounts `root` read-only at `mountpoint`, serving blocks from `source`.
///
/// The FUSE session runs on a background thread; every request that needs blocks runs as a
/// task on `runtime` (which must be a multi-threaded runtime, or at least one not blocked by
/// the caller), so a slow network fetch never stalls other requests.
/// The mount point must be an existing, empty directory that is not already a mount point.
/// For [`MountRoot::Cid`] the root block is read first, so an unreachable CID fails here.
pub fn mount<S>(
    source: S,
    root: MountRoot,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
    runtime: Handle,
) -> Result<MountHandle, MountError>
where
    S: BlockSource + Clone,
{
    mount_read_only(source, root, mountpoint.as_ref(), options, runtime, None).map(|(h, _)| h)
}

/// As [`mount`], and in a [`MountRoot::Namespace`] mount, a name in the root that is not a CID
/// is resolved by `names` (`<mnt>/k51…/path`: a share's or any IPNS name's current version).
pub fn mount_with_names<S>(
    source: S,
    root: MountRoot,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
    runtime: Handle,
    names: crate::options::NameResolver,
) -> Result<MountHandle, MountError>
where
    S: BlockSource + Clone,
{
    mount_read_only(
        source,
        root,
        mountpoint.as_ref(),
        options,
        runtime,
        Some(names),
    )
    .map(|(h, _)| h)
}

/// Mounts directory `*heads.borrow()` read-only at `mountpoint` and follows `heads`: each new
/// value becomes the mount's root (see `filesystem/follow.rs`), until the sender is dropped
/// or the mount ends. A version whose blocks do not arrive within the timeout is tried again
/// a few seconds later; meanwhile the mount keeps showing the last version it switched to.
pub fn mount_follow<S>(
    source: S,
    heads: tokio::sync::watch::Receiver<FollowHead>,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
    runtime: Handle,
) -> Result<MountHandle, MountError>
where
    S: BlockSource + Clone,
{
    let first = *heads.borrow();
    let timeout = options.timeout;
    let (mut handle, shared) = mount_read_only(
        source,
        MountRoot::Cid(first.root),
        mountpoint.as_ref(),
        options,
        runtime.clone(),
        None,
    )?;
    // It shows whatever the head is: no one version to keep for it.
    handle.root = None;
    *crate::filesystem::lock(&shared.version) = Some(first.sequence);
    shared
        .stale
        .store(first.stale, std::sync::atomic::Ordering::Relaxed);
    let notifier = handle.session.as_ref().map(BackgroundSession::notifier);
    if let Some(notifier) = notifier {
        let task = runtime.spawn(follow(shared, heads, first.root, notifier, timeout));
        handle.follower = Some(task.abort_handle());
    }
    Ok(handle)
}

/// How long a follower waits before trying a version it could not switch to again.
const FOLLOW_RETRY: Duration = Duration::from_secs(5);

async fn follow<S: BlockSource + Clone>(
    shared: Arc<Shared<S>>,
    mut heads: tokio::sync::watch::Receiver<FollowHead>,
    mut shown: Cid,
    notifier: fuser::Notifier,
    timeout: Duration,
) {
    let mut retry = false;
    loop {
        if retry {
            tokio::select! {
                changed = heads.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(FOLLOW_RETRY) => {}
            }
        } else if heads.changed().await.is_err() {
            return;
        }
        let head = *heads.borrow_and_update();
        shared
            .stale
            .store(head.stale, std::sync::atomic::Ordering::Relaxed);
        let target = head.root;
        if target == shown {
            // The same tree (a staleness change, or a version with the same root).
            *crate::filesystem::lock(&shared.version) = Some(head.sequence);
            retry = false;
            continue;
        }
        retry = match tokio::time::timeout(timeout, shared.switch_root(target)).await {
            Ok(Ok(drop_these)) => {
                *crate::filesystem::lock(&shared.version) = Some(head.sequence);
                let n = notifier.clone();
                let sent = tokio::task::spawn_blocking(move || {
                    for what in drop_these {
                        // ENOENT: the kernel holds nothing for it; nothing to drop.
                        let _ = match what {
                            crate::filesystem::follow::Invalidate::Inode(ino) => {
                                n.inval_inode(fuser::INodeNo(ino.0), 0, 0)
                            }
                            crate::filesystem::follow::Invalidate::Entry(parent, name) => {
                                n.inval_entry(fuser::INodeNo(parent.0), std::ffi::OsStr::new(&name))
                            }
                        };
                    }
                });
                let _ = sent.await;
                tracing::info!(root = %target, "following: now showing the new version");
                shown = target;
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(root = %target, error = %e, "following: cannot switch to the new version yet; still showing the previous one");
                true
            }
            Err(_) => {
                tracing::warn!(root = %target, secs = timeout.as_secs(), "following: the new version's blocks did not arrive; still showing the previous one");
                true
            }
        };
    }
}

fn mount_read_only<S>(
    source: S,
    root: MountRoot,
    mountpoint: &Path,
    options: MountOptions,
    runtime: Handle,
    names: Option<crate::options::NameResolver>,
) -> Result<(MountHandle, Arc<Shared<S>>), MountError>
where
    S: BlockSource + Clone,
{
    let mountpoint = mountpoint.to_path_buf();
    let meta = check_mountpoint(&mountpoint)?;
    let reader = DagReader::with_node_cache(source, NODE_CACHE);

    let (table, namespace, fsname) = match root {
        MountRoot::Namespace => (InodeTable::new(None), true, "cairn".to_string()),
        MountRoot::Cid(cid) => {
            let info = stat_root(&reader, cid, options.timeout, &runtime)?;
            let table = if info.kind == EntryKind::Directory {
                InodeTable::new(Some(info))
            } else {
                let mut t = InodeTable::new(None);
                // The single entry is never forgotten: it cannot be looked up by name again.
                if let Ok(ino) = t.remember(Ino::ROOT, &cid.to_string(), info) {
                    t.pin(ino);
                }
                t
            };
            (table, false, format!("cairn:{cid}"))
        }
    };

    let mut shared = Shared::new(
        reader,
        table,
        options.clone(),
        namespace,
        meta.uid(),
        meta.gid(),
    );
    shared.names = names;
    let shared = Arc::new(shared);
    let fs = CairnFs {
        shared: shared.clone(),
        rt: runtime,
    };
    let config = session_config(MountOption::RO, fsname, &options);
    let session =
        fuser::spawn_mount(fs, &mountpoint, &config).map_err(|source| MountError::Fuse {
            path: mountpoint.clone(),
            source,
        })?;
    raise_readahead(&mountpoint, options.readahead_max);
    tracing::info!(mountpoint = %mountpoint.display(), "mounted");
    let handle = MountHandle {
        session: Some(session),
        mountpoint,
        root: match root {
            MountRoot::Cid(c) => Some(c),
            MountRoot::Namespace => None,
        },
        share: None,
        follower: None,
    };
    Ok((handle, shared))
}

/// Mounts a share writable at `mountpoint`: its head with the staged changes in
/// `share.stage` over it (replayed from the journal; any found there are committed at once),
/// committed as the policy says.
pub fn mount_share<S>(
    source: S,
    share: ShareMount,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
    runtime: Handle,
) -> Result<MountHandle, MountError>
where
    S: BlockSource + Clone,
{
    let mountpoint = mountpoint.as_ref().to_path_buf();
    let meta = check_mountpoint(&mountpoint)?;
    let reader = DagReader::with_node_cache(source, NODE_CACHE);
    let reads = Arc::new(Shared::new(
        reader.clone(),
        InodeTable::new(None),
        options.clone(),
        false,
        meta.uid(),
        meta.gid(),
    ));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (stage, head, timeout) = (share.stage.clone(), share.head, options.timeout);
    let store = share.store.clone();
    runtime.spawn(async move {
        let opened =
            tokio::time::timeout(timeout, open_staged(&stage, head, reader, &*store)).await;
        let _ = tx.send(opened);
    });
    let mut overlay = match rx.recv_timeout(timeout.saturating_add(Duration::from_secs(1))) {
        Ok(Ok(r)) => r.map_err(crate::writable::open_error)?,
        Ok(Err(_)) | Err(_) => {
            return Err(MountError::StagedTimeout {
                secs: timeout.as_secs(),
            })
        }
    };
    set_base_ids(&mut overlay, &share);
    let recovered = overlay.getattr(NodeId::ROOT).is_ok_and(|a| a.dirty);
    let label = share.label.clone();
    let id = share.id.clone();
    let state = new_state(overlay, share, reads, &options, (meta.uid(), meta.gid()));
    if recovered {
        // Changes staged before a crash (or an unmount whose commit failed): committed before
        // the mount appears; if that fails, the committer tries again.
        tracing::info!(share = %label, "found staged changes; committing them");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let st = state.clone();
        runtime.spawn(async move {
            let _ = tx.send(st.commit().await);
        });
        match rx.recv() {
            Ok(Ok(Some(c))) => {
                tracing::info!(sequence = c.sequence, root = %c.root, "committed the staged changes")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot commit the staged changes yet; they stay staged");
                state.touched();
            }
            Err(_) => state.touched(),
        }
    }
    runtime.spawn(crate::writable::committer_task(
        Arc::downgrade(&state),
        state.wake.clone(),
    ));
    let control = ShareControl::new(state.clone(), &id);
    let fs = new_fs(state.clone(), runtime);
    let config = session_config(MountOption::RW, format!("cairn:{label}"), &options);
    let session =
        fuser::spawn_mount(fs, &mountpoint, &config).map_err(|source| MountError::Fuse {
            path: mountpoint.clone(),
            source,
        })?;
    let _ = state.notifier.set(session.notifier());
    raise_readahead(&mountpoint, options.readahead_max);
    tracing::info!(mountpoint = %mountpoint.display(), "mounted writable");
    Ok(MountHandle {
        session: Some(session),
        mountpoint,
        root: None,
        share: Some(control),
        follower: None,
    })
}

/// The FUSE session's settings: `access` is `RO` or `RW`.
fn session_config(access: MountOption, fsname: String, options: &MountOptions) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        access,
        MountOption::NoAtime,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
        MountOption::FSName(fsname),
        MountOption::Subtype("cairn".to_string()),
    ];
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config
}

fn new_state<S: BlockSource + Clone>(
    overlay: Overlay<S>,
    share: ShareMount,
    reads: Arc<Shared<S>>,
    options: &MountOptions,
    (uid, gid): (u32, u32),
) -> Arc<State<S>> {
    Arc::new(State {
        staged: tokio::sync::Mutex::new(Staged {
            overlay,
            base_size: share.head_size,
            sequence: share.sequence,
        }),
        store: share.store,
        import: share.import,
        policy: share.policy,
        activity: std::sync::Mutex::new(Activity::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        closed: std::sync::atomic::AtomicBool::new(false),
        files: std::sync::Mutex::new(HashMap::new()),
        dirs: std::sync::Mutex::new(HashMap::new()),
        next_fh: std::sync::atomic::AtomicU64::new(1),
        reads,
        options: options.clone(),
        uid,
        gid,
        notifier: std::sync::OnceLock::new(),
    })
}

/// Commits the staged changes of a share that is not mounted (left by a crash, or by an
/// unmount whose commit failed); `None` when there are none. `share.stage` must not be in use
/// by a mount.
pub async fn commit_staged<S: BlockSource + Clone>(
    source: S,
    share: ShareMount,
) -> Result<Option<CommitOutcome>, CommitError> {
    let reader = DagReader::with_node_cache(source, NODE_CACHE);
    let options = MountOptions::default();
    let reads = Arc::new(Shared::new(
        reader.clone(),
        InodeTable::new(None),
        options.clone(),
        false,
        0,
        0,
    ));
    let mut overlay = open_staged(&share.stage, share.head, reader, &*share.store).await?;
    set_base_ids(&mut overlay, &share);
    let state = new_state(overlay, share, reads, &options, (0, 0));
    state.commit().await
}

/// Opens the staging area `stage` over the share's head `head`. Changes staged over another
/// version (the head moved while they waited: another writer's version arrived, or a commit's
/// merge left the mount on its own tree) are opened over the version they were made on, when
/// its blocks are here: their commit is then merged into the head (see
/// [`ShareStore::publish`]), so nothing staged is lost.
async fn open_staged<S: BlockSource + Clone>(
    stage: &Path,
    head: cairn_store::Cid,
    reader: DagReader<S>,
    store: &dyn crate::writable::ShareStore,
) -> Result<Overlay<S>, crate::overlay::OverlayError> {
    match Overlay::open(stage, head, reader.clone()).await {
        Err(crate::overlay::OverlayError::HeadMoved { journal_base, .. })
            if store.ids_of(*journal_base).is_some() =>
        {
            tracing::info!(base = %journal_base, head = %head, "staged changes were made on an earlier version; they are merged into the head at their commit");
            Overlay::open(stage, *journal_base, reader).await
        }
        r => r,
    }
}

/// Identities come from the base version's id tree (the head's, or for staged changes
/// replayed over an earlier version, see `Overlay::open`, that version's).
fn set_base_ids<S: BlockSource + Clone>(overlay: &mut Overlay<S>, share: &ShareMount) {
    let base_ids = if overlay.base() == share.head {
        share.ids
    } else {
        share.store.ids_of(overlay.base())
    };
    overlay.set_base_ids(base_ids);
}

/// Reads the root's metadata on the runtime, waiting at most `timeout` (plus a grace second
/// in case the runtime cannot run the task at all).
fn stat_root<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    cid: cairn_store::Cid,
    timeout: Duration,
    runtime: &Handle,
) -> Result<cairn_store::NodeInfo, MountError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reader = reader.clone();
    runtime.spawn(async move {
        let _ = tx.send(tokio::time::timeout(timeout, reader.stat(&cid)).await);
    });
    let secs = timeout.as_secs();
    match rx.recv_timeout(timeout.saturating_add(Duration::from_secs(1))) {
        Ok(Ok(r)) => Ok(r?),
        Ok(Err(_)) | Err(_) => Err(MountError::RootTimeout { cid, secs }),
    }
}

/// Raises the kernel readahead of the new mount to `bytes` (best effort: needs root).
///
/// The FUSE handshake cannot raise readahead above the kernel's default (128 KiB), so the page
/// cache would ask for 128 KiB per read request; the mount's backing device info in sysfs can
/// (up to the request size limit, `max_pages`, 1 MiB by default): fewer, larger requests.
fn raise_readahead(mountpoint: &Path, bytes: u64) {
    let Ok(canonical) = fs::canonicalize(mountpoint) else {
        return;
    };
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // The last matching line is the newest mount on that point: ours.
    let Some(device) = mountinfo
        .lines()
        .rev()
        .filter(|l| l.split(' ').nth(4).map(unescape_octal).as_deref() == Some(&canonical))
        .find_map(|l| l.split(' ').nth(2))
    else {
        return;
    };
    let knob = Path::new("/sys/class/bdi")
        .join(device)
        .join("read_ahead_kb");
    match fs::write(&knob, (bytes / 1024).max(128).to_string()) {
        Ok(()) => tracing::debug!(knob = %knob.display(), bytes, "raised readahead"),
        Err(e) => tracing::debug!(knob = %knob.display(), error = %e, "cannot raise readahead"),
    }
}

/// Checks that `path` is an existing, empty directory that nothing is mounted on.
fn check_mountpoint(path: &Path) -> Result<fs::Metadata, MountError> {
    let inspect = |source: io::Error| MountError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MissingMountpoint {
                path: path.to_path_buf(),
            })
        }
        // A FUSE mount whose daemon died answers ENOTCONN.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::AlreadyMounted {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(inspect(e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let canonical = fs::canonicalize(path).map_err(inspect)?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(inspect)?;
    if mount_points(&mountinfo).any(|p| p == canonical) {
        return Err(MountError::AlreadyMounted {
            path: path.to_path_buf(),
        });
    }
    if fs::read_dir(path).map_err(inspect)?.next().is_some() {
        return Err(MountError::NotEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(meta)
}

/// The mount points listed in a `/proc/self/mountinfo` text (field 5, octal escapes undone).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
}

fn unescape_octal(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (b[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        let points: Vec<_> = mount_points(text).collect();
        assert_eq!(points, [PathBuf::from("/mnt/a b"), PathBuf::from("/proc")]);
    }

    #[test]
    fn bad_mountpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            check_mountpoint(&missing),
            Err(MountError::MissingMountpoint { .. })
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(MountError::NotADirectory { .. })
        ));
        assert!(matches!(
            check_mountpoint(dir.path()),
            Err(MountError::NotEmpty { .. })
        ));
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(check_mountpoint(&empty).is_ok());
        assert!(matches!(
            check_mountpoint(Path::new("/proc")),
            Err(MountError::AlreadyMounted { .. })
        ));
    }
}
