//! Commits: the staged tree into a new root directory DAG, built with the same importer and
//! options as `cairn add`, so the root is the CID `cairn add` gives for the same tree.
//!
//! Only dirty nodes are built, children before parents: a staged file is chunked again from
//! its staging file; a file whose mode or mtime alone changed keeps its CID when the recorded
//! metadata is the same, and is otherwise encoded again from its committed content; a
//! directory is rebuilt from its committed listing with its changes, and every clean entry
//! (also a clean subtree moved here) keeps its CID without being read. A HAMT directory whose
//! new listing is still sharded is updated in place (only the shards on changed names' paths
//! are new); whether a directory shards is decided from its full new listing as `cairn add`
//! decides it, except when no name was added or removed and no entry's estimate changed (then
//! it cannot change, and the listing is not read).
//!
//! Mode and mtime are recorded (UnixFS 1.5) when the options ask for them
//! (`preserve_mode`, `preserve_mtime`), and otherwise when they were set: a mode recorded in
//! the committed node or other than the default (0644, 0755), an mtime recorded in the
//! committed node or set explicitly (`touch -d`, `utimes`). Symlinks record neither.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::sync::{Mutex, PoisonError};

use cairn_store::{
    build_directory, build_symlink, import_file, needs_sharding, update_sharded_directory, Block,
    BlockSink, BlockSource, Cid, DirChild, DirNode, EntryKind, ImportError, ImportOptions,
    Imported, StoreError, UnixTime, UpdateError, RAW,
};

use super::journal::{Journal, Record};
use super::tree::{default_mode, Base, Content, Dir, Known, Node, Slot};
use super::{io_at, NodeId, Overlay, OverlayError};

/// Where a committed file's content goes while it is encoded again (for a metadata change).
pub(super) const TEMP_FILE: &str = "commit.tmp";

/// What a commit built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// The new root directory.
    pub root: Cid,
    /// Bytes of file content under it.
    pub size: u64,
    /// Paths added, removed or modified against the base (as `cairn share diff` counts them:
    /// an added or removed directory is one path).
    pub changed: u64,
    /// The new version's id tree (see `cairn_store::identity`): every node keeps the identity
    /// it had in the base, wherever it moved; new nodes get new ones.
    pub ids: Option<Cid>,
}

/// A node that a commit built.
#[derive(Debug, Clone)]
pub(super) struct Built {
    cid: Cid,
    tsize: u64,
    /// File content bytes (symlink: target bytes).
    size: u64,
    nonempty: bool,
    sharded: bool,
    /// The UnixFS mode field written (`None`: none, or the default).
    mode: Option<u32>,
    mtime: Option<UnixTime>,
}

impl Built {
    fn from_base(b: &Base) -> Built {
        Built {
            cid: b.cid,
            tsize: b.tsize,
            size: b.size,
            nonempty: b.nonempty,
            sharded: b.sharded,
            mode: b.mode,
            mtime: b.mtime,
        }
    }

    /// The base node `n` has once this commit is the head.
    fn base(&self, n: &Node) -> Base {
        Base {
            cid: self.cid,
            tsize: self.tsize,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            nonempty: self.nonempty,
            sharded: self.sharded,
            target: match &n.content {
                Content::Symlink(t) => Some(t.clone()),
                _ => None,
            },
        }
    }

    fn dir(node: DirNode, nonempty: bool, mode: Option<u32>, mtime: Option<UnixTime>) -> Built {
        Built {
            cid: node.cid,
            tsize: node.tsize,
            size: 0,
            nonempty,
            sharded: node.sharded,
            mode,
            mtime,
        }
    }
}

/// The commit built last, kept until [`Overlay::committed`] or a change.
#[derive(Debug)]
pub(super) struct Pending {
    root: Cid,
    built: HashMap<NodeId, Built>,
    ids: Option<Cid>,
}

/// Collects blocks and hands them on in batches: a commit of many small files makes many
/// small imports, each of which would otherwise be one batch.
struct Batch<'a> {
    sink: &'a dyn BlockSink,
    queued: Mutex<(Vec<Block>, usize)>,
}

impl<'a> Batch<'a> {
    const MAX_BLOCKS: usize = 256;
    const MAX_BYTES: usize = 8 << 20;

    fn new(sink: &'a dyn BlockSink) -> Self {
        Batch {
            sink,
            queued: Mutex::new((Vec::new(), 0)),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let blocks = {
            let mut q = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            q.1 = 0;
            std::mem::take(&mut q.0)
        };
        if blocks.is_empty() {
            return Ok(());
        }
        self.sink.put_blocks(blocks)
    }
}

impl BlockSink for Batch<'_> {
    fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        let full = {
            let mut q = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            q.1 += blocks.iter().map(|b| b.data().len()).sum::<usize>();
            q.0.extend(blocks);
            q.0.len() >= Self::MAX_BLOCKS || q.1 >= Self::MAX_BYTES
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }
}

/// The mode a node's block records (`None`: none).
fn recorded_mode(n: &Node, opts: &ImportOptions) -> Option<u32> {
    let kind = n.kind();
    if kind == EntryKind::Symlink {
        return None;
    }
    let set = n.base.as_ref().is_some_and(|b| b.mode.is_some()) || n.mode != default_mode(kind);
    (opts.preserve_mode || set).then_some(n.mode)
}

/// The mtime a node's block records (`None`: none).
fn recorded_mtime(n: &Node, opts: &ImportOptions) -> Option<UnixTime> {
    if n.kind() == EntryKind::Symlink {
        return None;
    }
    (opts.preserve_mtime || n.mtime_explicit).then_some(n.mtime)
}

/// Whether a committed file whose content did not change keeps its CID with this metadata.
fn meta_unchanged(
    base: &Base,
    mode: Option<u32>,
    mtime: Option<UnixTime>,
    opts: &ImportOptions,
) -> bool {
    let field = mode.filter(|&m| m != default_mode(EntryKind::File));
    if field != base.mode || mtime != base.mtime {
        return false;
    }
    let meta = mode.is_some() || mtime.is_some();
    if base.cid.codec() == RAW {
        return !meta;
    }
    // Equal fields give equal nodes, except that with raw leaves a one-chunk file without
    // metadata is its raw leaf: a dag-pb one without metadata may be a multi-chunk file (same
    // CID) or a one-chunk file that had metadata (another CID), so it is built again.
    meta || !opts.raw_leaves
}

/// One side of the comparison that counts changed paths.
#[derive(Debug, Clone, Copy)]
enum Side {
    Node(NodeId),
    Cid(Cid),
    Gone,
}

impl<S: BlockSource + Clone> Overlay<S> {
    /// Dirty nodes in the tree, children before parents.
    fn build_order(&self) -> Vec<NodeId> {
        let mut order = Vec::new();
        let dirty = |id: &NodeId| self.tree.node(*id).is_some_and(|n| n.dirty);
        if !dirty(&NodeId::ROOT) {
            return order;
        }
        let mut stack = vec![(NodeId::ROOT, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            stack.push((id, true));
            if let Some(d) = self.tree.node(id).and_then(Node::dir) {
                let moved = d.changes.values().filter_map(|s| match s {
                    Slot::Node(c) => Some(*c),
                    Slot::Removed => None,
                });
                for c in moved.chain(d.known.values().copied()) {
                    if dirty(&c) {
                        stack.push((c, false));
                    }
                }
            }
        }
        order
    }

    /// Builds the new root DAG from the staged tree into `sink` (the repo's import session)
    /// with `opts` (those of `cairn add`). `base_size` is the base version's content size;
    /// the result has the new one. Blocking work (reading staging files, hashing) runs on the
    /// calling thread. The commit is pending until [`Overlay::committed`]; any change before
    /// that discards it.
    pub async fn commit(
        &mut self,
        sink: &dyn BlockSink,
        opts: &ImportOptions,
        base_size: u64,
    ) -> Result<CommitStats, OverlayError> {
        opts.validate().map_err(ImportError::from)?;
        let batch = Batch::new(sink);
        let mut built: HashMap<NodeId, Built> = HashMap::new();
        let mut delta: i128 = 0;
        for id in self.build_order() {
            let b = self.build_one(id, &built, &batch, opts, &mut delta).await?;
            built.insert(id, b);
        }
        let root = built.get(&NodeId::ROOT).map_or(self.base_root, |b| b.cid);
        let ids = if root == self.base_root {
            self.base_ids
        } else {
            Some(self.build_ids(&batch).await?)
        };
        batch.flush().map_err(ImportError::from)?;
        let changed = if root == self.base_root {
            0
        } else {
            self.count_changed(&built).await?
        };
        let size = i128::from(base_size) + delta - i128::from(self.tree.removed_base);
        let size = u64::try_from(size.max(0)).unwrap_or(u64::MAX);
        if root != self.base_root {
            // Durable before the head can move: a restart that finds the head at `root` knows
            // this journal is in it (see `Overlay::open`).
            self.journal
                .append(&Record::Committed { root })
                .and_then(|()| self.journal.sync())
                .map_err(io_at(self.journal.path()))?;
        }
        self.pending = Some(Pending { root, built, ids });
        Ok(CommitStats {
            root,
            size,
            changed,
            ids,
        })
    }

    /// The entries of the base's id block `cid`, read once per commit into `cache`.
    async fn id_entries<'c>(
        &self,
        cache: &'c mut HashMap<Cid, cairn_store::identity::IdEntries>,
        cid: Cid,
    ) -> Result<&'c cairn_store::identity::IdEntries, OverlayError> {
        use std::collections::hash_map::Entry;
        match cache.entry(cid) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let entries = cairn_store::identity::read_id_block(self.reader.source(), cid)
                    .await
                    .map_err(OverlayError::Identity)?;
                Ok(v.insert(entries))
            }
        }
    }

    /// Where committed node `id` was in the base version (also for nodes dropped since).
    fn origin_of(&self, id: NodeId) -> Option<&(NodeId, String)> {
        match self.tree.node(id) {
            Some(n) => n.origin.as_ref(),
            None => self.tree.gone.get(&id),
        }
    }

    /// The identity of node `id`, made since the base: derived from this staging area's seed,
    /// the base and the node, so building the same staged changes again gives the same ids,
    /// and two writers never give the same one.
    fn new_identity(&self, id: NodeId) -> u128 {
        cairn_store::merge::hashed_id(
            b"cairn new node id\0",
            &[
                &self.id_seed,
                &self.base_root.to_bytes(),
                &id.0.to_le_bytes(),
            ],
        )
        .max(1)
    }

    /// The id tree of the version being committed: one new id block per dirty directory (its
    /// base's id block with the directory's changes), every other directory keeping its base
    /// id block. A committed node's identity is the one its origin has in the base's id tree
    /// (or the derived one, see `cairn_store::identity`); a node made since gets a new one.
    async fn build_ids(&self, sink: &Batch<'_>) -> Result<Cid, OverlayError> {
        use cairn_store::identity::{derived_id, id_block, IdEntries};
        let bad = OverlayError::Identity;
        // Node → (identity, its base id block); id block → entries.
        let mut resolved: HashMap<NodeId, (u128, Option<Cid>)> =
            HashMap::from([(NodeId::ROOT, (0, self.base_ids))]);
        let mut blocks: HashMap<Cid, IdEntries> = HashMap::new();
        let mut written: HashMap<NodeId, Cid> = HashMap::new();
        for dir in self.build_order() {
            let Some(d) = self.tree.node(dir).and_then(Node::dir) else {
                continue;
            };
            let mut members: Vec<(String, NodeId)> = d
                .known
                .iter()
                .map(|(n, c)| (n.clone(), *c))
                .chain(d.changes.iter().filter_map(|(n, s)| match s {
                    Slot::Node(c) => Some((n.clone(), *c)),
                    Slot::Removed => None,
                }))
                .collect();
            members.sort();
            let mut want: Vec<NodeId> = vec![dir];
            want.extend(members.iter().map(|(_, c)| *c));
            for id in want {
                // The chain of origins up to a resolved node (origins form the base's tree,
                // so this ends at the root), then down again.
                let mut chain = Vec::new();
                let mut at = id;
                while !resolved.contains_key(&at) && chain.len() <= self.tree.nodes.len() {
                    chain.push(at);
                    match self.origin_of(at) {
                        Some((p, _)) => at = *p,
                        None => break,
                    }
                }
                for c in chain.into_iter().rev() {
                    let entry = match self.origin_of(c) {
                        Some((p, name)) => match resolved.get(p).copied() {
                            Some((pid, pblock)) => {
                                let found = match pblock {
                                    Some(b) => {
                                        self.id_entries(&mut blocks, b).await?.get(name).copied()
                                    }
                                    None => None,
                                };
                                found.unwrap_or_else(|| (derived_id(pid, name), None))
                            }
                            None => (self.new_identity(c), None),
                        },
                        None => (self.new_identity(c), None),
                    };
                    resolved.insert(c, entry);
                }
            }
            // The directory's entries in the base (none for a directory made since).
            let (_, own_block) = resolved[&dir];
            let mut entries = IdEntries::new();
            if let (Some(b), true) = (own_block, self.node(dir)?.base.is_some()) {
                entries = self.id_entries(&mut blocks, b).await?.clone();
            }
            for (name, slot) in &d.changes {
                if *slot == Slot::Removed {
                    entries.remove(name);
                }
            }
            let dir_ident = resolved[&dir].0;
            for (name, c) in members {
                let (ident, base_block) = resolved[&c];
                let sub = match self.node(c)?.content {
                    Content::Dir(_) => written.get(&c).copied().or(base_block),
                    _ => None,
                };
                // An id that readers derive anyway is left out (keeps id blocks small).
                if sub.is_none() && ident == derived_id(dir_ident, &name) {
                    entries.remove(&name);
                } else {
                    entries.insert(name, (ident, sub));
                }
            }
            let block = id_block(&entries).map_err(bad)?;
            written.insert(dir, *block.cid());
            sink.put_blocks(vec![block]).map_err(ImportError::from)?;
        }
        written
            .get(&NodeId::ROOT)
            .copied()
            .ok_or_else(|| self.bug(super::tree::Inconsistent("a commit without a root")))
    }

    fn base_of(&self, n: &Node) -> Result<Base, OverlayError> {
        n.base
            .clone()
            .ok_or_else(|| self.bug(super::tree::Inconsistent("a clean node without a base")))
    }

    async fn build_one(
        &self,
        id: NodeId,
        built: &HashMap<NodeId, Built>,
        sink: &Batch<'_>,
        opts: &ImportOptions,
        delta: &mut i128,
    ) -> Result<Built, OverlayError> {
        let n = self.node(id)?;
        match &n.content {
            Content::File { size, staged } => {
                let mode = recorded_mode(n, opts);
                let mtime = recorded_mtime(n, opts);
                let imported = if *staged {
                    *delta += i128::from(*size) - i128::from(n.base.as_ref().map_or(0, |b| b.size));
                    let path = self.data.path(id);
                    match fs::File::open(&path) {
                        Ok(f) => import_file(f.take(*size), *size, mode, mtime, opts, sink)?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            import_file(io::empty(), 0, mode, mtime, opts, sink)?
                        }
                        Err(e) => return Err(io_at(&path)(e)),
                    }
                } else {
                    let base = self.base_of(n)?;
                    if meta_unchanged(&base, mode, mtime, opts) {
                        return Ok(Built::from_base(&base));
                    }
                    self.reencode(&base, mode, mtime, opts, sink).await?
                };
                Ok(Built {
                    cid: imported.cid,
                    tsize: imported.tsize,
                    size: imported.size,
                    nonempty: false,
                    sharded: false,
                    mode: mode.filter(|&m| m != default_mode(EntryKind::File)),
                    mtime,
                })
            }
            Content::Symlink(target) => {
                if let Some(b) = &n.base {
                    return Ok(Built::from_base(b));
                }
                let imported = build_symlink(target, opts, sink)?;
                Ok(Built {
                    cid: imported.cid,
                    tsize: imported.tsize,
                    size: target.len() as u64,
                    nonempty: false,
                    sharded: false,
                    mode: None,
                    mtime: None,
                })
            }
            Content::Dir(d) => self.build_dir(n, d, built, sink, opts).await,
        }
    }

    /// A committed file's content encoded again with other metadata (through a temporary file,
    /// as the importer reads a stream).
    async fn reencode(
        &self,
        base: &Base,
        mode: Option<u32>,
        mtime: Option<UnixTime>,
        opts: &ImportOptions,
        sink: &Batch<'_>,
    ) -> Result<Imported, OverlayError> {
        let tmp = self.stage.join(TEMP_FILE);
        let mut f = fs::File::create(&tmp).map_err(io_at(&tmp))?;
        let mut cursor = self.reader.cursor(&base.cid, 0);
        while let Some(chunk) = cursor.next_chunk().await? {
            f.write_all(&chunk).map_err(io_at(&tmp))?;
        }
        drop(f);
        let result = fs::File::open(&tmp)
            .map_err(io_at(&tmp))
            .and_then(|f| Ok(import_file(f, base.size, mode, mtime, opts, sink)?));
        let _ = fs::remove_file(&tmp);
        result
    }

    /// The entry a child node gives its directory.
    fn child_entry(
        &self,
        name: &str,
        id: NodeId,
        built: &HashMap<NodeId, Built>,
    ) -> Result<DirChild, OverlayError> {
        let (cid, tsize, nonempty) = match built.get(&id) {
            Some(b) => (b.cid, b.tsize, b.nonempty),
            None => {
                let b = self.base_of(self.node(id)?)?;
                (b.cid, b.tsize, b.nonempty)
            }
        };
        Ok(DirChild {
            name: name.to_string(),
            cid,
            tsize,
            nonempty_dir: nonempty,
        })
    }

    async fn build_dir(
        &self,
        n: &Node,
        d: &Dir,
        built: &HashMap<NodeId, Built>,
        sink: &Batch<'_>,
        opts: &ImportOptions,
    ) -> Result<Built, OverlayError> {
        let mode = recorded_mode(n, opts);
        let mtime = recorded_mtime(n, opts);
        let field = mode.filter(|&m| m != default_mode(EntryKind::Directory));
        // The entries that differ from the committed listing.
        let mut overrides: BTreeMap<String, Option<DirChild>> = BTreeMap::new();
        for (name, slot) in &d.changes {
            let entry = match slot {
                Slot::Node(c) => Some(self.child_entry(name, *c, built)?),
                Slot::Removed => None,
            };
            overrides.insert(name.clone(), entry);
        }
        for (name, c) in &d.known {
            if self.node(*c)?.dirty {
                overrides.insert(name.clone(), Some(self.child_entry(name, *c, built)?));
            }
        }
        let changes: BTreeMap<String, Option<(Cid, u64)>> = overrides
            .iter()
            .map(|(name, e)| (name.clone(), e.as_ref().map(|e| (e.cid, e.tsize))))
            .collect();
        let sharded_base = n.base.as_ref().filter(|b| b.sharded).map(|b| b.cid);
        if let Some(base) = sharded_base {
            if self.neutral(&base, &overrides).await? {
                if let Some(node) = self
                    .update_hamt(&base, &changes, mode, mtime, opts, sink)
                    .await?
                {
                    return Ok(Built::dir(node, true, field, mtime));
                }
            }
        }
        // The full new listing: committed entries not overridden, and the overrides.
        let mut full: BTreeMap<String, (DirChild, bool)> = BTreeMap::new();
        if let Some(b) = &n.base {
            let mut cursor = self.reader.dir_cursor(&b.cid);
            while let Some(e) = cursor.next_entry().await? {
                if overrides.contains_key(&e.name) {
                    continue;
                }
                let unknown = e.cid.codec() != RAW;
                let child = DirChild {
                    name: e.name.clone(),
                    cid: e.cid,
                    tsize: e.tsize.unwrap_or(0),
                    nonempty_dir: false,
                };
                full.insert(e.name, (child, unknown));
            }
        }
        for (name, e) in overrides {
            if let Some(e) = e {
                full.insert(name, (e, false));
            }
        }
        let shard = self.decide(&mut full, opts.hamt_shard_threshold).await?;
        let children: Vec<DirChild> = full.into_values().map(|(c, _)| c).collect();
        let nonempty = !children.is_empty();
        if let (true, Some(base)) = (shard, sharded_base) {
            if let Some(node) = self
                .update_hamt(&base, &changes, mode, mtime, opts, sink)
                .await?
            {
                return Ok(Built::dir(node, nonempty, field, mtime));
            }
        }
        let node = build_directory(children, mode, mtime, opts, sink)?;
        Ok(Built::dir(node, nonempty, field, mtime))
    }

    /// Whether the overrides leave a directory's sharding estimate as it was: no name added
    /// or removed, each entry's CID as long as before and as empty or not as before.
    async fn neutral(
        &self,
        base: &Cid,
        overrides: &BTreeMap<String, Option<DirChild>>,
    ) -> Result<bool, OverlayError> {
        for (name, new) in overrides {
            let Some(new) = new else { return Ok(false) };
            let Some(old) = self.reader.lookup_entry(base, name).await? else {
                return Ok(false);
            };
            if old.cid.encoded_len() != new.cid.encoded_len() {
                return Ok(false);
            }
            let old_nonempty = old.cid.codec() != RAW && {
                let info = self.reader.stat(&old.cid).await?;
                info.kind == EntryKind::Directory && info.links > 0
            };
            if old_nonempty != new.nonempty_dir {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// An in-place update of a sharded directory, or `None` if its layout is not one this
    /// update keeps (then it is built from its listing).
    async fn update_hamt(
        &self,
        base: &Cid,
        changes: &BTreeMap<String, Option<(Cid, u64)>>,
        mode: Option<u32>,
        mtime: Option<UnixTime>,
        opts: &ImportOptions,
        sink: &Batch<'_>,
    ) -> Result<Option<DirNode>, OverlayError> {
        match update_sharded_directory(&self.reader, base, changes, mode, mtime, opts, sink).await {
            Ok(node) => Ok(Some(node)),
            Err(UpdateError::NotCanonical { cid, reason }) => {
                tracing::debug!(%cid, reason, "rebuilding a sharded directory from its listing");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a full listing shards, as `cairn add` decides. Committed dag-pb entries may be
    /// non-empty directories, which the estimate counts differently; they are stat'ed only
    /// when the answer depends on it. Unknown entries are left marked as not non-empty
    /// directories when it does not (the builder then decides the same).
    async fn decide(
        &self,
        full: &mut BTreeMap<String, (DirChild, bool)>,
        threshold: usize,
    ) -> Result<bool, OverlayError> {
        let with = |as_dirs: bool, full: &BTreeMap<String, (DirChild, bool)>| -> Vec<DirChild> {
            full.values()
                .map(|(c, unknown)| DirChild {
                    nonempty_dir: c.nonempty_dir || (as_dirs && *unknown),
                    ..c.clone()
                })
                .collect()
        };
        if needs_sharding(&with(true, full), threshold) {
            return Ok(true);
        }
        if !needs_sharding(&with(false, full), threshold) {
            return Ok(false);
        }
        for (c, unknown) in full.values_mut() {
            if *unknown {
                let info = self.reader.stat(&c.cid).await?;
                c.nonempty_dir = info.kind == EntryKind::Directory && info.links > 0;
                *unknown = false;
            }
        }
        Ok(needs_sharding(&with(false, full), threshold))
    }

    /// The CID a node has in the new tree.
    fn cid_now(&self, id: NodeId, built: &HashMap<NodeId, Built>) -> Result<Cid, OverlayError> {
        match built.get(&id) {
            Some(b) => Ok(b.cid),
            None => Ok(self.base_of(self.node(id)?)?.cid),
        }
    }

    async fn is_dir_cid(&self, cid: &Cid) -> Result<bool, OverlayError> {
        Ok(cid.codec() != RAW && self.reader.stat(cid).await?.kind == EntryKind::Directory)
    }

    /// The entry `name` of directory `dir` in the new tree.
    fn side(&self, dir: NodeId, name: &str) -> Side {
        match self.tree.known(dir, name) {
            Known::Node(c) => Side::Node(c),
            Known::Removed | Known::Committed => Side::Gone,
        }
    }

    async fn listing(&self, dir: &Cid) -> Result<BTreeMap<String, Cid>, OverlayError> {
        let mut cursor = self.reader.dir_cursor(dir);
        let mut out = BTreeMap::new();
        while let Some(e) = cursor.next_entry().await? {
            out.insert(e.name, e.cid);
        }
        Ok(out)
    }

    /// The new tree's listing of a directory side.
    async fn new_listing(&self, side: Side) -> Result<BTreeMap<String, Side>, OverlayError> {
        let id = match side {
            Side::Cid(c) => {
                let l = self.listing(&c).await?;
                return Ok(l.into_iter().map(|(n, c)| (n, Side::Cid(c))).collect());
            }
            Side::Gone => return Ok(BTreeMap::new()),
            Side::Node(id) => id,
        };
        let n = self.node(id)?;
        let mut out = BTreeMap::new();
        if let Some(b) = &n.base {
            for (name, cid) in self.listing(&b.cid).await? {
                match self.tree.known(id, &name) {
                    Known::Node(c) => out.insert(name, Side::Node(c)),
                    Known::Removed => None,
                    Known::Committed => out.insert(name, Side::Cid(cid)),
                };
            }
        }
        if let Some(d) = n.dir() {
            for (name, slot) in &d.changes {
                if let Slot::Node(c) = slot {
                    out.insert(name.clone(), Side::Node(*c));
                }
            }
        }
        Ok(out)
    }

    /// Paths added, removed or modified from the base to the new tree, counted as
    /// `cairn share diff` lists them: directories whose CIDs differ are compared entry by
    /// entry; a directory that stayed where it was is compared through its changes only.
    async fn count_changed(&self, built: &HashMap<NodeId, Built>) -> Result<u64, OverlayError> {
        let mut count = 0u64;
        let mut stack = vec![(Some(self.base_root), Side::Node(NodeId::ROOT))];
        while let Some((old, new)) = stack.pop() {
            let new_cid = match new {
                Side::Node(id) => Some(self.cid_now(id, built)?),
                Side::Cid(c) => Some(c),
                Side::Gone => None,
            };
            if old == new_cid {
                continue;
            }
            let (Some(old), Some(new_cid)) = (old, new_cid) else {
                count += 1;
                continue;
            };
            let new_dir = match new {
                Side::Node(id) => self.node(id)?.kind() == EntryKind::Directory,
                _ => self.is_dir_cid(&new_cid).await?,
            };
            if !new_dir || !self.is_dir_cid(&old).await? {
                count += 1;
                continue;
            }
            let same_dir = match new {
                Side::Node(id) => {
                    let n = self.node(id)?;
                    n.base
                        .as_ref()
                        .is_some_and(|b| b.cid == old)
                        .then_some((id, n))
                }
                _ => None,
            };
            if let Some((id, n)) = same_dir {
                let Some(d) = n.dir() else { continue };
                let mut names: BTreeSet<&String> = d.changes.keys().collect();
                for (name, c) in &d.known {
                    if self.node(*c)?.dirty {
                        names.insert(name);
                    }
                }
                for name in names {
                    let before = self.reader.lookup(&old, name).await?;
                    stack.push((before, self.side(id, name)));
                }
                continue;
            }
            let before = self.listing(&old).await?;
            let mut after = self.new_listing(new).await?;
            let names: BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
            for name in names {
                let side = after.remove(&name).unwrap_or(Side::Gone);
                stack.push((before.get(&name).copied(), side));
            }
        }
        Ok(count)
    }

    /// The commit built by [`Overlay::commit`] with root `new_root` is now the head (the
    /// caller made it so): the staged changes are part of the base from now on. The journal
    /// starts again from `new_root` (written beside and renamed over the old one: the commit
    /// point of the staging area), staging files of committed content are deleted, and every
    /// node keeps its id.
    pub fn committed(&mut self, new_root: Cid) -> Result<(), OverlayError> {
        self.committed_keeping(new_root, &HashSet::new())
    }

    /// [`Overlay::committed`], keeping the staging files of the files in `open` (those the
    /// caller has open for writing): each is then a copy of its committed content, synced and
    /// named by the new journal, so that the next write to it does not copy the file again.
    /// Any other staging file of a file in the tree is deleted, so a kept copy lasts only as
    /// long as the caller keeps naming it.
    pub fn committed_keeping(
        &mut self,
        new_root: Cid,
        open: &HashSet<NodeId>,
    ) -> Result<(), OverlayError> {
        let pending = match self.pending.take() {
            Some(p) if p.root == new_root => p,
            other => {
                self.pending = other;
                return Err(OverlayError::NotPending(new_root));
            }
        };
        let built = &pending.built;
        let mut kept: Vec<NodeId> = open
            .iter()
            .copied()
            .filter(|id| self.tree.node(*id).is_some_and(Node::staged) && self.tree.in_tree(*id))
            .collect();
        kept.sort();
        // The copies are durable before a journal says they hold committed content.
        for &id in &kept {
            let path = self.data.path(id);
            self.data.sync_file(id).map_err(io_at(&path))?;
        }
        let dir = self.data.dir().to_path_buf();
        self.data.sync_dir().map_err(io_at(&dir))?;
        // The new journal: binds along each kept file's path (with the bases after this commit),
        // then its stage record. Written before memory changes, so a failure changes nothing.
        let base_after = |id: NodeId| -> Option<Base> {
            let n = self.tree.node(id)?;
            match built.get(&id) {
                Some(b) => Some(b.base(n)),
                None => n.base.clone(),
            }
        };
        let mut records = Vec::new();
        let mut bound: HashSet<NodeId> = HashSet::from([NodeId::ROOT]);
        for &id in &kept {
            let mut chain = Vec::new();
            let mut at = id;
            while !bound.contains(&at) {
                chain.push(at);
                match self.tree.node(at).and_then(|n| n.parent) {
                    Some(p) => at = p,
                    None => break,
                }
            }
            for c in chain.into_iter().rev() {
                let (Some(n), Some(base)) = (self.tree.node(c), base_after(c)) else {
                    return Err(self.bug(super::tree::Inconsistent("a kept file off the tree")));
                };
                let Some(parent) = n.parent else {
                    return Err(self.bug(super::tree::Inconsistent("a kept file off the tree")));
                };
                records.push(Record::Bind {
                    parent,
                    id: c,
                    name: n.name.clone(),
                    kind: n.kind(),
                    base,
                });
                bound.insert(c);
            }
            let size = match self.tree.node(id).map(|n| &n.content) {
                Some(Content::File { size, .. }) => *size,
                _ => 0,
            };
            records.push(Record::Stage { id, copied: size });
        }
        let path = self.journal.path().to_path_buf();
        self.journal = Journal::create_with(&path, new_root, self.tree.next_id, &records)?;
        let mut committed_files = Vec::new();
        for (id, b) in built {
            let Some(n) = self.tree.node_mut(*id) else {
                continue;
            };
            n.base = Some(b.base(n));
            n.dirty = false;
            n.mtime_explicit |= b.mtime.is_some();
            if let Content::Dir(d) = &mut n.content {
                for (name, slot) in std::mem::take(&mut d.changes) {
                    if let Slot::Node(c) = slot {
                        d.known.insert(name, c);
                    }
                }
            }
        }
        for (id, n) in self.tree.nodes.iter_mut() {
            n.bound = bound.contains(id);
        }
        // Staged files in the tree that are not kept go back to their committed content.
        let in_tree: Vec<NodeId> = self
            .tree
            .nodes
            .iter()
            .filter(|(id, n)| n.staged() && !bound.contains(id))
            .map(|(id, _)| *id)
            .filter(|id| self.tree.in_tree(*id))
            .collect();
        for id in in_tree {
            if let Some(Content::File { staged, .. }) =
                self.tree.node_mut(id).map(|n| &mut n.content)
            {
                *staged = false;
            }
            committed_files.push(id);
        }
        let doomed = std::mem::take(&mut self.tree.doomed);
        for id in committed_files.into_iter().chain(doomed) {
            if let Err(e) = self.data.remove(id) {
                // Harmless: the next open deletes staging files the journal does not name.
                tracing::warn!(path = %self.data.path(id).display(), error = %e, "cannot delete a committed staging file");
            }
        }
        for id in &kept {
            self.data.dirty.remove(id);
        }
        self.tree.removed_base = 0;
        self.tree.gone.clear();
        self.base_root = new_root;
        self.base_ids = pending.ids;
        // The new base is this tree: every node's origin is where it is now.
        let placed: Vec<(NodeId, Option<(NodeId, String)>)> = self
            .tree
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.parent.map(|p| (p, n.name.clone()))))
            .collect();
        for (id, origin) in placed {
            if let Some(n) = self.tree.node_mut(id) {
                if id != NodeId::ROOT && origin.is_some() {
                    n.origin = origin;
                }
            }
        }
        self.tree.drop_idle();
        Ok(())
    }
}
