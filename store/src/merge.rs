//! Three-way merge of two versions of a share's tree against their common ancestor, by node
//! identity (the core of multi-writer shares; see docs/DESIGN.md "Merging writers' versions").
//!
//! Every file, directory and symlink of a share has a [`NodeId`] given when it is created and
//! kept across edits, renames and moves, so a rename on one side and an edit on the other meet
//! on the same node: nothing is guessed from names or contents. A [`Tree`] is the map from id
//! to where the node is (parent id and name) and what it is ([`Content`]).
//!
//! The rules, per node (`base` is the common ancestor, the sides are two writers' heads):
//! - changed on one side only (place or content): that side's change;
//! - added on one side: kept;
//! - deleted on one side and unchanged on the other: deleted; deleted on one side and changed
//!   on the other: the change wins (the node comes back, and so do the directories above it);
//!   deleted on both: deleted;
//! - moved differently on both sides: the preferred side's place (see below);
//! - content changed differently on both sides: one content keeps the node and its name, the
//!   other is kept beside it as a conflict copy named
//!   `<stem>.cairn-conflict-<writer>-<YYYYMMDD-HHMMSS>[.<ext>]` (the writer and commit time of
//!   the side it came from); when one side made the node a directory, the directory keeps it
//!   and the file or symlink becomes the copy; between two files or symlinks, the content that
//!   orders last keeps it, decided by the two contents alone so that every merge meeting the
//!   same two versions (merges of merges included) decides alike;
//! - two nodes under one name in one directory (two files added under the same name, a file
//!   and a directory): the one that had the name in `base` (else the directory, else the
//!   smaller id) keeps it, the others are renamed as conflict copies of the side that brought
//!   them;
//! - concurrent moves that would put a directory inside itself: the smallest id in the cycle
//!   goes back to its place in `base` (or to the root).
//!
//! The preferred side (for places and names) is the one with the later commit time, ties
//! broken by the writer name: it depends only on the two sides, never on which node runs the
//! merge, so `merge(base, a, b) == merge(base, b, a)` and every node computes the same tree.
//! A conflict copy's id is derived from the node and the content it keeps, so it is the same
//! everywhere and in every merge that makes it.
//! No content either side has is dropped: every file content that differs from `base` on a
//! side is in the result (as the node or as a conflict copy), unless both sides deleted it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use cid::Cid;

/// A node's identity within a share. [`ROOT`] is the share's root directory.
pub type NodeId = u128;

/// The root directory's id.
pub const ROOT: NodeId = 0;

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Content {
    /// A file: its UnixFS root and size.
    File { cid: Cid, size: u64 },
    /// A directory (its entries are the nodes whose parent it is).
    Dir,
    /// A symlink and its target.
    Symlink(String),
}

/// Where a node is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The directory it is in.
    pub parent: NodeId,
    /// Its name there.
    pub name: String,
    /// What it is.
    pub content: Content,
}

impl Entry {
    fn place(&self) -> (NodeId, &str) {
        (self.parent, &self.name)
    }
}

/// A version of a share's tree: every node but the root, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<NodeId, Entry>,
}

impl Tree {
    /// The sum of its files' sizes.
    pub fn size(&self) -> u64 {
        self.nodes
            .values()
            .map(|e| match e.content {
                Content::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// The path of `id` (`a/b/c`), if its parent chain reaches the root without a cycle.
    pub fn path(&self, id: NodeId) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = id;
        while at != ROOT {
            let e = self.nodes.get(&at)?;
            parts.push(e.name.as_str());
            if parts.len() > self.nodes.len() {
                return None;
            }
            at = e.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }
}

/// One side of a merge: a writer's head.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub tree: &'a Tree,
    /// The writer's name as it appears in conflict copies (a member label or a short key id;
    /// no `/`).
    pub writer: &'a str,
    /// The time of the writer's head commit.
    pub time: SystemTime,
}

/// Why a conflict copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConflictKind {
    /// Both sides changed the node's content.
    BothModified,
    /// One side made it a directory, the other changed it as a file or symlink.
    TypeChanged,
    /// Two nodes ended up under one name.
    SameName,
}

/// A conflict copy in the merged tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The node that kept the name.
    pub kept: NodeId,
    /// The copy (or the node renamed).
    pub copy: NodeId,
    pub kind: ConflictKind,
}

/// The merged tree and the conflict copies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub tree: Tree,
    pub conflicts: Vec<Conflict>,
}

/// Which input a merged node came from (for naming conflict copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Base,
    First,
    Second,
}

/// The name of a conflict copy of `name` made for `writer` at `time`.
pub fn conflict_name(name: &str, writer: &str, time: SystemTime) -> String {
    let stamp: String = crate::format_utc_seconds(time)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let tag = format!("cairn-conflict-{writer}-{stamp}");
    match name.rfind('.') {
        Some(dot) if dot > 0 && dot + 1 < name.len() => {
            format!("{}.{tag}{}", &name[..dot], &name[dot..])
        }
        _ => format!("{name}.{tag}"),
    }
}

/// A node id derived from `parts` under domain `tag` (never the root): the same on every node.
pub fn hashed_id(tag: &[u8], parts: &[&[u8]]) -> NodeId {
    let mut h = blake3::Hasher::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    NodeId::from_le_bytes(b).max(1)
}

/// What a node's content is, as bytes that order contents the same way on every node.
fn content_key(content: &Content) -> Vec<u8> {
    match content {
        Content::File { cid, size } => [&b"f"[..], &cid.to_bytes(), &size.to_be_bytes()].concat(),
        Content::Dir => b"d".to_vec(),
        Content::Symlink(target) => [&b"l"[..], target.as_bytes()].concat(),
    }
}

/// A conflict copy's id: derived from the node and the content kept in the copy alone, the
/// same on every node and in every merge that keeps that content of that node as a copy
/// (whoever merged, whenever): two merges of the same conflict make one copy, not two, and a
/// later conflict on the node makes a second copy instead of replacing the first.
fn copy_id(id: NodeId, content: &Content) -> NodeId {
    hashed_id(
        b"cairn conflict copy\0",
        &[&id.to_le_bytes(), &content_key(content)],
    )
}

/// Merges `a` and `b`, two versions that both descend from `base`.
pub fn merge(base: &Tree, a: Side<'_>, b: Side<'_>) -> Merged {
    merge_with(base, a, b, false)
}

/// The tree a merge of two heads with several best common ancestors starts from (after
/// criss-cross merges): ancestors `a` and `b` merged against their own common ancestor `base`
/// by the rules of [`merge`], except that where both changed a node's content differently the
/// node keeps `base`'s content and no conflict copy is made, and names are not settled. A
/// virtual base is only compared against, never written: a node whose content the two
/// ancestors disagree on then counts as changed on each side that has either version, so the
/// real merge keeps both as it would have without the criss-cross, and a version both sides
/// moved past does not come back.
pub fn virtual_base(base: &Tree, a: Side<'_>, b: Side<'_>) -> Tree {
    merge_with(base, a, b, true).tree
}

fn merge_with(base: &Tree, a: Side<'_>, b: Side<'_>, virtual_base: bool) -> Merged {
    // The preferred side first: the later commit, ties broken by the writer.
    let (first, second) = if (a.time, a.writer) >= (b.time, b.writer) {
        (a, b)
    } else {
        (b, a)
    };
    let side = |f: From| match f {
        From::First => first,
        _ => second,
    };
    let ids: BTreeSet<NodeId> = base
        .nodes
        .keys()
        .chain(first.tree.nodes.keys())
        .chain(second.tree.nodes.keys())
        .copied()
        .collect();
    let mut out: BTreeMap<NodeId, (Entry, From)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    // Copies to add once every node is placed: (id of the copy, entry, kind, kept, side).
    let mut copies: Vec<(NodeId, Entry, ConflictKind, NodeId, From)> = Vec::new();
    for id in ids {
        let (o, x, y) = (
            base.nodes.get(&id),
            first.tree.nodes.get(&id),
            second.tree.nodes.get(&id),
        );
        let merged = match (o, x, y) {
            (_, None, None) => None,
            (None, Some(x), None) => Some((x.clone(), From::First)),
            (None, None, Some(y)) => Some((y.clone(), From::Second)),
            // Deleted on one side: gone unless the other side changed it.
            (Some(o), None, Some(y)) => (y != o).then(|| (y.clone(), From::Second)),
            (Some(o), Some(x), None) => (x != o).then(|| (x.clone(), From::First)),
            (o, Some(x), Some(y)) => {
                let place = match o {
                    Some(o) if x.place() == o.place() => (y.parent, y.name.clone(), From::Second),
                    _ => (x.parent, x.name.clone(), From::First),
                };
                let base_content = o.map(|o| &o.content);
                let (content, from_content, lost) = if Some(&x.content) == base_content {
                    (y.content.clone(), From::Second, None)
                } else if Some(&y.content) == base_content || x.content == y.content {
                    (x.content.clone(), From::First, None)
                } else if virtual_base {
                    let content = base_content.unwrap_or(&x.content).clone();
                    (content, From::First, None)
                } else if y.content == Content::Dir
                    || (x.content != Content::Dir
                        && content_key(&y.content) > content_key(&x.content))
                {
                    // A directory keeps the node; between two files (or symlinks) the content
                    // that orders last does. Decided by the two contents alone, never by the
                    // sides' commits: every merge that meets the same two versions of a node
                    // (on any node, in any order, in merges of merges) keeps the same one under
                    // the name and the same copy, so no merge ever flips them back and forth.
                    (
                        y.content.clone(),
                        From::Second,
                        Some((x.content.clone(), From::First)),
                    )
                } else {
                    (
                        x.content.clone(),
                        From::First,
                        Some((y.content.clone(), From::Second)),
                    )
                };
                let entry = Entry {
                    parent: place.0,
                    name: place.1,
                    content,
                };
                if let Some((content, from)) = lost {
                    let s = side(from);
                    let kind = if entry.content == Content::Dir || content == Content::Dir {
                        ConflictKind::TypeChanged
                    } else {
                        ConflictKind::BothModified
                    };
                    let copy = Entry {
                        parent: entry.parent,
                        name: conflict_name(&entry.name, s.writer, s.time),
                        content,
                    };
                    copies.push((copy_id(id, &copy.content), copy, kind, id, from));
                }
                // Provenance for naming, should the node have to give up its name below.
                let from = if place.2 == From::Second || from_content == From::Second {
                    From::Second
                } else {
                    From::First
                };
                Some((entry, from))
            }
        };
        if let Some(m) = merged {
            out.insert(id, m);
        }
    }
    for (id, entry, kind, kept, from) in copies {
        out.insert(id, (entry, from));
        conflicts.push(Conflict {
            kept,
            copy: id,
            kind,
        });
    }
    restore_parents(&mut out, base, first.tree, second.tree);
    break_cycles(&mut out, base);
    if !virtual_base {
        settle_names(&mut out, base, &side, &mut conflicts);
    }
    conflicts.sort();
    Merged {
        tree: Tree {
            nodes: out.into_iter().map(|(id, (e, _))| (id, e)).collect(),
        },
        conflicts,
    }
}

/// Brings back the directories a kept node is in but that a side deleted (a change wins over
/// a delete, so the path to it does too), from the side that still has them.
fn restore_parents(
    out: &mut BTreeMap<NodeId, (Entry, From)>,
    base: &Tree,
    first: &Tree,
    second: &Tree,
) {
    loop {
        let missing: BTreeSet<NodeId> = out
            .values()
            .map(|(e, _)| e.parent)
            .filter(|p| *p != ROOT && !out.contains_key(p))
            .collect();
        if missing.is_empty() {
            return;
        }
        for p in missing {
            let found = first
                .nodes
                .get(&p)
                .map(|e| (e, From::First))
                .or_else(|| second.nodes.get(&p).map(|e| (e, From::Second)))
                .or_else(|| base.nodes.get(&p).map(|e| (e, From::Base)));
            match found {
                Some((e, from)) => {
                    let mut e = e.clone();
                    // A parent comes back as a directory, whatever else a side made of it.
                    e.content = Content::Dir;
                    out.insert(p, (e, from));
                }
                // A parent no version knows: its children go to the root.
                None => {
                    for (e, _) in out.values_mut() {
                        if e.parent == p {
                            e.parent = ROOT;
                        }
                    }
                }
            }
        }
    }
}

/// Undoes one move of each cycle concurrent moves made (a directory inside itself).
fn break_cycles(out: &mut BTreeMap<NodeId, (Entry, From)>, base: &Tree) {
    for round in 0.. {
        let mut cycle: Option<Vec<NodeId>> = None;
        'ids: for &start in out.keys() {
            let mut seen = vec![start];
            let mut at = out[&start].0.parent;
            while at != ROOT {
                if at == start {
                    cycle = Some(seen);
                    break 'ids;
                }
                if seen.contains(&at) || seen.len() > out.len() {
                    // A cycle that does not pass through `start`: found from one of its own.
                    break;
                }
                seen.push(at);
                at = match out.get(&at) {
                    Some((e, _)) => e.parent,
                    None => ROOT,
                };
            }
        }
        let Some(cycle) = cycle else { return };
        let Some(&id) = cycle.iter().min() else {
            return;
        };
        // Back where it was in base, if that is outside the cycle and still there; else (or
        // if undoing moves keeps making cycles) to the root.
        let back = base
            .nodes
            .get(&id)
            .filter(|b| !cycle.contains(&b.parent))
            .filter(|b| b.parent == ROOT || out.contains_key(&b.parent))
            .filter(|_| round <= out.len())
            .map(|b| (b.parent, b.name.clone()));
        if let Some((e, _)) = out.get_mut(&id) {
            match back {
                Some((parent, name)) => {
                    e.parent = parent;
                    e.name = name;
                }
                None => e.parent = ROOT,
            }
        }
    }
}

/// Leaves one node per name in each directory; the others become conflict copies.
fn settle_names<'a>(
    out: &mut BTreeMap<NodeId, (Entry, From)>,
    base: &Tree,
    side: &dyn Fn(From) -> Side<'a>,
    conflicts: &mut Vec<Conflict>,
) {
    loop {
        let mut by_place: BTreeMap<(NodeId, String), Vec<NodeId>> = BTreeMap::new();
        for (id, (e, _)) in out.iter() {
            by_place
                .entry((e.parent, e.name.clone()))
                .or_default()
                .push(*id);
        }
        let clash = by_place.into_iter().find(|(_, ids)| ids.len() > 1);
        let Some(((parent, name), mut ids)) = clash else {
            return;
        };
        // Who keeps the name: the node that had it in base, else a directory, else the
        // smallest id.
        ids.sort_by_key(|id| {
            let had_it = base
                .nodes
                .get(id)
                .is_some_and(|b| b.parent == parent && b.name == name);
            let dir = out[id].0.content == Content::Dir;
            (!had_it, !dir, *id)
        });
        let kept = ids[0];
        for &id in &ids[1..] {
            let from = out[&id].1;
            let s = side(if from == From::Base {
                From::Second
            } else {
                from
            });
            let mut new_name = conflict_name(&name, s.writer, s.time);
            let mut n = 1;
            while out
                .values()
                .any(|(e, _)| e.parent == parent && e.name == new_name)
            {
                n += 1;
                new_name = conflict_name(&name, &format!("{}-{n}", s.writer), s.time);
            }
            if let Some((e, _)) = out.get_mut(&id) {
                e.name = new_name;
            }
            conflicts.push(Conflict {
                kept,
                copy: id,
                kind: ConflictKind::SameName,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn file(n: u8) -> Content {
        Content::File {
            cid: crate::cid_for(1, crate::RAW, crate::HashAlg::Sha2_256, &[n]),
            size: 1,
        }
    }

    fn e(parent: NodeId, name: &str, content: Content) -> Entry {
        Entry {
            parent,
            name: name.into(),
            content,
        }
    }

    fn tree(nodes: &[(NodeId, Entry)]) -> Tree {
        Tree {
            nodes: nodes.iter().cloned().collect(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs)
    }

    /// Merges both ways round, checks they agree, returns the result.
    fn both_ways(base: &Tree, a: &Tree, b: &Tree) -> Merged {
        let sa = Side {
            tree: a,
            writer: "alice",
            time: at(10),
        };
        let sb = Side {
            tree: b,
            writer: "bob",
            time: at(20),
        };
        let m1 = merge(base, sa, sb);
        let m2 = merge(base, sb, sa);
        assert_eq!(m1, m2, "the merge depends on the order of its sides");
        m1
    }

    fn paths(t: &Tree) -> BTreeMap<String, Content> {
        t.nodes
            .keys()
            .map(|id| (t.path(*id).unwrap(), t.nodes[id].content.clone()))
            .collect()
    }

    #[test]
    fn a_virtual_base_of_a_criss_cross_brings_back_no_version_both_sides_moved_past() {
        // D: f = 1, g = 1. Two writers changed one file each (B1: f = 2, B2: g = 2), and two
        // nodes merged B1 and B2 at once (criss-cross). Later one side edited f again (f = 3);
        // the other still has f = 2. B1 and B2 are both best common ancestors.
        let d = tree(&[(1, e(ROOT, "f", file(1))), (2, e(ROOT, "g", file(1)))]);
        let b1 = tree(&[(1, e(ROOT, "f", file(2))), (2, e(ROOT, "g", file(1)))]);
        let b2 = tree(&[(1, e(ROOT, "f", file(1))), (2, e(ROOT, "g", file(2)))]);
        let a = tree(&[(1, e(ROOT, "f", file(3))), (2, e(ROOT, "g", file(2)))]);
        let b = tree(&[(1, e(ROOT, "f", file(2))), (2, e(ROOT, "g", file(2)))]);
        let side = |t| Side {
            tree: t,
            writer: "w",
            time: at(0),
        };
        let v = virtual_base(&d, side(&b1), side(&b2));
        assert_eq!(
            paths(&v),
            paths(&tree(&[
                (1, e(ROOT, "f", file(2))),
                (2, e(ROOT, "g", file(2)))
            ]))
        );
        let m = both_ways(&v, &a, &b);
        assert!(m.conflicts.is_empty(), "{m:?}");
        assert_eq!(paths(&m.tree), paths(&a));
        // With one of the two ancestors alone as the base, f = 2 would come back as a copy.
        assert_eq!(both_ways(&b2, &a, &b).conflicts.len(), 1);
        // Where the ancestors disagree on one node, the virtual base keeps D's content and
        // makes no copy: both later versions then count as changes and are both kept.
        let b2f = tree(&[(1, e(ROOT, "f", file(4))), (2, e(ROOT, "g", file(1)))]);
        let v = virtual_base(&d, side(&b1), side(&b2f));
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.nodes[&1].content, file(1));
        let a = tree(&[(1, e(ROOT, "f", file(2))), (2, e(ROOT, "g", file(1)))]);
        let b = tree(&[(1, e(ROOT, "f", file(4))), (2, e(ROOT, "g", file(1)))]);
        let m = both_ways(&v, &a, &b);
        assert_eq!(m.conflicts.len(), 1);
    }

    #[test]
    fn conflict_names_keep_the_extension_and_are_deterministic() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_658_800); // 2025-12-02T07:00:00Z
        assert_eq!(
            conflict_name("report.txt", "bob", t),
            "report.cairn-conflict-bob-20251202-070000.txt"
        );
        assert_eq!(
            conflict_name("Makefile", "bob", t),
            "Makefile.cairn-conflict-bob-20251202-070000"
        );
        assert_eq!(
            conflict_name(".bashrc", "bob", t),
            ".bashrc.cairn-conflict-bob-20251202-070000"
        );
    }

    #[test]
    fn changes_to_different_files_and_directories_are_both_kept() {
        let base = tree(&[
            (1, e(ROOT, "a.txt", file(1))),
            (2, e(ROOT, "docs", Content::Dir)),
            (3, e(2, "b.txt", file(2))),
        ]);
        let mut a = base.clone();
        a.nodes.get_mut(&1).unwrap().content = file(11);
        a.nodes.insert(4, e(ROOT, "new-a.txt", file(4)));
        let mut b = base.clone();
        b.nodes.get_mut(&3).unwrap().content = file(12);
        b.nodes.insert(5, e(2, "new-b.txt", file(5)));
        let m = both_ways(&base, &a, &b);
        assert!(m.conflicts.is_empty());
        let p = paths(&m.tree);
        assert_eq!(p["a.txt"], file(11));
        assert_eq!(p["docs/b.txt"], file(12));
        assert_eq!(p["new-a.txt"], file(4));
        assert_eq!(p["docs/new-b.txt"], file(5));
    }

    /// Of two contents of a node, the one that keeps its name.
    fn kept(x: Content, y: Content) -> (Content, Content) {
        if content_key(&x) >= content_key(&y) {
            (x, y)
        } else {
            (y, x)
        }
    }

    #[test]
    fn the_same_file_changed_on_both_sides_keeps_a_conflict_copy() {
        let base = tree(&[(1, e(ROOT, "report.txt", file(1)))]);
        let a = tree(&[(1, e(ROOT, "report.txt", file(2)))]);
        let b = tree(&[(1, e(ROOT, "report.txt", file(3)))]);
        let m = both_ways(&base, &a, &b);
        let p = paths(&m.tree);
        // One version keeps the name, the other is beside it, named after its writer.
        let (name_holder, copied) = kept(file(2), file(3));
        assert_eq!(p["report.txt"], name_holder);
        let (writer, time) = if copied == file(2) {
            ("alice", at(10))
        } else {
            ("bob", at(20))
        };
        assert_eq!(p[&conflict_name("report.txt", writer, time)], copied);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].kind, ConflictKind::BothModified);
        // Which one keeps the name depends on the contents alone, not on whose commit is
        // later: merges of merges never swap them.
        for t in [at(5), at(30)] {
            let other = merge(
                &base,
                Side {
                    tree: &a,
                    writer: "alice",
                    time: t,
                },
                Side {
                    tree: &b,
                    writer: "bob",
                    time: at(20),
                },
            );
            assert_eq!(other.tree.nodes[&1].content, name_holder);
            assert_eq!(
                other.conflicts[0].copy, m.conflicts[0].copy,
                "one copy node"
            );
        }
    }

    #[test]
    fn a_second_conflict_on_a_file_keeps_the_first_conflict_copy() {
        // Alice and Bob both changed the file before: one version is a copy already.
        let first = both_ways(
            &tree(&[(1, e(ROOT, "report.txt", file(1)))]),
            &tree(&[(1, e(ROOT, "report.txt", file(2)))]),
            &tree(&[(1, e(ROOT, "report.txt", file(3)))]),
        );
        let base = first.tree;
        let (_, old) = kept(file(2), file(3));
        assert_eq!(base.nodes.len(), 2);
        // Both change it again: the new losing version is a second copy, beside the first.
        let mut a = base.clone();
        let mut b = base.clone();
        a.nodes.get_mut(&1).unwrap().content = file(4);
        b.nodes.get_mut(&1).unwrap().content = file(5);
        let m = both_ways(&base, &a, &b);
        let (name_holder, copied) = kept(file(4), file(5));
        let mut got: Vec<Content> = m.tree.nodes.values().map(|e| e.content.clone()).collect();
        got.sort();
        let mut want = vec![name_holder.clone(), copied, old];
        want.sort();
        assert_eq!(got, want, "{m:#?}");
        assert_eq!(m.tree.nodes[&1].content, name_holder);
    }

    #[test]
    fn modify_beats_delete_and_brings_the_directory_back() {
        let base = tree(&[
            (1, e(ROOT, "d", Content::Dir)),
            (2, e(1, "kept.txt", file(1))),
            (3, e(1, "gone.txt", file(2))),
        ]);
        // Alice deletes the whole directory; Bob edits one file in it.
        let a = tree(&[]);
        let mut b = base.clone();
        b.nodes.get_mut(&2).unwrap().content = file(9);
        let m = both_ways(&base, &a, &b);
        let p = paths(&m.tree);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p["d"], Content::Dir);
        assert_eq!(p["d/kept.txt"], file(9));
        // Deleted on one side and untouched on the other: deleted. On both: deleted.
        let m = both_ways(&base, &a, &a);
        assert!(m.tree.nodes.is_empty());
    }

    #[test]
    fn an_edit_lands_on_the_renamed_path() {
        let base = tree(&[
            (1, e(ROOT, "old.txt", file(1))),
            (2, e(ROOT, "archive", Content::Dir)),
        ]);
        let mut a = base.clone();
        *a.nodes.get_mut(&1).unwrap() = e(2, "new.txt", file(1));
        let mut b = base.clone();
        b.nodes.get_mut(&1).unwrap().content = file(7);
        let m = both_ways(&base, &a, &b);
        let p = paths(&m.tree);
        assert_eq!(p["archive/new.txt"], file(7));
        assert!(!p.contains_key("old.txt"));
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn a_file_and_a_directory_under_one_name_are_both_kept() {
        let base = tree(&[]);
        let a = tree(&[(1, e(ROOT, "x", file(1)))]);
        let b = tree(&[
            (2, e(ROOT, "x", Content::Dir)),
            (3, e(2, "in.txt", file(3))),
        ]);
        let m = both_ways(&base, &a, &b);
        let p = paths(&m.tree);
        assert_eq!(p["x"], Content::Dir);
        assert_eq!(p["x/in.txt"], file(3));
        assert_eq!(p[&conflict_name("x", "alice", at(10))], file(1));
        assert_eq!(m.conflicts[0].kind, ConflictKind::SameName);
        // A node one side made a directory while the other edited it as a file.
        let base = tree(&[(1, e(ROOT, "y", file(1)))]);
        let a = tree(&[(1, e(ROOT, "y", file(2)))]);
        let b = tree(&[(1, e(ROOT, "y", Content::Dir)), (4, e(1, "z", file(4)))]);
        let m = both_ways(&base, &a, &b);
        let p = paths(&m.tree);
        assert_eq!(p["y"], Content::Dir);
        assert_eq!(p["y/z"], file(4));
        assert_eq!(p[&conflict_name("y", "alice", at(10))], file(2));
        assert_eq!(m.conflicts[0].kind, ConflictKind::TypeChanged);
    }

    #[test]
    fn concurrent_moves_into_each_other_do_not_make_a_cycle() {
        let base = tree(&[
            (1, e(ROOT, "a", Content::Dir)),
            (2, e(ROOT, "b", Content::Dir)),
        ]);
        let mut a = base.clone();
        a.nodes.get_mut(&1).unwrap().parent = 2;
        let mut b = base.clone();
        b.nodes.get_mut(&2).unwrap().parent = 1;
        let m = both_ways(&base, &a, &b);
        for id in m.tree.nodes.keys() {
            assert!(m.tree.path(*id).is_some(), "node {id} is not reachable");
        }
    }

    /// A seeded random tree edit: the kinds of operations writers do.
    fn edit(t: &Tree, seed: u64, ops: u64, next_id: &mut NodeId) -> Tree {
        let mut t = t.clone();
        let mut r = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = |n: u64| {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r % n.max(1)
        };
        for _ in 0..1 + rnd(ops) {
            let ids: Vec<NodeId> = t.nodes.keys().copied().collect();
            let dirs: Vec<NodeId> = std::iter::once(ROOT)
                .chain(
                    t.nodes
                        .iter()
                        .filter(|(_, e)| e.content == Content::Dir)
                        .map(|(id, _)| *id),
                )
                .collect();
            let dir = dirs[rnd(dirs.len() as u64) as usize];
            let pick = (!ids.is_empty()).then(|| ids[rnd(ids.len() as u64) as usize]);
            match rnd(5) {
                0 | 1 => {
                    *next_id += 1;
                    let content = if rnd(3) == 0 {
                        Content::Dir
                    } else {
                        file(rnd(200) as u8)
                    };
                    t.nodes
                        .insert(*next_id, e(dir, &format!("n{}", rnd(4)), content));
                }
                2 => {
                    if let Some(id) = pick {
                        if t.nodes[&id].content != Content::Dir {
                            t.nodes.get_mut(&id).unwrap().content = file(rnd(200) as u8);
                        }
                    }
                }
                3 => {
                    if let Some(id) = pick {
                        // Delete a node and everything under it.
                        let mut gone = vec![id];
                        while let Some(g) = gone.pop() {
                            t.nodes.remove(&g);
                            gone.extend(
                                t.nodes
                                    .iter()
                                    .filter(|(_, e)| e.parent == g)
                                    .map(|(i, _)| *i),
                            );
                        }
                    }
                }
                _ => {
                    if let Some(id) = pick {
                        // Move, unless into itself or below itself.
                        let mut at = dir;
                        let mut ok = true;
                        while at != ROOT {
                            if at == id {
                                ok = false;
                                break;
                            }
                            at = t.nodes[&at].parent;
                        }
                        if ok {
                            let name = format!("n{}", rnd(4));
                            let en = t.nodes.get_mut(&id).unwrap();
                            en.parent = dir;
                            en.name = name;
                        }
                    }
                }
            }
        }
        t
    }

    #[test]
    fn random_edits_merge_the_same_both_ways_round_and_lose_no_content() {
        for seed in 0..400u64 {
            let mut next = 1000;
            let base = edit(&Tree::default(), seed, 40, &mut next);
            let mut na = next;
            let a = edit(&base, seed * 3 + 1, 10, &mut na);
            let mut nb = na + 1000;
            let b = edit(&base, seed * 7 + 2, 10, &mut nb);
            let m = both_ways(&base, &a, &b);
            // Every node is reachable and every directory entry name is unique.
            let mut places = BTreeSet::new();
            for (id, en) in &m.tree.nodes {
                assert!(m.tree.path(*id).is_some(), "seed {seed}: {id} unreachable");
                assert!(
                    en.parent == ROOT || m.tree.nodes[&en.parent].content == Content::Dir,
                    "seed {seed}: {id} is inside a non-directory"
                );
                assert!(
                    places.insert((en.parent, en.name.clone())),
                    "seed {seed}: two nodes named {}",
                    en.name
                );
            }
            // No lost write: every content a side changed or added is in the result, as the
            // node itself or as one of its conflict copies.
            let holds = |id: &NodeId, c: &Content| {
                m.tree.nodes.get(id).map(|e| &e.content) == Some(c)
                    || m.conflicts
                        .iter()
                        .any(|k| k.kept == *id && m.tree.nodes[&k.copy].content == *c)
            };
            for side in [&a, &b] {
                for (id, en) in &side.nodes {
                    if en.content == Content::Dir || base.nodes.get(id) == Some(en) {
                        continue;
                    }
                    if base.nodes.get(id).map(|b| &b.content) == Some(&en.content) {
                        continue; // only moved
                    }
                    assert!(
                        holds(id, &en.content),
                        "seed {seed}: a side's content of node {id} was lost"
                    );
                }
            }
        }
    }
}
