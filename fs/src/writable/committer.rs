//! Commits of a writable mount: when they happen and what they do.
//!
//! A commit takes the overlay's lock, builds the new root DAG from the staged changes into a
//! GC-safe sink ([`ShareStore::sink`]), hands it to [`ShareStore::publish`] (which signs the
//! new record and moves the share's head: the commit point), and only then tells the overlay
//! that its changes are committed. A failure anywhere leaves the previous head and every
//! staged change in place; the committer tries again later.
//!
//! Triggers: `fsync`/`fdatasync`/`fsyncdir` (after the staged data is durable), a quiet
//! period after the last change ([`CommitPolicy::quiet`]), at the latest
//! [`CommitPolicy::max_interval`] after the first uncommitted change while changes go on,
//! [`ShareControl::commit`] (`cairn share commit`), and the end of the session.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cairn_store::{Block, BlockSink, BlockSource, Cid, StoreError};
use tokio::sync::Notify;

use super::State;
use crate::filesystem::lock;
use crate::overlay::{CommitStats, NodeId, OverlayError};

/// When a writable mount commits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// Commit once no change came for this long.
    pub quiet: Duration,
    /// While changes go on, commit at the latest this long after the first uncommitted one.
    pub max_interval: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            quiet: Duration::from_millis(500),
            max_interval: Duration::from_secs(5),
        }
    }
}

/// Where a writable mount's commits go: the share's head in the repo.
pub trait ShareStore: Send + Sync + 'static {
    /// A sink for one commit's blocks that keeps them safe from GC until it is dropped (after
    /// [`ShareStore::publish`] has pinned them).
    fn sink(&self) -> Arc<dyn BlockSink>;
    /// Makes `stats.root` (its blocks given to the sink) the share's new head: flushes the
    /// store, signs and stores the next record, moves the head. `base` is the version the
    /// changes were made on (what the mount showed before them): when the share's head is no
    /// longer that tree (another writer's version arrived meanwhile), the new head is the
    /// three-way merge of the head and `stats.root` over `base`, so no write is lost, and
    /// [`Published::merged`] says so.
    fn publish<'a>(&'a self, stats: &'a CommitStats, base: MountBase) -> PublishFuture<'a>;
    /// The mount now shows version `root` (with id tree `ids`), the share's head, after a
    /// rebase onto it; what `publish` kept for a merged base can go.
    fn rebased(&self, root: Cid, ids: Option<Cid>) {
        let _ = (root, ids);
    }
    /// The id tree of the share's version with root `root`, if it is one and has one (for
    /// staged changes replayed over a version other than the head).
    fn ids_of(&self, root: Cid) -> Option<Cid> {
        let _ = root;
        None
    }
}

/// What [`ShareStore::publish`] returns.
pub type PublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Published, PublishError>> + Send + 'a>>;

/// The version a mount's staged changes were made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountBase {
    /// Its root directory.
    pub root: Cid,
    /// Its id tree, if known.
    pub ids: Option<Cid>,
}

/// A version that [`ShareStore::publish`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its sequence number.
    pub sequence: u64,
    /// Its record's block.
    pub record: Cid,
    /// The blocks publishing wrote (the record, the commit, ...).
    pub blocks: u64,
    /// Whether the head had moved from the mount's base and the new head is a merge (whose
    /// root is not `stats.root`: the mount catches up with it later, see
    /// [`ShareControl::advance`]).
    pub merged: bool,
}

/// Why [`ShareStore::publish`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// What went wrong, for people.
    pub message: String,
    /// Whether the disk is full.
    pub no_space: bool,
}

/// Why a commit failed. The previous head stays, and so do the staged changes.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Building the new DAG, or resetting the staging area after it, failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Moving the head failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl CommitError {
    /// Whether the disk is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            CommitError::Overlay(e) => e.is_no_space(),
            CommitError::Publish(e) => e.no_space,
        }
    }
}

/// What one commit made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new version's sequence number.
    pub sequence: u64,
    /// Its root directory.
    pub root: Cid,
    /// Its record block.
    pub record: Cid,
    /// Its content size.
    pub size: u64,
    /// Paths changed against the previous version.
    pub changed: u64,
    /// Blocks the commit wrote (the record and the commit included).
    pub blocks: u64,
    /// How long it took.
    pub took: Duration,
}

/// Commands to a live writable mount, from any thread (e.g. `cairn share commit`).
#[derive(Clone)]
pub struct ShareControl {
    inner: Arc<dyn Control>,
    id: Arc<str>,
}

impl std::fmt::Debug for ShareControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareControl").finish_non_exhaustive()
    }
}

type CommitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<CommitOutcome>, CommitError>> + Send + 'a>>;

trait Control: Send + Sync {
    fn commit(&self) -> CommitFuture<'_>;
    fn advance(&self, job: AdvanceJob) -> AdvanceFuture<'_>;
}

impl<S: BlockSource + Clone> Control for State<S> {
    fn commit(&self) -> CommitFuture<'_> {
        Box::pin(State::commit(self))
    }

    fn advance(&self, job: AdvanceJob) -> AdvanceFuture<'_> {
        Box::pin(State::advance(self, job))
    }
}

/// Where [`ShareControl::advance`] moves a mount: the version to show, and what moves the
/// share's tip there (run after the mount moved; see [`State::advance`]).
pub struct Advanced {
    /// The version's root directory.
    pub root: Cid,
    /// Its id tree.
    pub ids: Option<Cid>,
    /// Its content size.
    pub size: u64,
    /// Moves the share's tip to it.
    pub finish: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

/// The work [`ShareControl::advance`] runs under the mount's lock: given the version the mount
/// shows, where to move it (`None`: nowhere, it is current).
pub type AdvanceJob = Box<
    dyn FnOnce(Cid) -> Pin<Box<dyn Future<Output = Result<Option<Advanced>, String>> + Send>>
        + Send,
>;

type AdvanceFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, AdvanceError>> + Send + 'a>>;

/// Why [`ShareControl::advance`] did not move the mount.
#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    /// Files are open for writing, or something was written since the commit before it: the
    /// caller tries again later.
    #[error("files are open for writing in the mount")]
    Busy,
    /// Committing the staged changes first failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The job failed.
    #[error("{0}")]
    Job(String),
    /// Moving the overlay failed (nothing moved).
    #[error(transparent)]
    Rebase(OverlayError),
}

impl ShareControl {
    pub(crate) fn new<S: BlockSource + Clone>(state: Arc<State<S>>, id: &str) -> ShareControl {
        ShareControl {
            inner: state,
            id: id.into(),
        }
    }

    /// The share's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Commits the staged changes now; `None` when there were none.
    pub async fn commit(&self) -> Result<Option<CommitOutcome>, CommitError> {
        self.inner.commit().await
    }

    /// Moves the mount onto another version of its share (another writer's head, or a merge
    /// with it): commits the staged changes, then, with nothing staged and no file open for
    /// writing, runs `job` under the mount's lock (writes wait meanwhile), moves the mount to
    /// the version it names, and moves the share's tip there. Returns whether it moved.
    pub async fn advance(&self, job: AdvanceJob) -> Result<bool, AdvanceError> {
        self.inner.advance(job).await
    }
}

/// Counts the blocks a commit writes.
struct Counting {
    inner: Arc<dyn BlockSink>,
    blocks: AtomicU64,
}

impl BlockSink for Counting {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.blocks
            .fetch_add(blocks.len() as u64, Ordering::Relaxed);
        self.inner.put_blocks(blocks)
    }
}

impl<S: BlockSource + Clone> State<S> {
    /// Something changed: the committer plans its next commit.
    pub(crate) fn touched(&self) {
        let now = Instant::now();
        let mut a = lock(&self.activity);
        let first = a.first.is_none();
        a.first.get_or_insert(now);
        a.last = Some(now);
        drop(a);
        // Only the first change since a commit wakes the committer: when it wakes for the
        // deadline that change set, it sees the later ones and waits on.
        if first {
            self.wake.notify_one();
        }
    }

    /// How long until the committer should commit (`None`: nothing to commit).
    fn next_commit_in(&self) -> Option<Duration> {
        let a = lock(&self.activity);
        let first = a.first?;
        let last = a.last.unwrap_or(first);
        let mut at = (last + self.policy.quiet).min(first + self.policy.max_interval);
        if let Some(retry) = a.retry_at {
            at = at.max(retry);
        }
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Commits the staged changes; `None` when there were none (or they changed nothing).
    pub(crate) async fn commit(&self) -> Result<Option<CommitOutcome>, CommitError> {
        let started = Instant::now();
        let mut st = self.staged.lock().await;
        // Changes from now on are for the next commit.
        let pending = std::mem::take(&mut *lock(&self.activity));
        let result = self.commit_locked(&mut st, started).await;
        if result.is_err() {
            // Try again later, keeping the changes' times so the retry is not postponed by
            // every new write.
            let mut a = lock(&self.activity);
            a.first = pending.first.or(a.first).or(Some(started));
            a.last = a.last.or(pending.last);
            a.retry_at = Some(Instant::now() + self.policy.max_interval);
        }
        result
    }

    async fn commit_locked(
        &self,
        st: &mut super::Staged<S>,
        started: Instant,
    ) -> Result<Option<CommitOutcome>, CommitError> {
        if !st.overlay.getattr(NodeId::ROOT).is_ok_and(|a| a.dirty) {
            return Ok(None);
        }
        // Everything staged is durable first (and the staging files of removed files go), so
        // a commit is a point a restart comes back to even if building it fails.
        st.overlay.sync()?;
        let sink = Counting {
            inner: self.store.sink(),
            blocks: AtomicU64::new(0),
        };
        let base = st.overlay.base();
        let base_ids = st.overlay.base_ids();
        let stats = st.overlay.commit(&sink, &self.import, st.base_size).await?;
        cairn_store::crash_point("share-commit-built");
        let open = self.open_writers();
        if stats.root == base {
            // Changes that cancel out (a file made and removed): nothing to publish.
            st.overlay.committed_keeping(stats.root, &open)?;
            return Ok(None);
        }
        let published = self
            .store
            .publish(
                &stats,
                MountBase {
                    root: base,
                    ids: base_ids,
                },
            )
            .await?;
        cairn_store::crash_point("share-commit-published");
        st.base_size = stats.size;
        st.sequence = published.sequence;
        if let Err(e) = st.overlay.committed_keeping(stats.root, &open) {
            // The head moved; the staging area still holds the changes it now contains. The
            // next commit builds the same tree again; a restart sees the journal's commit
            // record and starts clean.
            tracing::warn!(error = %e, root = %stats.root, "cannot reset the staging area after a commit");
            return Err(e.into());
        }
        cairn_store::crash_point("share-commit-reset");
        let outcome = CommitOutcome {
            sequence: published.sequence,
            root: stats.root,
            record: published.record,
            size: stats.size,
            changed: stats.changed,
            blocks: sink.blocks.load(Ordering::Relaxed) + published.blocks,
            took: started.elapsed(),
        };
        tracing::debug!(
            sequence = outcome.sequence, root = %outcome.root, blocks = outcome.blocks,
            ms = outcome.took.as_millis() as u64, "committed"
        );
        Ok(Some(outcome))
    }
}

impl<S: BlockSource + Clone> State<S> {
    /// See [`ShareControl::advance`]. The tip moves first and the mount after it: if moving
    /// the tip fails nothing moved; if the mount cannot move after it, the mount shows its
    /// base as before, and its next commit is merged into the tip over that base (see
    /// [`ShareStore::publish`]), which loses nothing.
    pub(crate) async fn advance(&self, job: AdvanceJob) -> Result<bool, AdvanceError> {
        self.commit().await?;
        let mut st = self.staged.lock().await;
        if !st.overlay.is_clean() || !self.open_writers().is_empty() {
            return Err(AdvanceError::Busy);
        }
        let base = st.overlay.base();
        let Some(to) = job(base).await.map_err(AdvanceError::Job)? else {
            return Ok(false);
        };
        if to.root == base {
            (to.finish)().map_err(AdvanceError::Job)?;
            return Ok(false);
        }
        (to.finish)().map_err(AdvanceError::Job)?;
        let moved = match st.overlay.rebase(to.root, to.ids).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, root = %to.root, "the share's tip moved but the mount could not follow yet; its next commit is merged into the tip");
                return Err(AdvanceError::Rebase(e));
            }
        };
        st.base_size = to.size;
        self.store.rebased(to.root, to.ids);
        drop(st);
        // The kernel's caches, off the lock and off the runtime: the kernel may be waiting on
        // this mount to answer while it takes the notification.
        if let Some(n) = self.notifier.get().cloned() {
            let _ = tokio::task::spawn_blocking(move || {
                for id in moved.changed {
                    let _ = n.inval_inode(fuser::INodeNo(id.0), 0, 0);
                }
                for (dir, name) in moved.gone {
                    let _ = n.inval_entry(fuser::INodeNo(dir.0), std::ffi::OsStr::new(&name));
                }
            })
            .await;
        }
        Ok(true)
    }
}

/// The committer task: commits after the quiet period or the longest interval, until the
/// session ends.
pub(crate) async fn run<S: BlockSource + Clone>(state: Weak<State<S>>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wait = {
            let Some(st) = state.upgrade() else { return };
            if st.closed.load(Ordering::Acquire) {
                return;
            }
            st.next_commit_in()
        };
        match wait {
            None => notified.await,
            Some(d) if d.is_zero() => {
                let Some(st) = state.upgrade() else { return };
                match st.commit().await {
                    Ok(_) => {}
                    Err(e) if e.is_no_space() => {
                        tracing::warn!("commit failed: the disk is full; the changes stay staged, and the commit is tried again")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "commit failed; the changes stay staged, and the commit is tried again")
                    }
                }
            }
            Some(d) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}
