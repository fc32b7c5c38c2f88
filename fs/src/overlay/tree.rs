//! The staged tree in memory: the nodes a writable mount knows, each with what its committed
//! version was (`Base`) and what changed since, and the one function that applies a journal
//! record to it ([`Tree::apply`]) — used alike by live operations (after the record is
//! appended) and by replay, so that both always reach the same state.
//!
//! A directory keeps two maps over its committed listing: `known`, committed entries that were
//! looked up and are still at their committed name (their own content may have changed), and
//! `changes`, names whose entry differs from the committed listing (a new or moved node, or a
//! removal). A name in neither is whatever the committed listing says, read on demand.
//!
//! Every node has at most one parent (hard links are refused), so "dirty" (this node or
//! something below it differs from its base) is set along the parent chain; a node that was
//! unlinked while still held by the kernel stays, parentless, as an orphan until forgotten.

use std::collections::{BTreeMap, HashMap};

use cairn_store::{Cid, EntryKind, NodeInfo, UnixTime};

use super::journal::Record;
use super::NodeId;

/// The permission bits a committed node without a recorded mode has (UnixFS's defaults).
pub(super) fn default_mode(kind: EntryKind) -> u32 {
    match kind {
        EntryKind::File => 0o644,
        EntryKind::Directory => 0o755,
        EntryKind::Symlink => 0o777,
    }
}

/// What the committed DAG says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Base {
    /// Its root block.
    pub cid: Cid,
    /// The cumulative DAG size its parent's link records.
    pub tsize: u64,
    /// File: content bytes; symlink: target bytes; directory: 0.
    pub size: u64,
    /// The UnixFS mode, when recorded.
    pub mode: Option<u32>,
    /// The UnixFS mtime, when recorded.
    pub mtime: Option<UnixTime>,
    /// A directory with entries.
    pub nonempty: bool,
    /// A HAMT-sharded directory.
    pub sharded: bool,
    /// A symlink's target.
    pub target: Option<String>,
}

impl Base {
    /// The base of a committed node from its stat and its link's cumulative size.
    pub(super) fn from_info(info: &NodeInfo, tsize: u64) -> Base {
        Base {
            cid: info.cid,
            tsize,
            size: match info.kind {
                EntryKind::Directory => 0,
                _ => info.size,
            },
            mode: info.mode,
            mtime: info.mtime,
            nonempty: info.kind == EntryKind::Directory && info.links > 0,
            sharded: info.is_sharded,
            target: info.symlink_target.clone(),
        }
    }
}

/// An entry of a directory that differs from the committed listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// The name is this node (new, moved here, or replacing the committed entry).
    Node(NodeId),
    /// The name was removed.
    Removed,
}

/// A directory's entries over its committed listing.
#[derive(Debug, Default, Clone)]
pub(super) struct Dir {
    /// Committed entries at their committed names, by name.
    pub known: BTreeMap<String, NodeId>,
    /// Names whose entry differs from the committed listing.
    pub changes: BTreeMap<String, Slot>,
}

/// A node's content.
#[derive(Debug, Clone)]
pub(super) enum Content {
    /// A regular file of `size` bytes; `staged`: its content is in its staging file (else it
    /// is its base's committed content).
    File { size: u64, staged: bool },
    /// A directory.
    Dir(Dir),
    /// A symlink to this target.
    Symlink(String),
}

/// One node of the staged tree.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// The directory holding it; `None` for the root and for orphans.
    pub parent: Option<NodeId>,
    /// Its name in `parent`.
    pub name: String,
    /// Its committed version (`None`: made since the base).
    pub base: Option<Base>,
    pub content: Content,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub mtime: UnixTime,
    pub ctime: UnixTime,
    /// The mtime was set explicitly or is recorded in the committed DAG.
    pub mtime_explicit: bool,
    /// This node or something below it differs from its base.
    pub dirty: bool,
    /// The journal names it (a `Bind` or `New` record), so it must stay in the table.
    pub bound: bool,
    /// Lookups the kernel has not forgotten.
    pub lookups: u64,
    /// Where the node is in the base version (its directory there and its name), for a
    /// committed node: its identity in the base's id tree. Moves keep it; a commit resets it.
    pub origin: Option<(NodeId, String)>,
}

impl Node {
    pub(super) fn kind(&self) -> EntryKind {
        match self.content {
            Content::File { .. } => EntryKind::File,
            Content::Dir(_) => EntryKind::Directory,
            Content::Symlink(_) => EntryKind::Symlink,
        }
    }

    pub(super) fn dir(&self) -> Option<&Dir> {
        match &self.content {
            Content::Dir(d) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self) -> Option<&mut Dir> {
        match &mut self.content {
            Content::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Whether its content is in a staging file.
    pub(super) fn staged(&self) -> bool {
        matches!(self.content, Content::File { staged: true, .. })
    }

    /// The node as committed version `base` describes it (after a rebase): clean, its content
    /// and metadata from `base`; a directory keeps the children it knows (each is rebased on
    /// its own).
    pub(super) fn reset_to(&mut self, base: Base, default_time: UnixTime) {
        let kind = self.kind();
        self.content = match std::mem::replace(&mut self.content, Content::Symlink(String::new())) {
            Content::Dir(mut d) => {
                d.changes.clear();
                Content::Dir(d)
            }
            Content::File { .. } => Content::File {
                size: base.size,
                staged: false,
            },
            Content::Symlink(_) => Content::Symlink(base.target.clone().unwrap_or_default()),
        };
        let mtime = base.mtime.unwrap_or(default_time);
        self.mode = base.mode.unwrap_or_else(|| default_mode(kind)) & 0o7777;
        self.mtime = mtime;
        self.ctime = mtime;
        self.mtime_explicit = base.mtime.is_some();
        self.base = Some(base);
        self.dirty = false;
    }

    /// A committed node, clean, as the committed DAG describes it.
    fn committed(
        parent: NodeId,
        name: &str,
        kind: EntryKind,
        base: Base,
        default_time: UnixTime,
    ) -> Node {
        let content = match kind {
            EntryKind::File => Content::File {
                size: base.size,
                staged: false,
            },
            EntryKind::Directory => Content::Dir(Dir::default()),
            EntryKind::Symlink => Content::Symlink(base.target.clone().unwrap_or_default()),
        };
        let mtime = base.mtime.unwrap_or(default_time);
        Node {
            parent: Some(parent),
            name: name.to_string(),
            mode: base.mode.unwrap_or_else(|| default_mode(kind)) & 0o7777,
            mtime,
            ctime: mtime,
            mtime_explicit: base.mtime.is_some(),
            base: Some(base),
            content,
            dirty: false,
            bound: false,
            lookups: 0,
            origin: Some((parent, name.to_string())),
        }
    }
}

/// A journal record that does not fit the tree it is applied to (a bug, or a journal that is
/// not this tree's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct Inconsistent(pub &'static str);

/// What a directory's in-memory maps say about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// The name is this node.
    Node(NodeId),
    /// The name was removed.
    Removed,
    /// The maps do not say: ask the committed listing.
    Committed,
}

/// The staged tree.
#[derive(Debug)]
pub(super) struct Tree {
    pub nodes: HashMap<NodeId, Node>,
    /// The next node id to hand out.
    pub next_id: u64,
    /// Content bytes of committed files that left the tree since the base.
    pub removed_base: u64,
    /// The origins of committed nodes dropped from the table since the base (a removed
    /// directory that a moved node came from): identities are resolved through them.
    pub gone: HashMap<NodeId, (NodeId, String)>,
    /// Nodes gone from the tree whose staging files are to be deleted once the journal records
    /// of their removal are durable (after the next sync).
    pub doomed: Vec<NodeId>,
    /// The time of committed nodes that record none.
    pub default_time: UnixTime,
}

impl Tree {
    /// A tree of the committed root directory alone.
    pub(super) fn new(root: Base, default_time: UnixTime) -> Tree {
        let mut node = Node::committed(NodeId::ROOT, "", EntryKind::Directory, root, default_time);
        node.parent = None;
        node.origin = None;
        node.bound = true;
        node.lookups = 1;
        let mut nodes = HashMap::new();
        nodes.insert(NodeId::ROOT, node);
        Tree {
            nodes,
            next_id: NodeId::ROOT.0 + 1,
            removed_base: 0,
            gone: HashMap::new(),
            doomed: Vec::new(),
            default_time,
        }
    }

    pub(super) fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub(super) fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(&id)
    }

    /// A fresh node id.
    pub(super) fn alloc(&mut self) -> NodeId {
        let id = NodeId(self.next_id);
        self.next_id += 1;
        id
    }

    /// What `parent`'s maps say about `name`.
    pub(super) fn known(&self, parent: NodeId, name: &str) -> Known {
        let Some(d) = self.node(parent).and_then(Node::dir) else {
            return Known::Removed;
        };
        match d.changes.get(name) {
            Some(Slot::Node(id)) => Known::Node(*id),
            Some(Slot::Removed) => Known::Removed,
            None => match d.known.get(name) {
                Some(id) => Known::Node(*id),
                None => Known::Committed,
            },
        }
    }

    /// Adds the committed entry `name` of `parent` as a clean, unbound node.
    pub(super) fn add_committed(
        &mut self,
        parent: NodeId,
        name: &str,
        kind: EntryKind,
        base: Base,
    ) -> Result<NodeId, Inconsistent> {
        if self.known(parent, name) != Known::Committed {
            return Err(Inconsistent("the entry is known already"));
        }
        let id = self.alloc();
        let node = Node::committed(parent, name, kind, base, self.default_time);
        self.nodes.insert(id, node);
        self.dir_mut(parent)?.known.insert(name.to_string(), id);
        Ok(id)
    }

    fn dir_mut(&mut self, id: NodeId) -> Result<&mut Dir, Inconsistent> {
        self.nodes
            .get_mut(&id)
            .ok_or(Inconsistent("a record names an unknown node"))?
            .dir_mut()
            .ok_or(Inconsistent("a record names a file as a directory"))
    }

    /// The node at `name` of `parent`, which a record says is there.
    fn entry(&self, parent: NodeId, name: &str) -> Result<NodeId, Inconsistent> {
        match self.known(parent, name) {
            Known::Node(id) => Ok(id),
            _ => Err(Inconsistent("a record names an entry that is not bound")),
        }
    }

    /// Whether `id` is reachable from the root.
    pub(super) fn in_tree(&self, id: NodeId) -> bool {
        let mut at = id;
        for _ in 0..=self.nodes.len() {
            if at == NodeId::ROOT {
                return true;
            }
            match self.node(at).and_then(|n| n.parent) {
                Some(p) => at = p,
                None => return false,
            }
        }
        false
    }

    /// Whether `a` is `b` or one of its ancestors.
    pub(super) fn is_ancestor(&self, a: NodeId, b: NodeId) -> bool {
        let mut at = Some(b);
        let mut steps = 0;
        while let Some(id) = at {
            if id == a {
                return true;
            }
            steps += 1;
            if steps > self.nodes.len() {
                return false;
            }
            at = self.node(id).and_then(|n| n.parent);
        }
        false
    }

    /// Marks `id` and its ancestors dirty (an ancestor of a dirty node is always dirty, so the
    /// walk stops at the first one that is).
    pub(super) fn mark_dirty(&mut self, id: NodeId) {
        let mut at = Some(id);
        while let Some(i) = at {
            let Some(n) = self.nodes.get_mut(&i) else {
                return;
            };
            if n.dirty {
                return;
            }
            n.dirty = true;
            at = n.parent;
        }
    }

    fn touch_dir(&mut self, id: NodeId, time: UnixTime) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.mtime = time;
            n.ctime = time;
        }
        self.mark_dirty(id);
    }

    /// Takes `name` out of `parent`'s view (the caller puts something there or marks it removed).
    fn unlink_name(&mut self, parent: NodeId, name: &str) -> Result<(), Inconsistent> {
        let d = self.dir_mut(parent)?;
        d.known.remove(name);
        d.changes.insert(name.to_string(), Slot::Removed);
        Ok(())
    }

    /// Puts `id` at `name` of `parent`.
    fn link_name(&mut self, parent: NodeId, name: &str, id: NodeId) -> Result<(), Inconsistent> {
        let d = self.dir_mut(parent)?;
        d.known.remove(name);
        d.changes.insert(name.to_string(), Slot::Node(id));
        let n = self
            .nodes
            .get_mut(&id)
            .ok_or(Inconsistent("a record names an unknown node"))?;
        n.parent = Some(parent);
        n.name = name.to_string();
        Ok(())
    }

    /// A node that left the tree: its committed content leaves the total, and it goes (or
    /// stays as an orphan while the kernel holds it).
    fn removed(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        n.parent = None;
        if let (Content::File { .. }, Some(b)) = (&n.content, &n.base) {
            self.removed_base += b.size;
        }
        if n.lookups == 0 {
            self.drop_node(id);
        }
    }

    /// Removes a node that is out of the tree and not held, with anything below it.
    fn drop_node(&mut self, id: NodeId) {
        let mut stack = vec![id];
        while let Some(i) = stack.pop() {
            let Some(n) = self.nodes.remove(&i) else {
                continue;
            };
            if let Some(origin) = n.origin {
                self.gone.insert(i, origin);
            }
            match n.content {
                Content::File { staged: true, .. } => self.doomed.push(i),
                Content::Dir(d) => {
                    stack.extend(d.known.values());
                    stack.extend(d.changes.values().filter_map(|s| match s {
                        Slot::Node(c) => Some(*c),
                        Slot::Removed => None,
                    }));
                }
                _ => {}
            }
        }
    }

    /// Drops `id` if nothing needs it any more: not held by the kernel, not named by the
    /// journal, unchanged, and nothing below it in memory; then tries its parent.
    /// Drops every node the kernel does not hold and nothing needs ([`Tree::drop_unused`]).
    pub(super) fn drop_idle(&mut self) {
        let idle: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.lookups == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.drop_unused(id);
        }
    }

    pub(super) fn drop_unused(&mut self, id: NodeId) {
        let mut at = id;
        loop {
            let Some(n) = self.node(at) else { return };
            if at == NodeId::ROOT || n.lookups > 0 {
                return;
            }
            let Some(parent) = n.parent else {
                // An orphan the kernel forgot.
                self.drop_node(at);
                return;
            };
            let empty = n
                .dir()
                .is_none_or(|d| d.known.is_empty() && d.changes.is_empty());
            if n.bound || n.dirty || n.staged() || !empty {
                return;
            }
            let name = n.name.clone();
            if let Ok(d) = self.dir_mut(parent) {
                if d.known.get(&name) == Some(&at) {
                    d.known.remove(&name);
                }
            }
            self.nodes.remove(&at);
            at = parent;
        }
    }

    /// Applies one journal record.
    pub(super) fn apply(&mut self, rec: &Record) -> Result<(), Inconsistent> {
        match rec {
            Record::Header { .. } => return Err(Inconsistent("a second header")),
            Record::Bind {
                parent,
                id,
                name,
                kind,
                base,
            } => match self.known(*parent, name) {
                Known::Node(k) if k == *id => {
                    let n = self
                        .node_mut(k)
                        .ok_or(Inconsistent("a record names an unknown node"))?;
                    n.bound = true;
                }
                Known::Committed => {
                    if self.nodes.contains_key(id) || id.0 < 2 {
                        return Err(Inconsistent("a bind reuses a node id"));
                    }
                    self.dir_mut(*parent)?;
                    let mut node =
                        Node::committed(*parent, name, *kind, base.clone(), self.default_time);
                    node.bound = true;
                    self.nodes.insert(*id, node);
                    self.dir_mut(*parent)?.known.insert(name.clone(), *id);
                    self.next_id = self.next_id.max(id.0 + 1);
                }
                _ => return Err(Inconsistent("a bind of an entry that changed")),
            },
            Record::New {
                parent,
                id,
                name,
                kind,
                mode,
                time,
                target,
            } => {
                if matches!(self.known(*parent, name), Known::Node(_)) {
                    return Err(Inconsistent("a new node over an existing entry"));
                }
                if self.nodes.contains_key(id) || id.0 < 2 {
                    return Err(Inconsistent("a new node reuses a node id"));
                }
                self.dir_mut(*parent)?;
                let content = match kind {
                    EntryKind::File => Content::File {
                        size: 0,
                        staged: true,
                    },
                    EntryKind::Directory => Content::Dir(Dir::default()),
                    EntryKind::Symlink => Content::Symlink(target.clone()),
                };
                self.nodes.insert(
                    *id,
                    Node {
                        parent: Some(*parent),
                        name: name.clone(),
                        base: None,
                        content,
                        mode: mode & 0o7777,
                        mtime: *time,
                        ctime: *time,
                        mtime_explicit: false,
                        dirty: true,
                        bound: true,
                        lookups: 0,
                        origin: None,
                    },
                );
                self.next_id = self.next_id.max(id.0 + 1);
                self.dir_mut(*parent)?
                    .changes
                    .insert(name.clone(), Slot::Node(*id));
                self.touch_dir(*parent, *time);
            }
            Record::Remove { parent, name, time } => {
                let victim = self.entry(*parent, name)?;
                self.unlink_name(*parent, name)?;
                self.removed(victim);
                self.touch_dir(*parent, *time);
            }
            Record::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                exchange,
                time,
            } => {
                let src = self.entry(*src_parent, src_name)?;
                if *exchange {
                    let dst = self.entry(*dst_parent, dst_name)?;
                    if dst == src {
                        return Ok(());
                    }
                    self.link_name(*src_parent, src_name, dst)?;
                    self.link_name(*dst_parent, dst_name, src)?;
                    if let Some(n) = self.node_mut(dst) {
                        n.ctime = *time;
                    }
                } else {
                    let victim = match self.known(*dst_parent, dst_name) {
                        Known::Node(v) => Some(v),
                        _ => None,
                    };
                    if victim == Some(src) {
                        return Ok(());
                    }
                    self.unlink_name(*src_parent, src_name)?;
                    if let Some(v) = victim {
                        self.unlink_name(*dst_parent, dst_name)?;
                        self.removed(v);
                    }
                    self.link_name(*dst_parent, dst_name, src)?;
                }
                if let Some(n) = self.node_mut(src) {
                    n.ctime = *time;
                }
                self.touch_dir(*src_parent, *time);
                self.touch_dir(*dst_parent, *time);
            }
            Record::SetAttr {
                id,
                mode,
                mtime,
                explicit,
                ctime,
            } => {
                let n = self
                    .node_mut(*id)
                    .ok_or(Inconsistent("a record names an unknown node"))?;
                if let Some(m) = mode {
                    n.mode = m & 0o7777;
                }
                if let Some(t) = mtime {
                    n.mtime = *t;
                    if *explicit {
                        n.mtime_explicit = true;
                    }
                }
                n.ctime = *ctime;
                self.mark_dirty(*id);
            }
            Record::Stage { id, copied } => {
                let n = self
                    .node_mut(*id)
                    .ok_or(Inconsistent("a record names an unknown node"))?;
                let Content::File { size, staged } = &mut n.content else {
                    return Err(Inconsistent("a staged node is not a file"));
                };
                *size = *copied;
                *staged = true;
                self.mark_dirty(*id);
            }
            Record::Committed { .. } => {}
        }
        Ok(())
    }
}
