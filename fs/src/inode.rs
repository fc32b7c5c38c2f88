//! The inode table: stable inode numbers for the nodes the kernel has seen.
//!
//! An inode is keyed by (parent inode, entry name), so the same CID reached by two paths gets
//! two inode numbers (like two identical files); numbers are never reused while mounted.
//! Inode 1 is the mount root. `forget` is ignored: a mount's table grows with the number of
//! distinct paths looked up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cairn_store::{EntryKind, NodeInfo};

/// An inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Ino(pub u64);

impl Ino {
    pub(crate) const ROOT: Ino = Ino(1);
}

/// One entry of a cached directory listing.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub name: String,
    pub ino: Ino,
    pub kind: EntryKind,
}

#[derive(Debug, Clone)]
pub(crate) struct Inode {
    /// The node; `None` for the synthetic mount root (namespace mounts, single-file mounts).
    pub node: Option<NodeInfo>,
    pub listing: Option<Arc<Vec<Listed>>>,
}

/// How many children of a synthetic root `readdir` shows.
const RECENT: usize = 256;

#[derive(Debug)]
pub(crate) struct InodeTable {
    /// Index `i` holds inode `i + 1`.
    nodes: Vec<Inode>,
    names: HashMap<(Ino, String), Ino>,
    /// Children of a synthetic root, most recent last.
    recent: VecDeque<Listed>,
}

impl InodeTable {
    pub(crate) fn new(root: Option<NodeInfo>) -> Self {
        InodeTable {
            nodes: vec![Inode {
                node: root,
                listing: None,
            }],
            names: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, ino: Ino) -> Option<&Inode> {
        let i = usize::try_from(ino.0).ok()?.checked_sub(1)?;
        self.nodes.get(i)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.names.get(&(parent, name.to_string())).copied()
    }

    /// The inode of `parent/name`, created for `info` if it does not exist yet.
    pub(crate) fn insert_child(&mut self, parent: Ino, name: &str, info: NodeInfo) -> Ino {
        if let Some(ino) = self.child(parent, name) {
            return ino;
        }
        let kind = info.kind;
        self.nodes.push(Inode {
            node: Some(info),
            listing: None,
        });
        let ino = Ino(self.nodes.len() as u64);
        self.names.insert((parent, name.to_string()), ino);
        if parent == Ino::ROOT && self.nodes[0].node.is_none() {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(Listed {
                name: name.to_string(),
                ino,
                kind,
            });
        }
        ino
    }

    pub(crate) fn set_listing(&mut self, ino: Ino, listing: Arc<Vec<Listed>>) {
        if let Some(i) = usize::try_from(ino.0).ok().and_then(|i| i.checked_sub(1)) {
            if let Some(node) = self.nodes.get_mut(i) {
                node.listing = Some(listing);
            }
        }
    }

    /// The children of a synthetic root that were used recently.
    pub(crate) fn recent(&self) -> Vec<Listed> {
        self.recent.iter().cloned().collect()
    }
}
