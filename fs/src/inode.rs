//! The inode table: inode numbers for the nodes the kernel holds, with the kernel's lookup
//! counts, so that entries leave the table when the kernel forgets them.
//!
//! An inode is keyed by (parent inode, entry name), so the same CID reached by two paths gets
//! two inode numbers (like two identical files). Numbers count up from 2 and are never reused
//! while mounted, so an inode the kernel still holds never changes meaning; a path looked up
//! again after the kernel forgot it gets a new number. Inode 1 is the mount root; it, and the
//! single entry of a single-file mount, are never forgotten.
//!
//! # Lookup counts (the FUSE protocol)
//! Every reply that hands the kernel an inode (`lookup`) adds one to its count; `forget` and
//! `batch_forget` subtract what the kernel says it no longer holds; at zero the inode is
//! removed. `readdir` hands out no inodes (the kernel does not count its `d_ino`), so it never
//! creates entries here: a listing of a million entries costs no memory in this table.
//!
//! # Limits
//! - A directory nests at most [`cairn_store::MAX_DIR_DEPTH`] levels below the root.
//! - At most [`MAX_DIR_ALIASES`] live inodes may stand for one non-empty directory CID. A DAG
//!   that links one directory from both entries of its parent, 40 levels deep, has 2^40 paths;
//!   without this, `find` over it would never end. Empty directories (often shared by
//!   thousands of paths in real trees) are exempt: they lead nowhere.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use cairn_store::{Cid, EntryKind, NodeInfo, MAX_DIR_DEPTH};

/// Live inodes that may stand for one non-empty directory CID at once.
pub(crate) const MAX_DIR_ALIASES: u32 = 1024;

/// How many children of a synthetic root `readdir` shows.
const RECENT: usize = 256;

/// Directory CIDs remembered as refused for too many aliases (so each is logged once).
const REFUSALS_LOGGED: usize = 1024;

/// An inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Ino(pub u64);

impl Ino {
    pub(crate) const ROOT: Ino = Ino(1);
    /// What `readdir` reports for an entry the kernel has not looked up (as libfuse does).
    pub(crate) const UNKNOWN: Ino = Ino(0xffff_ffff);
}

#[derive(Debug, Clone)]
pub(crate) struct Inode {
    /// The node; `None` for the synthetic mount root (namespace mounts, single-file mounts).
    pub node: Option<NodeInfo>,
    pub parent: Ino,
    name: Arc<str>,
    /// Lookups the kernel has not forgotten.
    lookups: u64,
    /// Never forgotten (the root, a single-file mount's entry).
    pinned: bool,
    /// Directories between the root and this inode.
    depth: usize,
}

/// Why the table would not hand out an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The parent is gone (forgotten while the lookup ran).
    NoParent,
    /// Deeper than [`MAX_DIR_DEPTH`].
    TooDeep,
    /// The directory has [`MAX_DIR_ALIASES`] live inodes already. `first` is set the first
    /// time this CID is refused (worth a log line).
    TooManyAliases { cid: Cid, first: bool },
}

#[derive(Debug)]
pub(crate) struct InodeTable {
    nodes: HashMap<Ino, Inode>,
    /// parent -> name -> child.
    names: HashMap<Ino, HashMap<Arc<str>, Ino>>,
    next: u64,
    /// Live inodes per non-empty directory CID.
    aliases: HashMap<Cid, u32>,
    refused: HashSet<Cid>,
    /// Children of a synthetic root, most recent last.
    recent: VecDeque<(Arc<str>, EntryKind)>,
    /// The most inodes held since memory was last given back.
    high_water: usize,
}

/// Inodes forgotten (and at least half the table) before freed memory is handed back to the
/// operating system.
const TRIM_AFTER: usize = 16_384;

/// Hands freed heap memory back to the operating system. The allocator keeps what a big table
/// freed inside its per-thread arenas, so without this a mount that forgot a million inodes
/// would still look as big as when it held them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back_memory() {
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_memory() {}

/// Gives memory back once a map is a quarter full: a `find` over a million entries grows the
/// table, and forgetting them must shrink it again, not just empty it. Halving the capacity
/// each time keeps the cost amortised.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const MIN: usize = 64;
    if map.capacity() > MIN && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(MIN));
    }
}

fn counts_as_alias(info: &NodeInfo) -> bool {
    info.kind == EntryKind::Directory && info.links > 0
}

impl InodeTable {
    pub(crate) fn new(root: Option<NodeInfo>) -> Self {
        let root = Inode {
            node: root,
            parent: Ino::ROOT,
            name: Arc::from(""),
            lookups: 0,
            pinned: true,
            depth: 0,
        };
        InodeTable {
            nodes: HashMap::from([(Ino::ROOT, root)]),
            names: HashMap::new(),
            next: Ino::ROOT.0 + 1,
            aliases: HashMap::new(),
            refused: HashSet::new(),
            recent: VecDeque::new(),
            high_water: 1,
        }
    }

    pub(crate) fn get(&self, ino: Ino) -> Option<&Inode> {
        self.nodes.get(&ino)
    }

    /// Inodes in the table (the root included).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The inode of `parent/name` if the kernel holds one (no count change).
    pub(crate) fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.names.get(&parent)?.get(name).copied()
    }

    /// The inode of `parent/name` if the table has it, counting one more lookup.
    pub(crate) fn lookup_known(&mut self, parent: Ino, name: &str) -> Option<(Ino, Inode)> {
        let ino = self.child(parent, name)?;
        let inode = self.nodes.get_mut(&ino)?;
        inode.lookups += 1;
        Some((ino, inode.clone()))
    }

    /// The inode of `parent/name`, created for `info` if the table has none; counts one lookup.
    pub(crate) fn remember(
        &mut self,
        parent: Ino,
        name: &str,
        info: NodeInfo,
    ) -> Result<Ino, Refused> {
        if let Some((ino, _)) = self.lookup_known(parent, name) {
            return Ok(ino);
        }
        let depth = self.nodes.get(&parent).ok_or(Refused::NoParent)?.depth + 1;
        if depth > MAX_DIR_DEPTH {
            return Err(Refused::TooDeep);
        }
        if counts_as_alias(&info) {
            let n = self.aliases.entry(info.cid).or_insert(0);
            if *n >= MAX_DIR_ALIASES {
                let first = self.refused.len() < REFUSALS_LOGGED && self.refused.insert(info.cid);
                return Err(Refused::TooManyAliases {
                    cid: info.cid,
                    first,
                });
            }
            *n += 1;
        }
        let ino = Ino(self.next);
        self.next += 1;
        if self.next == Ino::UNKNOWN.0 {
            self.next += 1;
        }
        let name: Arc<str> = Arc::from(name);
        let synthetic_root =
            parent == Ino::ROOT && self.nodes.get(&Ino::ROOT).is_some_and(|r| r.node.is_none());
        if synthetic_root {
            self.recent.retain(|(n, _)| **n != *name);
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((name.clone(), info.kind));
        }
        self.names
            .entry(parent)
            .or_default()
            .insert(name.clone(), ino);
        self.high_water = self.high_water.max(self.nodes.len() + 1);
        self.nodes.insert(
            ino,
            Inode {
                node: Some(info),
                parent,
                name,
                lookups: 1,
                pinned: false,
                depth,
            },
        );
        Ok(ino)
    }

    /// The children of `parent` the table holds, by name.
    pub(crate) fn children(&self, parent: Ino) -> Vec<(Arc<str>, Ino)> {
        self.names
            .get(&parent)
            .map(|m| m.iter().map(|(n, i)| (n.clone(), *i)).collect())
            .unwrap_or_default()
    }

    /// `ino` stands for `info` from now on (the same path in a new version): same number,
    /// new node.
    pub(crate) fn replace_node(&mut self, ino: Ino, info: NodeInfo) {
        let Some(inode) = self.nodes.get_mut(&ino) else {
            return;
        };
        let old = inode.node.replace(info.clone());
        if let Some(old) = old.filter(counts_as_alias) {
            if let Some(n) = self.aliases.get_mut(&old.cid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.aliases.remove(&old.cid);
                }
            }
        }
        if counts_as_alias(&info) {
            *self.aliases.entry(info.cid).or_insert(0) += 1;
        }
    }

    /// `parent/name` is gone from the new version: its inode stays while the kernel holds it
    /// (open files read on), but no lookup finds it by name any more.
    pub(crate) fn detach(&mut self, parent: Ino, name: &str) {
        if let Some(siblings) = self.names.get_mut(&parent) {
            siblings.remove(name);
            if siblings.is_empty() {
                self.names.remove(&parent);
            }
        }
    }

    /// Keeps `ino` for the life of the mount.
    pub(crate) fn pin(&mut self, ino: Ino) {
        if let Some(i) = self.nodes.get_mut(&ino) {
            i.pinned = true;
        }
    }

    /// The kernel no longer holds `n` of its lookups of `ino`; at zero the inode goes.
    pub(crate) fn forget(&mut self, ino: Ino, n: u64) {
        let Some(inode) = self.nodes.get_mut(&ino) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(n);
        if inode.lookups > 0 || inode.pinned {
            return;
        }
        let Some(inode) = self.nodes.remove(&ino) else {
            return;
        };
        if let Some(siblings) = self.names.get_mut(&inode.parent) {
            if siblings.get(&inode.name) == Some(&ino) {
                siblings.remove(&inode.name);
            }
            if siblings.is_empty() {
                self.names.remove(&inode.parent);
            } else {
                shrink(siblings);
            }
        }
        shrink(&mut self.nodes);
        shrink(&mut self.names);
        if self.high_water - self.nodes.len() >= TRIM_AFTER
            && self.nodes.len() < self.high_water / 2
        {
            self.high_water = self.nodes.len();
            give_back_memory();
        }
        if let Some(info) = inode.node.as_ref().filter(|i| counts_as_alias(i)) {
            if let Some(n) = self.aliases.get_mut(&info.cid) {
                *n -= 1;
                if *n == 0 {
                    self.aliases.remove(&info.cid);
                }
            }
        }
    }

    /// The children of a synthetic root that were used recently, with their inodes if the
    /// kernel still holds them.
    pub(crate) fn recent(&self) -> Vec<(String, EntryKind, Ino)> {
        self.recent
            .iter()
            .map(|(name, kind)| {
                let ino = self.child(Ino::ROOT, name).unwrap_or(Ino::UNKNOWN);
                (name.to_string(), *kind, ino)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_store::{cid_for, HashAlg, RAW};

    fn info(kind: EntryKind, links: usize, seed: u8) -> NodeInfo {
        NodeInfo {
            cid: cid_for(1, RAW, HashAlg::Sha2_256, &[seed]),
            kind,
            size: 1,
            mode: None,
            mtime: None,
            symlink_target: None,
            is_sharded: false,
            links,
        }
    }

    #[test]
    fn lookups_are_counted_and_forgotten() {
        let mut t = InodeTable::new(Some(info(EntryKind::Directory, 2, 0)));
        let a = t
            .remember(Ino::ROOT, "a", info(EntryKind::File, 0, 1))
            .unwrap();
        assert_eq!(
            t.remember(Ino::ROOT, "a", info(EntryKind::File, 0, 1)),
            Ok(a)
        );
        assert!(t.lookup_known(Ino::ROOT, "a").is_some());
        assert_eq!(t.len(), 2);
        t.forget(a, 2);
        assert_eq!(t.child(Ino::ROOT, "a"), Some(a), "one lookup is still held");
        t.forget(a, 1);
        assert_eq!(t.child(Ino::ROOT, "a"), None);
        assert_eq!(t.len(), 1);
        // Looked up again: a new number, never the old one.
        let again = t
            .remember(Ino::ROOT, "a", info(EntryKind::File, 0, 1))
            .unwrap();
        assert_ne!(again, a);
        // The root is never forgotten.
        t.forget(Ino::ROOT, 100);
        assert!(t.get(Ino::ROOT).is_some());
        // Forgetting what is not there is harmless.
        t.forget(Ino(12345), 1);
    }

    #[test]
    fn shared_directories_and_depth_are_bounded() {
        let mut t = InodeTable::new(Some(info(EntryKind::Directory, 2, 0)));
        let shared = info(EntryKind::Directory, 1, 7);
        let mut held = Vec::new();
        for i in 0..MAX_DIR_ALIASES {
            held.push(
                t.remember(Ino::ROOT, &format!("d{i}"), shared.clone())
                    .unwrap(),
            );
        }
        let refused = t.remember(Ino::ROOT, "one-more", shared.clone());
        assert_eq!(
            refused,
            Err(Refused::TooManyAliases {
                cid: shared.cid,
                first: true
            })
        );
        assert!(matches!(
            t.remember(Ino::ROOT, "again", shared.clone()),
            Err(Refused::TooManyAliases { first: false, .. })
        ));
        // Empty directories are exempt.
        let empty = info(EntryKind::Directory, 0, 8);
        for i in 0..MAX_DIR_ALIASES + 10 {
            t.remember(Ino::ROOT, &format!("e{i}"), empty.clone())
                .unwrap();
        }
        // Forgetting one alias makes room for another.
        t.forget(held[0], 1);
        assert!(t.remember(Ino::ROOT, "one-more", shared).is_ok());

        let mut parent = Ino::ROOT;
        for depth in 1..=MAX_DIR_DEPTH {
            parent = t
                .remember(
                    parent,
                    "deeper",
                    info(EntryKind::Directory, 1, (depth % 200 + 20) as u8),
                )
                .unwrap();
        }
        assert_eq!(
            t.remember(parent, "deeper", info(EntryKind::File, 0, 1)),
            Err(Refused::TooDeep)
        );
    }
}
