//! The heads of a share with several writers, on one node: which commit this node's copy is at
//! (its *tip*), the commits and member lists that arrive from other writers, and what to do
//! when another writer's head arrives (nothing, a fast-forward, or a three-way merge; see
//! [`Shares::plan`] and [`merge_commits`]).
//!
//! The owner's tip is the commit its head record names (every move of the owner's tip is a new
//! record, so followers see merges too). A member's tip is the `tip` file (the commit's bytes,
//! replaced atomically); a node that is neither has the head record's commit as its tip and
//! never moves it itself.
//!
//! # On disk (besides what `share.rs` lists)
//! ```text
//! <repo>/shares/<k51 name>/tip     a member's tip commit (raw bytes, verified on every load)
//! <repo>/shares/<k51 name>/wseq    the last commit sequence this node's identity key used
//! ```
//! Durable GC roots: `share/<name>/t/root`, `t/ids`, `t/commit` keep a member's tip version;
//! `share/<name>/h/<cid>` keeps every commit block this node made or accepted, so the history a
//! merge base is looked up in stays here (commits are small; their trees are kept only as long
//! as retention keeps the versions).
//!
//! # A tip move, and the crash argument
//! The new tree's blocks are in the store and flushed; the commit block is stored and flushed;
//! the roots are journaled (one fsynced record); the `tip` file is replaced (the commit point).
//! A crash before the last step leaves the previous tip, whose roots are still journaled; the
//! roots of a tip that never landed are replaced by the next move. For the owner the record
//! is the commit point, as for any version.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use crate::commit::{merge_base, Commit, CommitFields, Reached, MAX_HISTORY_WALK};
use crate::identity::{read_version, write_version, IdentityError, Written};
use crate::merge::{merge, Conflict, Side, Tree};
use crate::share::{Made, ShareError, Shares, Version};
use crate::{
    BlockSink, BlockSource, Blockstore, Cid, DagReader, ImportOptions, IpnsName, ShareKey,
};

const TIP_FILE: &str = "tip";
const WSEQ_FILE: &str = "wseq";
/// The label conflict copies give the owner's side.
pub const OWNER_LABEL: &str = "owner";

/// What a node does with another writer's head (see [`Shares::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The remote head is the tip or one of its ancestors: nothing to do.
    UpToDate,
    /// The tip is an ancestor of the remote head (or both are the same tree and the remote's
    /// commit is the one every node keeps): the tip moves to it.
    FastForward,
    /// Both changed since `base` (their nearest common ancestor; `None` if they share no
    /// history): a three-way merge, and a commit with both as parents.
    Merge { base: Option<Cid> },
}

/// How [`Shares::move_tip`] moves a tip.
#[derive(Debug, Clone)]
// A parameter, passed once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TipMove<'a> {
    /// To another writer's commit (a fast-forward), whose files add up to `size` bytes.
    To { commit: &'a Commit, size: u64 },
    /// To a new commit by this node's writer key of `root` with id tree `ids`, whose parents
    /// are `parents` (the tip, and for a merge the remote head).
    New {
        root: Cid,
        ids: Option<Cid>,
        parents: Vec<Cid>,
        size: u64,
        changed: u64,
    },
}

/// A tip that moved.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The tip's commit now.
    pub commit: Commit,
    /// The owner's new version (its record names the commit); `None` on a member.
    pub version: Option<Version>,
}

fn commit_root(name: &IpnsName, cid: &Cid) -> String {
    format!("share/{name}/h/{cid}")
}

impl Shares {
    /// The commit with CID `cid` of share `name`, if its block is here and verifies.
    pub fn read_commit(&self, name: &IpnsName, cid: &Cid) -> Option<Commit> {
        let data = self.store().get_verified(cid).ok()??;
        Commit::verify(&data, name).ok()
    }

    /// The commit this node's copy of share `name` is at (see the module notes); `None` when
    /// there is none (a share made before commits existed, or a head record without one).
    pub fn tip(&self, name: &IpnsName) -> Result<Option<Commit>, ShareError> {
        let path = self.share_dir(name).join(TIP_FILE);
        match fs::read(&path) {
            Ok(bytes) => match Commit::verify(&bytes, name) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => {
                    tracing::warn!(share = %name, error = %e, "the tip file is damaged; using the tip kept as a root")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::share::io_at(&path)(e)),
        }
        if let Some(cid) = self.roots().get(&format!("share/{name}/t/commit")) {
            if let Some(c) = self.read_commit(name, &cid) {
                return Ok(Some(c));
            }
        }
        let Ok((head, _)) = self.head_record(name) else {
            return Ok(None);
        };
        Ok(head.commit.and_then(|c| self.read_commit(name, &c)))
    }

    /// The key this node writes share `name` with: the share's key on its owner, `identity`
    /// (this node's key) where the newest member list here lets it write, else `None`.
    pub fn writer_key(
        &self,
        name: &IpnsName,
        identity: &ShareKey,
    ) -> Result<Option<ShareKey>, ShareError> {
        if let Ok(key) = self.key(name) {
            return Ok(Some(key));
        }
        let me = identity.name();
        Ok(self
            .members(name)?
            .filter(|l| l.may_write(&me))
            .map(|_| identity.clone()))
    }

    /// Takes member list `bytes` of share `name` (from a peer): kept as the share's list if it
    /// verifies against the share's key and is newer than the one here. Returns the list.
    pub fn receive_members(
        &self,
        name: &IpnsName,
        bytes: &[u8],
    ) -> Result<crate::MemberList, ShareError> {
        let list = crate::MemberList::verify(bytes, name)?;
        let _g = self.guard();
        if self.members(name)?.is_none_or(|held| list.seq > held.seq) {
            self.store_members_locked(name, &list)?;
        }
        Ok(list)
    }

    /// Whether commit `c` of share `name`, which `reached` this node as a head or as history,
    /// is acceptable here: by the owner, or by a member under the list it names (whose block
    /// must be here, see [`Shares::receive_members`]) and, as a head, not revoked under the
    /// newest list here (see [`Commit::check_member`]).
    pub fn check_commit(
        &self,
        name: &IpnsName,
        c: &Commit,
        reached: Reached,
    ) -> Result<(), ShareError> {
        if c.writer == *name {
            return Ok(());
        }
        let named = self
            .store()
            .get_verified(&c.members)?
            .map(|data| crate::MemberList::verify(&data, name))
            .transpose()?;
        let newest = self.members(name)?;
        c.check_member(named.as_ref(), newest.as_ref(), reached)?;
        Ok(())
    }

    /// Keeps commit `c` of share `name` (its block, and an `h` root). Returns whether it was
    /// new here.
    pub fn keep_commit(&self, name: &IpnsName, c: &Commit) -> Result<bool, ShareError> {
        let block = c.block();
        let root = commit_root(name, block.cid());
        let roots = self.roots();
        if roots.has(&root) && self.store().has(block.cid())? {
            return Ok(false);
        }
        self.store().put(&block)?;
        self.store().flush()?;
        roots.set_many(&[(root, *block.cid())])?;
        Ok(true)
    }

    /// The commits of share `name`'s history from `tip` that are not here: those a merge base
    /// lookup would need, nearest first (at most [`MAX_HISTORY_WALK`]). Empty when the whole
    /// history is here.
    pub fn missing_history(&self, name: &IpnsName, tip: &Cid) -> Vec<Cid> {
        let mut missing = Vec::new();
        let mut seen = HashSet::from([*tip]);
        let mut queue = VecDeque::from([*tip]);
        while let Some(c) = queue.pop_front() {
            if seen.len() > MAX_HISTORY_WALK {
                break;
            }
            match self.read_commit(name, &c) {
                Some(commit) => {
                    for p in commit.parents {
                        if seen.insert(p) {
                            queue.push_back(p);
                        }
                    }
                }
                None => missing.push(c),
            }
        }
        missing
    }

    /// The id tree of version `root` of share `name`, looked up in the tip's history (nearest
    /// first, at most [`MAX_HISTORY_WALK`] commits): a mount's staged changes made on a tip
    /// that has moved since (the daemon moved it after the mount went) reopen over that
    /// version, with its identities.
    pub fn ids_in_history(&self, name: &IpnsName, root: &Cid) -> Option<Cid> {
        let tip = self.tip(name).ok()??;
        let mut seen = HashSet::from([*tip.block().cid()]);
        let mut queue = VecDeque::from([tip]);
        while let Some(c) = queue.pop_front() {
            if c.root == *root {
                return Some(c.ids);
            }
            for p in &c.parents {
                if seen.len() > MAX_HISTORY_WALK {
                    return None;
                }
                if seen.insert(*p) {
                    queue.extend(self.read_commit(name, p));
                }
            }
        }
        None
    }

    /// Commit `c` of share `name` and every commit it descends from (at most
    /// [`MAX_HISTORY_WALK`]; all must be here).
    fn ancestors(&self, name: &IpnsName, c: &Cid) -> Result<HashSet<Cid>, ShareError> {
        let mut seen = HashSet::from([*c]);
        let mut queue = VecDeque::from([*c]);
        while let Some(x) = queue.pop_front() {
            if seen.len() > MAX_HISTORY_WALK {
                return Err(ShareError::Commit(Box::new(
                    crate::commit::CommitError::HistoryTooLong,
                )));
            }
            let commit = self
                .read_commit(name, &x)
                .ok_or(ShareError::Commit(Box::new(
                    crate::commit::CommitError::Missing(x),
                )))?;
            for p in commit.parents {
                if seen.insert(p) {
                    queue.push_back(p);
                }
            }
        }
        Ok(seen)
    }

    /// What to do with `remote`, another writer's head of share `name`, at tip `local` (both
    /// acceptable commits whose histories are here). Deterministic: every node at the same
    /// tip does the same, so all converge.
    pub fn plan(
        &self,
        name: &IpnsName,
        local: &Commit,
        remote: &Commit,
    ) -> Result<Plan, ShareError> {
        let (lc, rc) = (*local.block().cid(), *remote.block().cid());
        if lc == rc {
            return Ok(Plan::UpToDate);
        }
        let base = merge_base(lc, rc, |c| self.read_commit(name, c).map(|c| c.parents))?;
        if base == Some(rc) {
            return Ok(Plan::UpToDate);
        }
        if base == Some(lc) {
            return Ok(Plan::FastForward);
        }
        // Two merges of the same heads made on two nodes: the same tree under two commits.
        // Every node keeps the one with the smaller CID, so no merge of merges follows.
        let smaller = || {
            if rc.to_bytes() < lc.to_bytes() {
                Plan::FastForward
            } else {
                Plan::UpToDate
            }
        };
        if (local.root, local.ids) == (remote.root, remote.ids) {
            return Ok(smaller());
        }
        // A merge commit adds nothing of its own (merges are made by heads, never with a
        // mount's changes): one whose parents the other head already descends from is
        // contained in it, so the other head is taken as it is instead of merging the merge
        // (with three or more writers, merges of merges would otherwise go back and forth).
        // When each contains the other's parents, the smaller CID is kept, as above.
        let subsumed = |merge: &Commit, by: &Cid| -> Result<bool, ShareError> {
            if merge.parents.len() < 2 {
                return Ok(false);
            }
            let of = self.ancestors(name, by)?;
            Ok(merge.parents.iter().all(|p| of.contains(p)))
        };
        match (subsumed(local, &rc)?, subsumed(remote, &lc)?) {
            (true, true) => return Ok(smaller()),
            (true, false) => return Ok(Plan::FastForward),
            (false, true) => return Ok(Plan::UpToDate),
            (false, false) => {}
        }
        Ok(Plan::Merge { base })
    }

    /// The name a commit's writer has in conflict copies: the owner's [`OWNER_LABEL`], a
    /// member's label in the list the commit names (the same on every node), else the last 8
    /// characters of its key.
    pub fn writer_label(&self, name: &IpnsName, c: &Commit) -> String {
        let list = self
            .store()
            .get_verified(&c.members)
            .ok()
            .flatten()
            .and_then(|data| crate::MemberList::verify(&data, name).ok());
        label_in(name, &c.writer, list.as_ref())
    }

    /// The name writer `writer` has in conflict copies under the newest member list here (see
    /// [`Shares::writer_label`]).
    pub fn label_now(&self, name: &IpnsName, writer: &IpnsName) -> String {
        label_in(name, writer, self.members(name).ok().flatten().as_ref())
    }

    /// Moves share `name`'s tip, if it is still `expected` (else [`ShareError::TipMoved`]:
    /// the caller plans again). On the owner the move is a new version (a record naming the
    /// commit); on a member the `tip` file. `identity` is this node's key (a member's commits
    /// are signed with it). `protected`: roots retention must keep.
    pub fn move_tip(
        &self,
        name: &IpnsName,
        identity: &ShareKey,
        expected: Option<Cid>,
        to: TipMove<'_>,
        protected: &[Cid],
    ) -> Result<Moved, ShareError> {
        let _g = self.guard();
        let now = self.tip(name)?.map(|c| *c.block().cid());
        if now != expected {
            return Err(ShareError::TipMoved(*name));
        }
        if let Ok(key) = self.key(name) {
            let head = self.head_record(name).ok().map(|(v, _)| v);
            let (made, size, changed) = match &to {
                TipMove::To { commit, size } => (Made::Existing(commit), *size, 0),
                TipMove::New {
                    root,
                    ids,
                    parents,
                    size,
                    changed,
                } => (
                    Made::New {
                        root: *root,
                        ids: *ids,
                        parents: parents.clone(),
                    },
                    *size,
                    *changed,
                ),
            };
            let version =
                self.commit_locked(name, &key, head.as_ref(), made, size, changed, protected)?;
            let commit = version
                .commit
                .and_then(|c| self.read_commit(name, &c))
                .ok_or(ShareError::TipMoved(*name))?;
            self.keep_commit(name, &commit)?;
            return Ok(Moved {
                commit,
                version: Some(version),
            });
        }
        let (size, changed) = match &to {
            TipMove::To { size, .. } => (*size, 0),
            TipMove::New { size, changed, .. } => (*size, *changed),
        };
        let commit = match to {
            TipMove::To { commit, .. } => commit.clone(),
            TipMove::New {
                root, ids, parents, ..
            } => {
                let list = self
                    .members(name)?
                    .filter(|l| l.may_write(&identity.name()))
                    .ok_or(ShareError::NotMember {
                        name: *name,
                        writer: identity.name(),
                    })?;
                let ids = match ids {
                    Some(c) => c,
                    None => {
                        let empty = crate::identity::id_block(&crate::identity::IdEntries::new())?;
                        self.store().put(&empty)?;
                        *empty.cid()
                    }
                };
                let seq = self.next_writer_seq(name)?;
                Commit::create(
                    identity,
                    &CommitFields {
                        share: *name,
                        seq,
                        parents,
                        root,
                        ids,
                        members: *list.block().cid(),
                        time: SystemTime::now(),
                    },
                )?
            }
        };
        let block = commit.block();
        self.store().put(&block)?;
        self.store().flush()?;
        crate::fault::crash_point("tip-commit-stored");
        self.roots().set_many(&[
            (format!("share/{name}/t/root"), commit.root),
            (format!("share/{name}/t/ids"), commit.ids),
            (format!("share/{name}/t/commit"), *block.cid()),
            (commit_root(name, block.cid()), *block.cid()),
        ])?;
        crate::fault::crash_point("tip-roots-journaled");
        crate::share::replace_file(
            &self.share_dir(name).join(TIP_FILE),
            commit.as_bytes(),
            0o600,
        )?;
        // A writer allowed to publish also makes the share's record name its new tip. The tip
        // has moved whatever happens here: a record that cannot be made now is made at the
        // next move, or when the daemon starts (`publish_tip`).
        let version = match self.publish_key_here(name, identity) {
            Some(key) => {
                match self.record_tip_locked(name, &key, &commit, size, changed, protected) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(share = %name, error = %e, "cannot sign the share's record for the new tip; it stays unpublished for now");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Moved { commit, version })
    }

    /// The share's key, on a member the newest list here lets publish (opened from the list,
    /// see [`crate::MemberList::publish_key`]); `None` on the owner (it has its key file), on
    /// other members and followers, and when the sealed key does not open (logged).
    pub fn publish_key_here(&self, name: &IpnsName, identity: &ShareKey) -> Option<ShareKey> {
        if self.key(name).is_ok() {
            return None;
        }
        let list = self.members(name).ok()??;
        match list.publish_key(identity) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(share = %name, error = %e, "this node may publish the share, but its key does not open");
                None
            }
        }
    }

    /// Whether this node signs share `name`'s records: its owner, or a writer allowed to
    /// publish.
    pub fn publishes(&self, name: &IpnsName, identity: &ShareKey) -> bool {
        self.key(name).is_ok() || self.publish_key_here(name, identity).is_some()
    }

    /// On a writer allowed to publish: if the share's head record names an ancestor of the tip
    /// here (granted while its tip was ahead, or a record that could not be made at a move), a
    /// new record naming the tip. Returns the new version, if one was made.
    pub fn publish_tip(
        &self,
        name: &IpnsName,
        identity: &ShareKey,
        protected: &[Cid],
    ) -> Result<Option<Version>, ShareError> {
        let _g = self.guard();
        let Some(key) = self.publish_key_here(name, identity) else {
            return Ok(None);
        };
        let Some(tip) = self.tip(name)? else {
            return Ok(None);
        };
        self.record_tip_locked(name, &key, &tip, 0, 0, protected)
    }

    /// A record of share `name` made elsewhere (by another publisher), newer than the head
    /// here, names commit `named`: if this node signs the share's records (its owner, or a
    /// writer allowed to publish) and `named` is an ancestor of its tip, the other record is
    /// behind it (two publishers made the same sequence number, and the one that lost the tie
    /// was the newer version), so a record naming the tip is signed above it. Otherwise nothing
    /// (`named` is the tip, or newer or concurrent: its writer's head is taken as heads are).
    pub fn answer_older_record(
        &self,
        name: &IpnsName,
        identity: &ShareKey,
        named: &Cid,
        protected: &[Cid],
    ) -> Result<Option<Version>, ShareError> {
        let _g = self.guard();
        let Some(key) = self
            .key(name)
            .ok()
            .or_else(|| self.publish_key_here(name, identity))
        else {
            return Ok(None);
        };
        let Some(tip) = self.tip(name)? else {
            return Ok(None);
        };
        if !self.strictly_descends(name, tip.block().cid(), named) {
            return Ok(None);
        }
        let head = self.head_record(name).ok().map(|(v, _)| v);
        self.sign_tip_locked(name, &key, &tip, head.as_ref(), 0, 0, protected)
            .map(Some)
    }

    /// A record of share `name` signed with its `key` naming `tip` (a member's commit), if the
    /// head record names one of the tip's ancestors (not the tip itself, nor a version the tip
    /// does not descend from).
    fn record_tip_locked(
        &self,
        name: &IpnsName,
        key: &ShareKey,
        tip: &Commit,
        size: u64,
        changed: u64,
        protected: &[Cid],
    ) -> Result<Option<Version>, ShareError> {
        let head = self.head_record(name).ok().map(|(v, _)| v);
        if let Some(named) = head.as_ref().and_then(|h| h.commit) {
            // Only a tip that descends from what the record names replaces it: a newer or a
            // concurrent version stays where followers see it until the tip has taken it (the
            // heads path merges or fast-forwards, and that move signs).
            if !self.strictly_descends(name, tip.block().cid(), &named) {
                if named != *tip.block().cid() {
                    tracing::debug!(share = %name, tip = %tip.block().cid(), record = %named, "the share's record names a version the tip does not descend from; not signing until it does");
                }
                return Ok(None);
            }
        }
        self.sign_tip_locked(name, key, tip, head.as_ref(), size, changed, protected)
            .map(Some)
    }

    /// Whether `tip` descends from `named` (not `named` itself) in share `name`'s history here.
    fn strictly_descends(&self, name: &IpnsName, tip: &Cid, named: &Cid) -> bool {
        tip != named && self.ancestors(name, tip).is_ok_and(|a| a.contains(named))
    }

    /// A record of share `name` signed with its `key`, naming `tip` (`Made::Existing`), above
    /// `head`; a tip of the head's tree keeps the head's size when `size` is 0.
    #[allow(clippy::too_many_arguments)]
    fn sign_tip_locked(
        &self,
        name: &IpnsName,
        key: &ShareKey,
        tip: &Commit,
        head: Option<&Version>,
        size: u64,
        changed: u64,
        protected: &[Cid],
    ) -> Result<Version, ShareError> {
        let size = match head {
            Some(h) if size == 0 && h.root == tip.root => h.size,
            _ => size,
        };
        self.commit_locked(
            name,
            key,
            head,
            Made::Existing(tip),
            size,
            changed,
            protected,
        )
    }

    /// Makes a member's tip its own (the `tip` file), if it still is the head record's commit:
    /// from then on newer records of the owner do not move it (only a fast-forward or a merge
    /// does, with the mount moved along). Nothing to do on the owner or when the file exists.
    pub fn own_tip(
        &self,
        name: &IpnsName,
        identity: &ShareKey,
    ) -> Result<Option<Commit>, ShareError> {
        let has_file = self.share_dir(name).join(TIP_FILE).exists();
        let tip = self.tip(name)?;
        if has_file || self.key(name).is_ok() {
            return Ok(tip);
        }
        let Some(c) = tip else {
            return Ok(None);
        };
        let cid = *c.block().cid();
        let to = TipMove::To {
            commit: &c,
            size: 0,
        };
        Ok(Some(
            self.move_tip(name, identity, Some(cid), to, &[])?.commit,
        ))
    }

    /// The highest commit sequence of `writer` in share `name`'s history from the tip here (0:
    /// none): what a revocation keeps accepted.
    pub fn last_seq_of(&self, name: &IpnsName, writer: &IpnsName) -> u64 {
        let Ok(Some(tip)) = self.tip(name) else {
            return 0;
        };
        let mut best = 0;
        let mut seen = HashSet::from([*tip.block().cid()]);
        let mut queue = VecDeque::from([tip]);
        while let Some(c) = queue.pop_front() {
            if seen.len() > MAX_HISTORY_WALK {
                break;
            }
            if c.writer == *writer {
                best = best.max(c.seq);
            }
            for p in &c.parents {
                if seen.insert(*p) {
                    if let Some(pc) = self.read_commit(name, p) {
                        queue.push_back(pc);
                    }
                }
            }
        }
        best
    }

    /// The next sequence number of this node's commits to share `name` (one more than any it
    /// used; written before use, so a crash never reuses one).
    fn next_writer_seq(&self, name: &IpnsName) -> Result<u64, ShareError> {
        let path = self.share_dir(name).join(WSEQ_FILE);
        let last = match fs::read_to_string(&path) {
            Ok(t) => t.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(crate::share::io_at(&path)(e)),
        };
        let next = last + 1;
        crate::share::replace_file(&path, format!("{next}\n").as_bytes(), 0o600)?;
        Ok(next)
    }
}

impl Shares {
    /// The tree a merge of commits `a` and `b` of share `name` starts from: their nearest
    /// common ancestor's; an empty tree if they share none. After criss-cross merges they have
    /// several best common ancestors: those are merged one after another into a virtual base
    /// (see [`crate::merge::virtual_base`]), each pair against its own base found the same
    /// way (recursively, as git's recursive merge does), at most [`MAX_VIRTUAL_MERGES`]
    /// virtual merges in all (beyond that, the best common ancestor with the smallest CID
    /// stands in). The same on every node: it depends on the commits alone.
    pub async fn base_tree<S: BlockSource + Clone>(
        &self,
        reader: &DagReader<S>,
        name: &IpnsName,
        a: &Commit,
        b: &Commit,
    ) -> Result<Tree, ShareError> {
        let history = History {
            shares: self,
            name,
            parents: Default::default(),
            plans: Default::default(),
            fell_back: Default::default(),
        };
        let mut budget = MAX_VIRTUAL_MERGES;
        let plan = history.plan_base(&[*a.block().cid()], &[*b.block().cid()], &mut budget)?;
        let virtual_merges = MAX_VIRTUAL_MERGES - budget;
        if history.fell_back.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(share = %name, a = %a.block().cid(), b = %b.block().cid(), "the merge base took over {MAX_VIRTUAL_MERGES} virtual merges; an older common ancestor stands in (the merge may keep more conflict copies than needed, never fewer)");
        }
        tracing::debug!(share = %name, a = %a.block().cid(), b = %b.block().cid(), virtual_merges, "merge base planned");
        // The versions the plan names, each read once.
        let mut trees: HashMap<Cid, (Tree, SystemTime, String)> = HashMap::new();
        for c in plan.commits() {
            if trees.contains_key(&c) {
                continue;
            }
            let commit = history.commit(&c)?;
            let tree = read_version(reader, commit.root, Some(commit.ids)).await?;
            let label = self.writer_label(name, &commit);
            trees.insert(c, (tree, commit.time, label));
        }
        let mut done = HashMap::new();
        Ok(plan.eval(&trees, &mut done).0)
    }
}

/// Distinct virtual merges a merge base may take at most (see [`Shares::base_tree`]). Three
/// writers that merge each other's heads all the time make histories with many best common
/// ancestors; each virtual merge is an in-memory merge of two trees.
pub const MAX_VIRTUAL_MERGES: usize = 1024;

/// A share's history as a merge base lookup reads it: commits' parents, read once, and the
/// base plans already made (the recursion meets the same sets of ancestors again and again).
struct History<'a> {
    shares: &'a Shares,
    name: &'a IpnsName,
    parents: std::sync::Mutex<HashMap<Cid, Vec<Cid>>>,
    plans: std::sync::Mutex<Plans>,
    /// Whether the budget ran out and an older common ancestor stood in somewhere.
    fell_back: std::sync::atomic::AtomicBool,
}

/// Base plans made, by the pair of commit sets (each sorted) they are the base of.
type Plans = HashMap<(Vec<Cid>, Vec<Cid>), Arc<BasePlan>>;

/// The base of a merge: nothing, a commit's version, or a virtual merge of several.
enum BasePlan {
    Empty,
    Commit(Cid),
    /// `acc` (the ancestors merged so far) and `next` merged against `deep`.
    Virtual {
        deep: Arc<BasePlan>,
        acc: Arc<BasePlan>,
        next: Cid,
    },
}

impl BasePlan {
    fn commits(&self) -> Vec<Cid> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.collect(&mut out, &mut seen);
        out
    }

    fn collect(&self, out: &mut Vec<Cid>, seen: &mut HashSet<*const BasePlan>) {
        if !seen.insert(self as *const BasePlan) {
            return;
        }
        match self {
            BasePlan::Empty => {}
            BasePlan::Commit(c) => out.push(*c),
            BasePlan::Virtual { deep, acc, next } => {
                deep.collect(out, seen);
                acc.collect(out, seen);
                out.push(*next);
            }
        }
    }

    /// The tree, and the latest commit time in it; each shared part evaluated once (`done`).
    fn eval(
        &self,
        trees: &HashMap<Cid, (Tree, SystemTime, String)>,
        done: &mut HashMap<*const BasePlan, (Tree, SystemTime)>,
    ) -> (Tree, SystemTime) {
        if let Some(d) = done.get(&(self as *const BasePlan)) {
            return d.clone();
        }
        let out = match self {
            BasePlan::Empty => (Tree::default(), SystemTime::UNIX_EPOCH),
            BasePlan::Commit(c) => trees
                .get(c)
                .map(|(t, time, _)| (t.clone(), *time))
                .unwrap_or_else(|| (Tree::default(), SystemTime::UNIX_EPOCH)),
            BasePlan::Virtual { deep, acc, next } => {
                let (deep, _) = deep.eval(trees, done);
                let (acc, acc_time) = acc.eval(trees, done);
                match trees.get(next) {
                    None => (acc, acc_time),
                    Some((tree, time, label)) => {
                        let merged = crate::merge::virtual_base(
                            &deep,
                            Side {
                                tree: &acc,
                                writer: "",
                                time: acc_time,
                            },
                            Side {
                                tree,
                                writer: label,
                                time: *time,
                            },
                        );
                        (merged, acc_time.max(*time))
                    }
                }
            }
        };
        done.insert(self as *const BasePlan, out.clone());
        out
    }
}

impl History<'_> {
    fn commit(&self, c: &Cid) -> Result<Commit, ShareError> {
        self.shares
            .read_commit(self.name, c)
            .ok_or(ShareError::Commit(Box::new(
                crate::commit::CommitError::Missing(*c),
            )))
    }

    fn parents(&self, c: &Cid) -> Result<Vec<Cid>, ShareError> {
        let mut cache = self
            .parents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = cache.get(c) {
            return Ok(p.clone());
        }
        if cache.len() >= MAX_HISTORY_WALK {
            return Err(ShareError::Commit(Box::new(
                crate::commit::CommitError::HistoryTooLong,
            )));
        }
        let p = self.commit(c)?.parents;
        cache.insert(*c, p.clone());
        Ok(p)
    }

    /// The commits in `set` and every commit they descend from.
    fn ancestors(&self, set: &[Cid]) -> Result<HashSet<Cid>, ShareError> {
        let mut seen: HashSet<Cid> = set.iter().copied().collect();
        let mut queue: VecDeque<Cid> = set.iter().copied().collect();
        while let Some(c) = queue.pop_front() {
            for p in self.parents(&c)? {
                if seen.insert(p) {
                    queue.push_back(p);
                }
            }
        }
        Ok(seen)
    }

    /// The best common ancestors of (the merges of) commit sets `a` and `b`: common
    /// ancestors no other common one descends from, by CID bytes.
    fn best_common(&self, a: &[Cid], b: &[Cid]) -> Result<Vec<Cid>, ShareError> {
        let of_b = self.ancestors(b)?;
        let common: HashSet<Cid> = self
            .ancestors(a)?
            .into_iter()
            .filter(|c| of_b.contains(c))
            .collect();
        let mut dominated = HashSet::new();
        let mut queue = VecDeque::new();
        for c in &common {
            queue.extend(self.parents(c)?);
        }
        while let Some(x) = queue.pop_front() {
            if dominated.insert(x) {
                queue.extend(self.parents(&x)?);
            }
        }
        let mut best: Vec<Cid> = common.difference(&dominated).copied().collect();
        best.sort_by_key(|c| c.to_bytes());
        Ok(best)
    }

    /// The base of a merge of (the merges of) `a` and `b` (see [`Shares::base_tree`]).
    fn plan_base(
        &self,
        a: &[Cid],
        b: &[Cid],
        budget: &mut usize,
    ) -> Result<Arc<BasePlan>, ShareError> {
        let key = |s: &[Cid]| {
            let mut v = s.to_vec();
            v.sort_by_key(|c| c.to_bytes());
            v
        };
        let key = (key(a), key(b));
        if let Some(p) = self.lock_plans().get(&key) {
            return Ok(p.clone());
        }
        let best = self.best_common(a, b)?;
        let Some((first, rest)) = best.split_first() else {
            return Ok(Arc::new(BasePlan::Empty));
        };
        let mut acc = Arc::new(BasePlan::Commit(*first));
        let mut merged = vec![*first];
        for next in rest {
            if *budget == 0 {
                self.fell_back
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(Arc::new(BasePlan::Commit(*first)));
            }
            *budget -= 1;
            let deep = self.plan_base(&merged, &[*next], budget)?;
            acc = Arc::new(BasePlan::Virtual {
                deep,
                acc,
                next: *next,
            });
            merged.push(*next);
        }
        self.lock_plans().insert(key, acc.clone());
        Ok(acc)
    }

    fn lock_plans(&self) -> std::sync::MutexGuard<'_, Plans> {
        self.plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn label_in(name: &IpnsName, writer: &IpnsName, list: Option<&crate::MemberList>) -> String {
    if writer == name {
        return OWNER_LABEL.to_string();
    }
    let key = writer.to_string();
    list.and_then(|l| l.members.get(&key).map(|m| m.label.clone()))
        .unwrap_or_else(|| key[key.len().saturating_sub(8)..].to_string())
}

/// How a merge of versions with roots `a` and `b` writes its directories: chosen from the two
/// roots alone (the CID version and hash function of the larger root CID), never from the
/// node's own import settings, so that nodes configured differently write the same merged
/// tree and converge. File blocks are the sides' own; directories keep modes and times.
pub fn merge_options(a: &Cid, b: &Cid) -> ImportOptions {
    let from = if a.to_bytes() >= b.to_bytes() { a } else { b };
    let version = if from.version() == cid::Version::V0 {
        0
    } else {
        1
    };
    let mut opts = ImportOptions::with_cid_version(version);
    if let Some(hash) = crate::HashAlg::from_code(from.hash().code()) {
        if version == 1 {
            opts.hash = hash;
        }
    }
    opts.preserve_mode = true;
    opts.preserve_mtime = true;
    opts
}

/// What [`merge_commits`] built.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    pub written: Written,
    /// The sum of the merged tree's file sizes.
    pub size: u64,
    /// Conflict copies the merge made.
    pub conflicts: Vec<Conflict>,
    /// The merged tree.
    pub tree: Tree,
}

/// Merges commits `local` and `remote` (of one share) against `base_tree` (see
/// [`Shares::base_tree`]): reads the two versions through `reader` (the network, for what is
/// not here), merges them by node identity, and writes the result to `sink` (directories and
/// id blocks, encoded by [`merge_options`]; file blocks are the sides'). The `&str`s name each
/// side's writer in conflict copies. Every node that merges the same two commits writes the
/// same tree, whatever its import settings.
pub async fn merge_commits<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    base_tree: &Tree,
    local: (&Commit, &str),
    remote: (&Commit, &str),
    sink: &dyn BlockSink,
) -> Result<MergeOutcome, IdentityError> {
    let opts = &merge_options(&local.0.root, &remote.0.root);
    let a = read_version(reader, local.0.root, Some(local.0.ids)).await?;
    let b = read_version(reader, remote.0.root, Some(remote.0.ids)).await?;
    merge_trees(
        base_tree,
        Side {
            tree: &a,
            writer: local.1,
            time: local.0.time,
        },
        Side {
            tree: &b,
            writer: remote.1,
            time: remote.0.time,
        },
        opts,
        sink,
    )
}

/// Merges two versions' trees against `base_tree` by node identity (see [`merge`]) and writes
/// the result to `sink` with `opts`.
pub fn merge_trees(
    base_tree: &Tree,
    a: Side<'_>,
    b: Side<'_>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<MergeOutcome, IdentityError> {
    let merged = merge(base_tree, a, b);
    let tree = merged.tree;
    let written = write_version(&tree, opts, sink)?;
    let size = tree.size();
    Ok(MergeOutcome {
        written,
        size,
        conflicts: merged.conflicts,
        tree,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::merge::{Content, NodeId};
    use crate::merge::{Entry, ROOT};
    use crate::{LocalSource, Repo};
    use std::collections::BTreeMap;

    fn file(repo: &Repo, text: &str) -> Content {
        let imported = crate::import_file(
            text.as_bytes(),
            text.len() as u64,
            None,
            None,
            &ImportOptions::default(),
            &repo.session(),
        )
        .unwrap();
        Content::File {
            cid: imported.cid,
            size: imported.tsize,
        }
    }

    /// Copies version `c`'s tree, id tree and commit from one repo to another (what Bitswap
    /// would fetch).
    fn carry(from: &Repo, to: &Repo, name: &IpnsName, c: &Commit) {
        for root in [c.root, c.ids] {
            let mut car = Vec::new();
            from.export_car(&root, &mut car).unwrap();
            to.import_car(&car[..], false).unwrap();
        }
        to.shares().check_commit(name, c, Reached::Head).unwrap();
        to.shares().keep_commit(name, c).unwrap();
        loop {
            let missing = to.shares().missing_history(name, c.block().cid());
            if missing.is_empty() {
                break;
            }
            for m in missing {
                let older = from.shares().read_commit(name, &m).unwrap();
                // Its version too: a merge base may be read from it.
                for root in [older.root, older.ids] {
                    let mut car = Vec::new();
                    from.export_car(&root, &mut car).unwrap();
                    to.import_car(&car[..], false).unwrap();
                }
                to.shares().keep_commit(name, &older).unwrap();
            }
        }
    }

    async fn tree_of(repo: &Repo, c: &Commit) -> Tree {
        let reader = DagReader::new(LocalSource::new(repo.store()));
        read_version(&reader, c.root, Some(c.ids)).await.unwrap()
    }

    /// Writes `tree` in `repo` and moves its tip there (a local commit).
    fn commit_tree(repo: &Repo, me: &ShareKey, name: &IpnsName, tree: &Tree) -> Commit {
        let tip = repo.shares().tip(name).unwrap().unwrap();
        let w = write_version(tree, &ImportOptions::default(), &repo.session()).unwrap();
        repo.store().flush().unwrap();
        let to = TipMove::New {
            root: w.root,
            ids: Some(w.ids),
            parents: vec![*tip.block().cid()],
            size: 0,
            changed: 1,
        };
        let tip_cid = Some(*tip.block().cid());
        repo.shares()
            .move_tip(name, me, tip_cid, to, &[])
            .unwrap()
            .commit
    }

    /// Handles `remote` on `repo` as the daemon does: plan, then fast-forward or merge.
    async fn receive(repo: &Repo, me: &ShareKey, name: &IpnsName, remote: &Commit) -> Plan {
        let shares = repo.shares();
        let local = shares.tip(name).unwrap().unwrap();
        let plan = shares.plan(name, &local, remote).unwrap();
        let expected = Some(*local.block().cid());
        match plan {
            Plan::UpToDate => {}
            Plan::FastForward => {
                let to = TipMove::To {
                    commit: remote,
                    size: 0,
                };
                shares.move_tip(name, me, expected, to, &[]).unwrap();
            }
            Plan::Merge { .. } => {
                let reader = DagReader::new(LocalSource::new(repo.store()));
                let base = shares
                    .base_tree(&reader, name, &local, remote)
                    .await
                    .unwrap();
                let (ll, rl) = (
                    shares.writer_label(name, &local),
                    shares.writer_label(name, remote),
                );
                let out = merge_commits(
                    &reader,
                    &base,
                    (&local, &ll),
                    (remote, &rl),
                    &repo.session(),
                )
                .await
                .unwrap();
                repo.store().flush().unwrap();
                let to = TipMove::New {
                    root: out.written.root,
                    ids: Some(out.written.ids),
                    parents: vec![*local.block().cid(), *remote.block().cid()],
                    size: out.size,
                    changed: 0,
                };
                shares.move_tip(name, me, expected, to, &[]).unwrap();
            }
        }
        plan
    }

    /// Three new repos (and the directories they live in, removed when dropped).
    fn three_repos() -> (Vec<tempfile::TempDir>, Repo, Repo, Repo) {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let [a, b, c] = [0, 1, 2].map(|i| Repo::init(dirs[i].path()).unwrap());
        (dirs, a, b, c)
    }

    /// Alice (`a`) makes share "docs" starting with notes.txt (node 7), grants Bob (`b`'s key;
    /// `publish`: also to publish), commits once under that list; Bob and Carol follow it.
    /// Returns the share, its first root, the commit and the list.
    fn docs_share(
        a: &Repo,
        b: &Repo,
        c: &Repo,
        publish: bool,
    ) -> (IpnsName, Cid, Commit, crate::MemberList) {
        let mut t0 = Tree::default();
        t0.nodes.insert(
            7,
            Entry {
                parent: ROOT,
                name: "notes.txt".into(),
                content: file(a, "v1"),
            },
        );
        let w0 = write_version(&t0, &ImportOptions::default(), &a.session()).unwrap();
        a.store().flush().unwrap();
        let name = a.shares().create("docs", w0.root, 2).unwrap().name;
        let bob = b.identity_key().name();
        let list = a
            .shares()
            .set_member(&name, &bob, Some(("bob", publish)), 0)
            .unwrap();
        // A first commit under the new list, with the real id tree.
        let first = commit_tree(a, &a.identity_key(), &name, &t0);
        assert_eq!(first.members, *list.block().cid());
        let record = a.shares().head_record(&name).unwrap().1;
        for r in [b, c] {
            r.shares()
                .follow(&name, "theirs", record.as_bytes())
                .unwrap();
            r.shares().receive_members(&name, list.as_bytes()).unwrap();
            carry(a, r, &name, &first);
        }
        (name, w0.root, first, list)
    }

    /// Adds file `file` (node `node`) with `text`, imported in `repo`, to `tree`'s root.
    fn add_file(repo: &Repo, tree: &mut Tree, node: NodeId, file_name: &str, text: &str) {
        tree.nodes.insert(
            node,
            Entry {
                parent: ROOT,
                name: file_name.into(),
                content: file(repo, text),
            },
        );
    }

    #[tokio::test]
    async fn owner_and_member_converge_on_one_merged_commit_and_outsiders_are_refused() {
        let (_dirs, a, b, c) = three_repos();
        let keys: Vec<ShareKey> = [&a, &b, &c].iter().map(|r| r.identity_key()).collect();
        let (ka, kb, kc) = (&keys[0], &keys[1], &keys[2]);

        // Alice's share starts with notes.txt; Bob is granted, Carol is not.
        let notes = 7;
        let (name, _, first, list) = docs_share(&a, &b, &c, false);
        assert_eq!(b.shares().tip(&name).unwrap().unwrap(), first);
        assert!(b.shares().writer_key(&name, kb).unwrap().is_some());
        assert!(c.shares().writer_key(&name, kc).unwrap().is_none());

        // Bob adds a file: Alice fast-forwards to his commit (a new record naming it).
        let mut tb = tree_of(&b, &first).await;
        add_file(&b, &mut tb, 8, "bob.txt", "from bob");
        let cb = commit_tree(&b, kb, &name, &tb);
        assert_eq!(cb.writer, kb.name());
        carry(&b, &a, &name, &cb);
        assert_eq!(receive(&a, ka, &name, &cb).await, Plan::FastForward);
        let head = a.shares().head_record(&name).unwrap().0;
        assert_eq!((head.root, head.commit), (cb.root, Some(*cb.block().cid())));
        // Bob hearing his own commit back: nothing to do.
        assert_eq!(receive(&b, kb, &name, &cb).await, Plan::UpToDate);

        // Both edit at once: Alice edits notes.txt, Bob renames it.
        let mut ta = tree_of(&a, &cb).await;
        ta.nodes.get_mut(&notes).unwrap().content = file(&a, "v2 by alice");
        let ca = commit_tree(&a, ka, &name, &ta);
        let mut tb2 = tree_of(&b, &cb).await;
        tb2.nodes.get_mut(&notes).unwrap().name = "renamed.txt".into();
        let cb2 = commit_tree(&b, kb, &name, &tb2);
        carry(&a, &b, &name, &ca);
        carry(&b, &a, &name, &cb2);
        // Each merges the other's head: the same tree on both.
        assert!(matches!(
            receive(&a, ka, &name, &cb2).await,
            Plan::Merge { base: Some(_) }
        ));
        assert!(matches!(
            receive(&b, kb, &name, &ca).await,
            Plan::Merge { base: Some(_) }
        ));
        let (ma, mb) = (
            a.shares().tip(&name).unwrap().unwrap(),
            b.shares().tip(&name).unwrap().unwrap(),
        );
        assert_eq!((ma.root, ma.ids), (mb.root, mb.ids));
        assert_eq!(ma.parents.len(), 2);
        let merged = tree_of(&a, &ma).await;
        let e = &merged.nodes[&notes];
        assert_eq!(e.name, "renamed.txt", "the edit lands on the renamed file");
        assert_eq!(e.content, ta.nodes[&notes].content);
        // The two merge commits meet: both keep the same one, no merge of merges.
        carry(&a, &b, &name, &ma);
        carry(&b, &a, &name, &mb);
        let pa = receive(&a, ka, &name, &mb).await;
        let pb = receive(&b, kb, &name, &ma).await;
        assert_ne!(pa, pb, "exactly one side moves: {pa:?} {pb:?}");
        assert_eq!(
            a.shares().tip(&name).unwrap(),
            b.shares().tip(&name).unwrap()
        );

        // Carol is no member: her commit is refused. Bob, revoked after his commit, cannot
        // commit on, even naming the old list.
        let tip = b.shares().tip(&name).unwrap().unwrap();
        // A commit by `key` on the tip with sequence `seq`, naming the list bob was granted in.
        let on_tip = |key: &ShareKey, seq: u64| {
            let fields = CommitFields {
                share: name,
                seq,
                parents: vec![*tip.block().cid()],
                root: tip.root,
                ids: tip.ids,
                members: *list.block().cid(),
                time: SystemTime::now(),
            };
            Commit::create(key, &fields).unwrap()
        };
        let forged = on_tip(kc, 1);
        assert!(a
            .shares()
            .check_commit(&name, &forged, Reached::Head)
            .is_err());
        let revoked = a
            .shares()
            .set_member(&name, &kb.name(), None, cb2.seq)
            .unwrap();
        b.shares()
            .receive_members(&name, revoked.as_bytes())
            .unwrap();
        assert!(b.shares().writer_key(&name, kb).unwrap().is_none());
        let late = on_tip(kb, cb2.seq + 1);
        assert!(a
            .shares()
            .check_commit(&name, &late, Reached::Head)
            .is_err());
        // Nor with a number below the cut-off, as a head; his commit from before the
        // revocation stays acceptable as history (another writer merged it).
        let backdated = on_tip(kb, 1);
        assert!(a
            .shares()
            .check_commit(&name, &backdated, Reached::Head)
            .is_err());
        assert!(a
            .shares()
            .check_commit(&name, &cb2, Reached::History)
            .is_ok());
        // An older member list does not replace a newer one.
        b.shares().receive_members(&name, list.as_bytes()).unwrap();
        assert_eq!(b.shares().members(&name).unwrap().unwrap().seq, revoked.seq);
        // The history stays for merge bases after a GC.
        a.gc().unwrap();
        assert!(a
            .shares()
            .missing_history(&name, ma.block().cid())
            .is_empty());
    }

    #[tokio::test]
    async fn a_publishing_member_signs_records_of_its_tip_above_every_sequence_seen() {
        let (_dirs, a, b, c) = three_repos();
        let (ka, kb) = (a.identity_key(), b.identity_key());
        let (name, root0, first, _) = docs_share(&a, &b, &c, true);
        assert!(b.shares().publishes(&name, &kb));
        assert!(!c.shares().publishes(&name, &c.identity_key()));
        assert!(a.shares().publishes(&name, &ka));
        // The owner's own key file is what it signs with, not the list.
        assert!(a.shares().publish_key_here(&name, &ka).is_none());

        // Bob's commit is also a record of the share, one above the head he had, naming it.
        let before = b.shares().head_record(&name).unwrap().0;
        let mut tb = tree_of(&b, &first).await;
        add_file(&b, &mut tb, 8, "bob.txt", "from bob");
        let cb = commit_tree(&b, &kb, &name, &tb);
        let (by_bob, bob_record) = b.shares().head_record(&name).unwrap();
        assert_eq!(by_bob.sequence, before.sequence + 1);
        assert_eq!(
            (by_bob.root, by_bob.commit, by_bob.prev),
            (cb.root, Some(*cb.block().cid()), Some(before.record))
        );
        // A follower takes it as any record of the share.
        let taken = c.shares().adopt(&name, bob_record.as_bytes()).unwrap();
        assert_eq!(taken.map(|v| v.root), Some(cb.root));

        // The owner saw Bob's record: its next version goes above it, also when the version
        // is only a fast-forward to Bob's commit (the same sequence would be a tie).
        assert!(a.shares().note_sequence(&name, by_bob.sequence).unwrap());
        assert!(!a
            .shares()
            .note_sequence(&name, by_bob.sequence - 1)
            .unwrap());
        carry(&b, &a, &name, &cb);
        assert_eq!(receive(&a, &ka, &name, &cb).await, Plan::FastForward);
        let (by_owner, owner_record) = a.shares().head_record(&name).unwrap();
        assert!(by_owner.sequence > by_bob.sequence);
        assert_eq!(by_owner.commit, Some(*cb.block().cid()));
        assert!(c
            .shares()
            .adopt(&name, owner_record.as_bytes())
            .unwrap()
            .is_some());
        // Bob takes the owner's record; his next one goes above it.
        assert!(b
            .shares()
            .adopt(&name, owner_record.as_bytes())
            .unwrap()
            .is_some());
        add_file(&b, &mut tb, 9, "again.txt", "again");
        commit_tree(&b, &kb, &name, &tb);
        assert!(b.shares().head_record(&name).unwrap().0.sequence > by_owner.sequence);

        // The owner moves on; a record naming an older version than its tip (another
        // publisher's, newer by the tie-break) makes it sign its tip above that record. One
        // naming its tip, or a version it does not descend from, does not.
        let mut ta = tree_of(&a, &cb).await;
        add_file(&a, &mut ta, 10, "alice.txt", "from alice");
        let ca = commit_tree(&a, &ka, &name, &ta);
        let at = a.shares().head_record(&name).unwrap().0;
        let again = b.shares().tip(&name).unwrap().unwrap();
        for named in [ca.block().cid(), again.block().cid()] {
            assert!(a
                .shares()
                .answer_older_record(&name, &ka, named, &[])
                .unwrap()
                .is_none());
        }
        let above = a
            .shares()
            .answer_older_record(&name, &ka, cb.block().cid(), &[])
            .unwrap()
            .expect("a record above the older one");
        assert!(above.sequence > at.sequence);
        assert_eq!(
            (above.commit, above.root, above.prev),
            (Some(*ca.block().cid()), ca.root, Some(at.record))
        );
        // Bob takes that record: it names a version his tip does not descend from (his last
        // commit and the owner's are concurrent), so he signs nothing until he has merged it.
        let newest = a.shares().head_record(&name).unwrap().1;
        assert!(b
            .shares()
            .adopt(&name, newest.as_bytes())
            .unwrap()
            .is_some());
        carry(&a, &b, &name, &ca);
        assert!(b.shares().publish_tip(&name, &kb, &[]).unwrap().is_none());
        assert_eq!(
            b.shares().head_record(&name).unwrap().0.sequence,
            above.sequence
        );
        // Not a publisher: nothing to answer with.
        assert!(c
            .shares()
            .answer_older_record(&name, &c.identity_key(), cb.block().cid(), &[])
            .unwrap()
            .is_none());

        // Publishing taken away (still a writer): Bob's commits are no records any more.
        let list = a
            .shares()
            .set_member(&name, &kb.name(), Some(("bob", false)), 0)
            .unwrap();
        b.shares().receive_members(&name, list.as_bytes()).unwrap();
        assert!(!b.shares().publishes(&name, &kb));
        let head = b.shares().head_record(&name).unwrap().0;
        tb.nodes.remove(&9);
        let moved = {
            let tip = b.shares().tip(&name).unwrap().unwrap();
            let w = write_version(&tb, &ImportOptions::default(), &b.session()).unwrap();
            b.store().flush().unwrap();
            let to = TipMove::New {
                root: w.root,
                ids: Some(w.ids),
                parents: vec![*tip.block().cid()],
                size: 0,
                changed: 1,
            };
            b.shares()
                .move_tip(&name, &kb, Some(*tip.block().cid()), to, &[])
                .unwrap()
        };
        assert!(moved.version.is_none());
        assert_eq!(b.shares().head_record(&name).unwrap().0, head);

        // A record at the highest sequence there is leaves no room: a clear error, no wrap.
        a.shares().note_sequence(&name, u64::MAX).unwrap();
        let err = a
            .shares()
            .commit(&name, root0, None, 2, 0, &[])
            .unwrap_err();
        assert!(matches!(err, ShareError::SequenceExhausted(_)), "{err}");
        assert!(err.to_string().contains("highest sequence number"), "{err}");
    }

    /// Three writers (the owner and two members) edit one share at random: each overwrites
    /// the file they all write, creates and deletes files of its own, and now and then takes
    /// another writer's head (fast-forward or merge, as the daemon does), in random orders,
    /// with random partitions in effect. At the end every head is taken everywhere until all
    /// tips agree. An exact model checks no write was lost: every file a writer made and did
    /// not delete is there with its content, nothing it deleted came back, and every content
    /// of the shared file is in the result (as the file or as a conflict copy) unless a writer
    /// overwrote it while its tree showed it. Replay one seed with `CAIRN_SEED`.
    #[tokio::test]
    async fn random_histories_of_three_writers_converge_and_lose_no_write() {
        let seeds: Vec<u64> = match std::env::var("CAIRN_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(s) => vec![s],
            None => (1..=12).collect(),
        };
        for seed in seeds {
            random_history(seed, 48).await;
        }
    }

    async fn random_history(seed: u64, steps: usize) {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut below = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let repos: Vec<Repo> = dirs.iter().map(|d| Repo::init(d.path()).unwrap()).collect();
        let keys: Vec<ShareKey> = repos.iter().map(|r| r.identity_key()).collect();
        let shared: NodeId = 7;
        let mut t0 = Tree::default();
        t0.nodes.insert(
            shared,
            Entry {
                parent: ROOT,
                name: "shared.txt".into(),
                content: file(&repos[0], "v0"),
            },
        );
        let w0 = write_version(&t0, &ImportOptions::default(), &repos[0].session()).unwrap();
        repos[0].store().flush().unwrap();
        let name = repos[0].shares().create("team", w0.root, 2).unwrap().name;
        for (i, k) in keys.iter().enumerate().skip(1) {
            repos[0]
                .shares()
                .set_member(&name, &k.name(), Some((["", "w1", "w2"][i], false)), 0)
                .unwrap();
        }
        let first = commit_tree(&repos[0], &keys[0], &name, &t0);
        let list = repos[0].shares().members(&name).unwrap().unwrap();
        let record = repos[0].shares().head_record(&name).unwrap().1;
        for r in &repos[1..] {
            r.shares().follow(&name, "team", record.as_bytes()).unwrap();
            r.shares().receive_members(&name, list.as_bytes()).unwrap();
            carry(&repos[0], r, &name, &first);
        }
        // The model: contents of the shared file written and those overwritten by a writer
        // that saw them; each writer's own files (node id → content).
        let mut written: Vec<Content> = vec![t0.nodes[&shared].content.clone()];
        let mut superseded: Vec<Content> = Vec::new();
        let mut own: Vec<BTreeMap<NodeId, Content>> = vec![BTreeMap::new(); 3];
        let mut deleted: Vec<NodeId> = Vec::new();
        for step in 0..steps {
            let i = below(3);
            let r = &repos[i];
            let tip = r.shares().tip(&name).unwrap().unwrap();
            let mut t = tree_of(r, &tip).await;
            match below(7) {
                0 | 1 => {
                    let c = file(r, &format!("shared by {i} at {step} (seed {seed})"));
                    let e = t.nodes.get_mut(&shared).unwrap();
                    superseded.push(std::mem::replace(&mut e.content, c.clone()));
                    written.push(c);
                    commit_tree(r, &keys[i], &name, &t);
                }
                2 => {
                    let id = 1000 + step as NodeId;
                    let c = file(r, &format!("own {i} {step} (seed {seed})"));
                    t.nodes.insert(
                        id,
                        Entry {
                            parent: ROOT,
                            name: format!("w{i}-{step}.txt"),
                            content: c.clone(),
                        },
                    );
                    own[i].insert(id, c);
                    commit_tree(r, &keys[i], &name, &t);
                }
                3 if !own[i].is_empty() => {
                    let id = *own[i].keys().nth(below(own[i].len())).unwrap();
                    own[i].remove(&id);
                    t.nodes.remove(&id);
                    deleted.push(id);
                    commit_tree(r, &keys[i], &name, &t);
                }
                _ => {
                    // Another writer's head arrives here.
                    let from = (i + 1 + below(2)) % 3;
                    let head = repos[from].shares().tip(&name).unwrap().unwrap();
                    carry(&repos[from], r, &name, &head);
                    receive(r, &keys[i], &name, &head).await;
                }
            }
        }
        // Everyone hears everyone until the tips agree.
        for _round in 0..12 {
            for i in 0..3 {
                for j in 0..3 {
                    if i != j {
                        let head = repos[j].shares().tip(&name).unwrap().unwrap();
                        carry(&repos[j], &repos[i], &name, &head);
                        receive(&repos[i], &keys[i], &name, &head).await;
                    }
                }
            }
            let roots: Vec<Cid> = repos
                .iter()
                .map(|r| r.shares().tip(&name).unwrap().unwrap().root)
                .collect();
            if roots.iter().all(|r| *r == roots[0]) {
                break;
            }
        }
        let tips: Vec<Commit> = repos
            .iter()
            .map(|r| r.shares().tip(&name).unwrap().unwrap())
            .collect();
        assert!(
            tips.iter().all(|t| t.root == tips[0].root),
            "seed {seed}: the writers did not converge"
        );
        let end = tree_of(&repos[0], &tips[0]).await;
        let contents: Vec<&Content> = end.nodes.values().map(|e| &e.content).collect();
        for (i, files) in own.iter().enumerate() {
            for (id, c) in files {
                assert_eq!(
                    end.nodes.get(id).map(|e| &e.content),
                    Some(c),
                    "seed {seed}: writer {i}'s file {id} is lost"
                );
            }
        }
        for id in &deleted {
            assert!(
                !end.nodes.contains_key(id),
                "seed {seed}: deleted file {id} came back"
            );
        }
        for c in &written {
            assert!(
                superseded.contains(c) || contents.contains(&c),
                "seed {seed}: a write to the shared file is lost: {end:#?}"
            );
        }
    }
}
