//! Moving a clean staging area onto another version of its share: another writer's head that
//! this node fast-forwarded to, or the merge of it with this node's own head.
//!
//! The nodes the table holds (those the kernel knows) are looked up again, top down, by their
//! place in the new version: a node still there as the same kind keeps its id, so the kernel's
//! inode stays valid (a shell's working directory, an open file) and shows the new content; a
//! node that is gone, or is another kind there, leaves the tree as an orphan (an open file keeps
//! reading what it had) and its name is reported so the kernel's entry can be dropped. Nothing
//! is staged (the caller commits first and waits for files open for writing), so the journal
//! simply starts again on the new version.

use std::collections::VecDeque;

use cairn_store::{BlockSource, Cid, NodeInfo, RAW};

use super::tree::{Base, Content, Node};
use super::{journal::Journal, NodeId, Overlay, OverlayError};

/// What [`Overlay::rebase`] changed, for the kernel's caches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rebased {
    /// Nodes whose attributes or content may have changed (every node still in the tree).
    pub changed: Vec<NodeId>,
    /// Entries that went: `(directory, name)`.
    pub gone: Vec<(NodeId, String)>,
}

impl<S: BlockSource + Clone> Overlay<S> {
    /// Whether nothing is staged: no change since the base (a staging file kept across a
    /// commit for a file open for writing then holds committed content: it is clean; the caller
    /// checks that no file is open for writing now).
    pub fn is_clean(&self) -> bool {
        let root_dirty = self.tree.node(NodeId::ROOT).is_none_or(|n| n.dirty);
        !root_dirty && self.pending.is_none()
    }

    /// Moves the staging area onto version `root` (id tree `ids`) of the share; see the module
    /// notes. Refused with [`OverlayError::Staged`] unless [`Overlay::is_clean`].
    pub async fn rebase(&mut self, root: Cid, ids: Option<Cid>) -> Result<Rebased, OverlayError> {
        if !self.is_clean() {
            return Err(OverlayError::Staged);
        }
        let root_info = self.reader.stat(&root).await?;
        if root_info.kind != cairn_store::EntryKind::Directory {
            return Err(OverlayError::RootNotADirectory(root));
        }
        // Every lookup first, memory after: a failed read (a block that cannot be fetched)
        // leaves the staging area on the old version, unchanged.
        let mut found: Vec<(NodeId, Option<Base>)> = Vec::new();
        let mut queue = VecDeque::from([(NodeId::ROOT, Some(root))]);
        while let Some((dir, new_cid)) = queue.pop_front() {
            let Some(children) = self
                .tree
                .node(dir)
                .and_then(Node::dir)
                .map(|d| d.known.clone())
            else {
                continue;
            };
            for (name, child) in children {
                let Some(node) = self.tree.node(child) else {
                    continue;
                };
                let kind = node.kind();
                let entry = match new_cid {
                    Some(c) => self.reader.lookup_entry(&c, &name).await?,
                    None => None,
                };
                let base = match entry {
                    Some(e) => {
                        let info = match e.tsize {
                            Some(t) if e.cid.codec() == RAW => NodeInfo::raw_file(e.cid, t),
                            _ => self.reader.stat(&e.cid).await?,
                        };
                        (info.kind == kind).then(|| Base::from_info(&info, e.tsize.unwrap_or(0)))
                    }
                    None => None,
                };
                if kind == cairn_store::EntryKind::Directory {
                    queue.push_back((child, base.as_ref().map(|b| b.cid)));
                }
                found.push((child, base));
            }
        }
        let path = self.journal.path().to_path_buf();
        self.journal = Journal::create_with(&path, root, self.tree.next_id, &[])?;
        // Staging files kept for files that were open across the last commit hold the old
        // content: the new journal names none of them, and they go.
        let kept: Vec<NodeId> = self
            .tree
            .nodes
            .iter()
            .filter(|(id, n)| n.staged() && self.tree.in_tree(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in kept {
            if let Err(e) = self.data.remove(id) {
                tracing::warn!(path = %self.data.path(id).display(), error = %e, "cannot delete a staging file after a rebase");
            }
            self.data.dirty.remove(&id);
        }

        let mut out = Rebased::default();
        let default_time = self.tree.default_time;
        let root_base = Base::from_info(&root_info, 0);
        if let Some(r) = self.tree.node_mut(NodeId::ROOT) {
            r.reset_to(root_base, default_time);
        }
        out.changed.push(NodeId::ROOT);
        for (id, base) in found {
            match base {
                Some(b) => {
                    if let Some(n) = self.tree.node_mut(id) {
                        n.reset_to(b, default_time);
                    }
                    out.changed.push(id);
                }
                None => {
                    let Some(n) = self.tree.node_mut(id) else {
                        continue;
                    };
                    let Some(parent) = n.parent.take() else {
                        continue;
                    };
                    let name = std::mem::take(&mut n.name);
                    n.base = None;
                    if let Some(Content::Dir(d)) =
                        self.tree.node_mut(parent).map(|p| &mut p.content)
                    {
                        d.known.remove(&name);
                    }
                    out.gone.push((parent, name));
                }
            }
        }
        self.tree.removed_base = 0;
        self.tree.gone.clear();
        self.base_root = root;
        self.base_ids = ids;
        // Every node's origin is its place in the new base.
        for (id, n) in self.tree.nodes.iter_mut() {
            if *id != NodeId::ROOT {
                n.origin = n.parent.map(|p| (p, n.name.clone()));
            }
            n.bound = *id == NodeId::ROOT;
        }
        self.tree.drop_idle();
        Ok(out)
    }
}
