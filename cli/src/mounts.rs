//! The mounts a process serves (the daemon, or a foreground `cairn mount`), by canonical mount
//! point, and what commands ask of them: the live controls of a writable share mount, and the
//! versions that retention must keep because they are mounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use anyhow::Result;
use cairn_fs::{
    CommitStats, FollowHead, MountBase, MountHandle, PublishError, PublishFuture, Published,
    ShareControl, ShareStore,
};
use cairn_store::{BlockSink, Blockstore, Cid, IpnsName, Repo};

/// The mount table of one process.
#[derive(Default)]
pub struct Mounts {
    table: Mutex<HashMap<PathBuf, MountHandle>>,
    /// Each share's head as this process last made or saw it; read-only mounts of the share
    /// follow it.
    heads: Mutex<HashMap<IpnsName, tokio::sync::watch::Sender<FollowHead>>>,
    /// Told of every head that moves (the daemon publishes its own and announces its tips).
    on_moved: Mutex<Vec<HeadHook>>,
    /// Told when a writable mount's commit was merged into a tip that had moved under it.
    on_diverged: Mutex<Vec<HeadHook>>,
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
        let share = handle.share().and_then(|c| c.id().parse::<IpnsName>().ok());
        self.lock().insert(dir, handle);
        // A head that moved the tip while the mount started: the mount moves onto it.
        if let Some(name) = share {
            self.diverged(&name);
        }
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

    /// Calls `hook` (too) whenever a writable mount's commit was merged into a tip that had
    /// moved under it (the mount then catches up with the tip).
    pub fn on_diverged(&self, hook: HeadHook) {
        self.on_diverged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// A writable mount of share `name` shows its own tree, not the tip (see `on_diverged`).
    pub fn diverged(&self, name: &IpnsName) {
        for hook in &*self
            .on_diverged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            hook(name);
        }
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

    fn publish<'a>(&'a self, stats: &'a CommitStats, base: MountBase) -> PublishFuture<'a> {
        Box::pin(self.publish_on(stats, base))
    }

    fn rebased(&self, _root: Cid, _ids: Option<Cid>) {
        // The mount shows the tip: the merged base kept for it can go.
        let names = [self.base_root("root"), self.base_root("ids")];
        if self.repo.roots().has(&names[0]) {
            if let Err(e) = self.repo.roots().remove_many(&names) {
                tracing::warn!(share = %self.name, error = %e, "cannot drop the mount's merged base root");
            }
        }
    }

    fn ids_of(&self, root: Cid) -> Option<Cid> {
        let roots = self.repo.roots();
        if roots.get(&self.base_root("root")) == Some(root) {
            return roots.get(&self.base_root("ids"));
        }
        if let Ok(Some(tip)) = self.repo.shares().tip(&self.name) {
            if tip.root == root {
                return Some(tip.ids);
            }
        }
        let log = self.repo.shares().log(&self.name).ok()?;
        if let Some(ids) = log.into_iter().find(|v| v.root == root).and_then(|v| v.ids) {
            return Some(ids);
        }
        self.repo.shares().ids_in_history(&self.name, &root)
    }
}

impl RepoShare {
    /// The GC root that keeps a mount's base while it is not the tip (after a merged commit).
    fn base_root(&self, what: &str) -> String {
        format!("share/{}/w/{what}", self.name)
    }

    /// See [`ShareStore::publish`]: the owner's commit is a new version (its record signed with
    /// the share's key), a member's a commit signed with this node's key; either is a child of
    /// the tip. When the tip is no longer the tree the changes were made on, the commit's tree
    /// is the three-way merge of the tip's and the mount's over that base (everything it
    /// reads is here: the tip's version was read in before the tip moved to it).
    async fn publish_on(
        &self,
        stats: &CommitStats,
        base: MountBase,
    ) -> Result<Published, PublishError> {
        let shares = self.repo.shares();
        let fail = |e: cairn_store::ShareError| PublishError {
            no_space: e.is_no_space(),
            message: format!("cannot commit share {}: {e}", self.name),
        };
        let owner = shares
            .find(&self.name.to_string())
            .is_ok_and(|s| s.writable);
        let me = self.repo.identity_key();
        let writer = if owner { self.name } else { me.name() };
        for _ in 0..8 {
            let tip = shares.tip(&self.name).map_err(fail)?;
            let tip_cid = tip.as_ref().map(|c| *c.block().cid());
            let merged = match &tip {
                Some(t) if t.root != base.root && t.root != stats.root => {
                    Some(self.merge_into(t, stats, base, &writer).await?)
                }
                _ => None,
            };
            let (root, ids, size) = match &merged {
                Some((w, size)) => (w.root, Some(w.ids), *size),
                None => (stats.root, stats.ids, stats.size),
            };
            let protected = self.mounts.upgrade().map(|m| m.roots()).unwrap_or_default();
            let moved = shares.move_tip(
                &self.name,
                &me,
                tip_cid,
                cairn_store::heads::TipMove::New {
                    root,
                    ids,
                    parents: tip_cid.into_iter().collect(),
                    size,
                    changed: stats.changed,
                },
                &protected,
            );
            let moved = match moved {
                Err(cairn_store::ShareError::TipMoved(_)) => continue,
                r => r.map_err(fail)?,
            };
            // The mount stays on its own tree until it catches up with the merge: that tree is
            // kept (a restart replays what is staged over it), and the tip moves the mount.
            let keep = match (merged.is_some(), stats.ids) {
                (true, Some(ids)) => vec![
                    (self.base_root("root"), stats.root),
                    (self.base_root("ids"), ids),
                ],
                _ => Vec::new(),
            };
            if !keep.is_empty() {
                self.repo
                    .roots()
                    .set_many(&keep)
                    .map_err(|e| fail(e.into()))?;
            } else {
                self.rebased(root, ids);
            }
            let sequence = moved
                .version
                .as_ref()
                .map_or(moved.commit.seq, |v| v.sequence);
            let record = moved
                .version
                .as_ref()
                .map_or(*moved.commit.block().cid(), |v| v.record);
            if let Some(m) = self.mounts.upgrade() {
                m.head_moved(&self.name, root, sequence);
                if merged.is_some() {
                    m.diverged(&self.name);
                }
            }
            return Ok(Published {
                sequence,
                record,
                // The commit (and on the owner the record).
                blocks: if owner { 2 } else { 1 },
                merged: merged.is_some(),
            });
        }
        Err(PublishError {
            no_space: false,
            message: format!(
                "cannot commit share {}: its tip keeps moving; the changes stay staged",
                self.name
            ),
        })
    }

    /// The three-way merge of tip `tip` and the mount's new tree over the tree the mount's
    /// changes were made on; its directories written to the store. Returns it and its size.
    async fn merge_into(
        &self,
        tip: &cairn_store::commit::Commit,
        stats: &CommitStats,
        base: MountBase,
        writer: &IpnsName,
    ) -> Result<(cairn_store::identity::Written, u64), PublishError> {
        use cairn_store::heads::{merge_options, merge_trees};
        use cairn_store::identity::read_version;
        use cairn_store::merge::Side;
        let fail = |what: &str, e: &dyn std::fmt::Display| PublishError {
            no_space: false,
            message: format!("cannot commit share {}: {what}: {e}", self.name),
        };
        let reader = cairn_store::DagReader::new(cairn_store::LocalSource::new(self.repo.store()));
        let base_tree = read_version(&reader, base.root, base.ids)
            .await
            .map_err(|e| fail("cannot read the version the changes were made on", &e))?;
        let theirs = read_version(&reader, tip.root, Some(tip.ids))
            .await
            .map_err(|e| fail("cannot read the tip", &e))?;
        let mine = read_version(&reader, stats.root, stats.ids)
            .await
            .map_err(|e| fail("cannot read the new version", &e))?;
        let shares = self.repo.shares();
        let (their_label, my_label) = (
            shares.writer_label(&self.name, tip),
            shares.label_now(&self.name, writer),
        );
        let out = merge_trees(
            &base_tree,
            Side {
                tree: &theirs,
                writer: &their_label,
                time: tip.time,
            },
            Side {
                tree: &mine,
                writer: &my_label,
                time: std::time::SystemTime::now(),
            },
            &merge_options(&tip.root, &stats.root),
            &self.repo.session(),
        )
        .map_err(|e| fail("cannot write the merge", &e))?;
        self.repo
            .store()
            .flush()
            .map_err(|e| fail("cannot write the merge", &e))?;
        tracing::info!(share = %self.name, tip = %tip.block().cid(), root = %out.written.root, conflicts = out.conflicts.len(), "the tip had moved under the mount's changes; merged them into it");
        Ok((out.written, out.size))
    }
}
