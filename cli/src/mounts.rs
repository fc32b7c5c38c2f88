//! The mounts a process serves (the daemon, or a foreground `cairn mount`), by canonical mount
//! point, and what commands ask of them: the live controls of a writable share mount, and the
//! versions that retention must keep because they are mounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use anyhow::Result;
use cairn_fs::{
    CommitStats, FollowHead, MountHandle, PublishError, Published, ShareControl, ShareStore,
};
use cairn_store::{BlockSink, Cid, IpnsName, Repo};

/// The mount table of one process.
#[derive(Default)]
pub struct Mounts {
    table: Mutex<HashMap<PathBuf, MountHandle>>,
    /// Each share's head as this process last made or saw it; read-only mounts of the share
    /// follow it.
    heads: Mutex<HashMap<IpnsName, tokio::sync::watch::Sender<FollowHead>>>,
    /// Told of every head that moves (the daemon publishes its own and announces its tips).
    on_moved: Mutex<Vec<HeadHook>>,
    /// Followed shares whose newest version cannot be confirmed now (see `records.rs`).
    stale: Mutex<HashMap<IpnsName, bool>>,
    /// Followed shares with a newer record whose root is being fetched again (`records.rs`).
    root_retries: Mutex<Vec<IpnsName>>,
}

/// What [`Mounts::on_head_moved`] calls.
pub type HeadHook = Box<dyn Fn(&IpnsName) + Send + Sync>;

impl Mounts {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, MountHandle>> {
        // Every critical section is one map operation.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a mount this process serves.
    pub fn insert(&self, dir: PathBuf, handle: MountHandle) {
        self.lock().insert(dir, handle);
    }

    /// Takes a mount out of the table (to unmount or forget it).
    pub fn take(&self, dir: &Path) -> Option<MountHandle> {
        self.lock().remove(dir)
    }

    /// Takes every mount out of the table.
    pub fn drain(&self) -> Vec<(PathBuf, MountHandle)> {
        self.lock().drain().collect()
    }

    /// The writable mount of share `id`, if this process serves one.
    pub fn share(&self, id: &IpnsName) -> Option<(PathBuf, ShareControl)> {
        let id = id.to_string();
        self.lock().iter().find_map(|(dir, h)| {
            h.share()
                .filter(|c| c.id() == id)
                .map(|c| (dir.clone(), c.clone()))
        })
    }

    /// A receiver of share `name`'s head, starting at `current`.
    pub fn follow(
        &self,
        name: &IpnsName,
        current: FollowHead,
    ) -> tokio::sync::watch::Receiver<FollowHead> {
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = heads
            .entry(*name)
            .or_insert_with(|| tokio::sync::watch::channel(current).0);
        tx.subscribe()
    }

    /// Share `name`'s head moved to `root` (a commit, a restore, a newer record of a followed
    /// share): its following mounts switch, and the hook hears of it.
    pub fn head_moved(&self, name: &IpnsName, root: Cid, sequence: u64) {
        {
            // Heads, then staleness: the order `set_stale` takes them in too.
            let heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tx) = heads.get(name) {
                let stale = self.is_stale(name);
                tx.send_replace(FollowHead {
                    root,
                    sequence,
                    stale,
                });
            }
        }
        for hook in &*self.on_moved.lock().unwrap_or_else(PoisonError::into_inner) {
            hook(name);
        }
    }

    /// Whether followed share `name` was last found stale (unknown: not stale).
    pub fn is_stale(&self, name: &IpnsName) -> bool {
        let stale = self.stale.lock().unwrap_or_else(PoisonError::into_inner);
        stale.get(name).copied().unwrap_or(false)
    }

    /// Followed share `name` is found `stale` or current: its following mounts say so.
    pub fn set_stale(&self, name: &IpnsName, stale: bool) {
        let heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        self.stale
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*name, stale);
        if let Some(tx) = heads.get(name) {
            tx.send_if_modified(|h| std::mem::replace(&mut h.stale, stale) != stale);
        }
    }

    /// Marks share `name` as having a root-fetch retry running; `false` if one already is.
    pub fn start_root_retry(&self, name: &IpnsName) -> bool {
        let mut r = self
            .root_retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if r.contains(name) {
            return false;
        }
        r.push(*name);
        true
    }

    /// The root-fetch retry of share `name` ended.
    pub fn end_root_retry(&self, name: &IpnsName) {
        self.root_retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n| n != name);
    }

    /// Calls `hook` (too) whenever a head moves.
    pub fn on_head_moved(&self, hook: HeadHook) {
        self.on_moved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// The roots that read-only mounts show now (retention keeps those versions).
    pub fn roots(&self) -> Vec<Cid> {
        self.lock().values().filter_map(MountHandle::root).collect()
    }
}

/// Where a writable mount's commits go: the share's head in this repo.
pub struct RepoShare {
    pub repo: Arc<Repo>,
    pub name: IpnsName,
    /// The process's mounts (weak: the table holds this mount).
    pub mounts: Weak<Mounts>,
}

impl ShareStore for RepoShare {
    fn sink(&self) -> Arc<dyn BlockSink> {
        Arc::new(self.repo.session())
    }

    fn publish(&self, stats: &CommitStats) -> Result<Published, PublishError> {
        let protected = self.mounts.upgrade().map(|m| m.roots()).unwrap_or_default();
        let fail = |e: cairn_store::ShareError| PublishError {
            no_space: e.is_no_space(),
            message: format!("cannot commit share {}: {e}", self.name),
        };
        if !self
            .repo
            .shares()
            .find(&self.name.to_string())
            .is_ok_and(|s| s.writable)
        {
            // A member: a commit signed by this node's key, child of its tip.
            let me = self.repo.identity_key();
            let tip = self.repo.shares().tip(&self.name).map_err(fail)?;
            let tip_cid = tip.as_ref().map(|c| *c.block().cid());
            let moved = self
                .repo
                .shares()
                .move_tip(
                    &self.name,
                    &me,
                    tip_cid,
                    cairn_store::heads::TipMove::New {
                        root: stats.root,
                        ids: stats.ids,
                        parents: tip_cid.into_iter().collect(),
                        size: stats.size,
                        changed: stats.changed,
                    },
                    &protected,
                )
                .map_err(fail)?;
            if let Some(m) = self.mounts.upgrade() {
                m.head_moved(&self.name, stats.root, moved.commit.seq);
            }
            return Ok(Published {
                sequence: moved.commit.seq,
                record: *moved.commit.block().cid(),
                // The commit.
                blocks: 1,
            });
        }
        let version = self
            .repo
            .shares()
            .commit(
                &self.name,
                stats.root,
                stats.ids,
                stats.size,
                stats.changed,
                &protected,
            )
            .map_err(|e| PublishError {
                no_space: e.is_no_space(),
                message: format!("cannot commit share {}: {e}", self.name),
            })?;
        if let Some(m) = self.mounts.upgrade() {
            m.head_moved(&self.name, stats.root, version.sequence);
        }
        Ok(Published {
            sequence: version.sequence,
            record: version.record,
            // The record and the commit.
            blocks: 2,
        })
    }

    fn ids_of(&self, root: Cid) -> Option<Cid> {
        let log = self.repo.shares().log(&self.name).ok()?;
        log.into_iter().find(|v| v.root == root)?.ids
    }
}
