//! The identities of a share version's nodes, kept beside its UnixFS tree, and the two ways
//! between a version and the [`Tree`] that [`crate::merge`] merges.
//!
//! A version is its UnixFS root plus an *id tree*: one block per directory (raw codec, as a
//! share's records are kept; the bytes a DAG-CBOR map) from each entry name to the entry's
//! [`NodeId`] (16 bytes), and for a subdirectory to `{dir: <its id block>, id: <16 bytes>}`.
//! Unchanged directories keep their id blocks' CIDs, as they keep their UnixFS CIDs, so a
//! commit rewrites the id blocks along the changed paths only.
//!
//! A version without an id tree (made before identities were kept) or an entry the id block
//! does not name gets an id derived from its parent's id and its name: every node derives the
//! same one, so such versions merge by path.
//!
//! Reading a peer's version is bounded: at most [`MAX_NODES`] nodes and [`MAX_DEPTH`] levels,
//! and every id block is verified against its CID by the source and refused over
//! [`MAX_ID_BLOCK`].

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use cid::Cid;

use crate::ipns::cbor::{decode_map, encode_map, CborValue};
use crate::merge::{Content, Entry, NodeId, Tree, ROOT};
use crate::{
    build_directory, build_symlink, Block, BlockSink, BlockSource, DagReader, DirChild, EntryKind,
    HashAlg, ImportOptions, DAG_CBOR,
};

/// The most nodes a version read into a [`Tree`] may have.
pub const MAX_NODES: usize = 1_000_000;
/// The deepest directory nesting read.
pub const MAX_DEPTH: usize = 256;
/// The largest id block accepted.
pub const MAX_ID_BLOCK: usize = 4 << 20;

/// Why a version could not be read or written as a [`Tree`].
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the version: {0}")]
    Read(Box<crate::ReadError>),
    #[error("cannot read id block {cid}: {why}")]
    IdBlock { cid: Cid, why: String },
    #[error("the version has over {MAX_NODES} nodes")]
    TooManyNodes,
    #[error("the version nests directories over {MAX_DEPTH} deep")]
    TooDeep,
    #[error("the tree is not a tree: {0}")]
    NotATree(String),
    #[error(transparent)]
    Import(Box<crate::ImportError>),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl From<crate::ReadError> for IdentityError {
    fn from(e: crate::ReadError) -> Self {
        IdentityError::Read(Box::new(e))
    }
}

impl From<crate::ImportError> for IdentityError {
    fn from(e: crate::ImportError) -> Self {
        IdentityError::Import(Box::new(e))
    }
}

/// The id of `name` in directory `parent` when no id block names it.
pub fn derived_id(parent: NodeId, name: &str) -> NodeId {
    crate::merge::hashed_id(
        b"cairn derived node id\0",
        &[&parent.to_le_bytes(), name.as_bytes()],
    )
}

/// A new random id (for a node created by a writer).
pub fn new_id() -> NodeId {
    let mut b = [0u8; 16];
    // The OS's randomness; an all-zero fallback would collide, so derive from time instead.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    NodeId::from_le_bytes(b).max(1)
}

fn id_bytes(v: &CborValue) -> Option<NodeId> {
    match v {
        CborValue::Bytes(b) if b.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(NodeId::from_le_bytes(a))
        }
        _ => None,
    }
}

/// An id block's entries: entry name → the node's id, and a directory's own id block.
pub type IdEntries = BTreeMap<String, (NodeId, Option<Cid>)>;

/// The block for one directory's id entries.
pub fn id_block(entries: &IdEntries) -> Result<Block, IdentityError> {
    let mut ids = BTreeMap::new();
    for (name, (id, dir)) in entries {
        let id_value = CborValue::Bytes(id.to_le_bytes().to_vec());
        let value = match dir {
            Some(sub) => {
                let mut m = BTreeMap::new();
                m.insert("dir".to_string(), CborValue::Link(*sub));
                m.insert("id".to_string(), id_value);
                CborValue::Other(
                    encode_map(&m).map_err(|e| IdentityError::NotATree(e.to_string()))?,
                )
            }
            None => id_value,
        };
        ids.insert(name.clone(), value);
    }
    let bytes = encode_map(&ids).map_err(|e| IdentityError::NotATree(e.to_string()))?;
    Ok(Block::encode(
        1,
        DAG_CBOR,
        HashAlg::Sha2_256,
        Bytes::from(bytes),
    ))
}

/// Reads the id block `cid` from `source` (verified there) into its entries.
pub async fn read_id_block<S: BlockSource>(
    source: &S,
    cid: Cid,
) -> Result<IdEntries, IdentityError> {
    let data = source.get(&cid).await.map_err(|e| IdentityError::IdBlock {
        cid,
        why: e.to_string(),
    })?;
    Ok(decode_ids(&data, cid)?.into_iter().collect())
}

/// The entries of the id block `cid` whose bytes (checked against `cid` already) are `data`.
pub fn decode_id_block(data: &[u8], cid: Cid) -> Result<IdEntries, IdentityError> {
    Ok(decode_ids(data, cid)?.into_iter().collect())
}

/// One entry of an id block: the node's id, and a directory's own id block.
fn decode_ids(
    data: &[u8],
    cid: Cid,
) -> Result<HashMap<String, (NodeId, Option<Cid>)>, IdentityError> {
    let bad = |why: &str| IdentityError::IdBlock {
        cid,
        why: why.to_string(),
    };
    if data.len() > MAX_ID_BLOCK {
        return Err(bad("too big"));
    }
    let map = decode_map(data).map_err(|e| bad(&e.to_string()))?;
    let mut out = HashMap::with_capacity(map.len());
    for (name, v) in map {
        let entry = match &v {
            CborValue::Other(raw) => {
                let m = decode_map(raw).map_err(|e| bad(&e.to_string()))?;
                let id = m.get("id").and_then(id_bytes).ok_or_else(|| bad("no id"))?;
                let dir = match m.get("dir") {
                    Some(CborValue::Link(c)) => Some(*c),
                    None => None,
                    Some(_) => return Err(bad("dir is not a link")),
                };
                (id, dir)
            }
            other => (
                id_bytes(other).ok_or_else(|| bad("an id is not 16 bytes"))?,
                None,
            ),
        };
        out.insert(name, entry);
    }
    Ok(out)
}

/// Reads version `root` (a UnixFS directory) with id tree `ids` into a [`Tree`].
pub async fn read_version<S: BlockSource + Clone>(
    reader: &DagReader<S>,
    root: Cid,
    ids: Option<Cid>,
) -> Result<Tree, IdentityError> {
    let mut tree = Tree::default();
    let mut stack: Vec<(Cid, NodeId, Option<Cid>, usize)> = vec![(root, ROOT, ids, 0)];
    let mut seen_ids: HashSet<NodeId> = HashSet::new();
    while let Some((dir, dir_id, id_block, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(IdentityError::TooDeep);
        }
        let names = match id_block {
            Some(c) => {
                let data = reader
                    .source()
                    .get(&c)
                    .await
                    .map_err(|e| IdentityError::IdBlock {
                        cid: c,
                        why: e.to_string(),
                    })?;
                decode_ids(&data, c)?
            }
            None => HashMap::new(),
        };
        for entry in reader.read_dir(&dir).await? {
            if tree.nodes.len() >= MAX_NODES {
                return Err(IdentityError::TooManyNodes);
            }
            let (mut id, sub) = names
                .get(&entry.name)
                .copied()
                .unwrap_or_else(|| (derived_id(dir_id, &entry.name), None));
            // An id named twice (a shared subtree, a hostile id block) is a new node the
            // second time: derived from where it is.
            if id == ROOT || !seen_ids.insert(id) {
                id = derived_id(dir_id, &entry.name);
                seen_ids.insert(id);
            }
            let info = reader.stat(&entry.cid).await?;
            let content = match info.kind {
                EntryKind::Directory => {
                    stack.push((entry.cid, id, sub, depth + 1));
                    Content::Dir
                }
                EntryKind::Symlink => Content::Symlink(info.symlink_target.unwrap_or_default()),
                EntryKind::File => Content::File {
                    cid: entry.cid,
                    size: entry.tsize.unwrap_or(info.size),
                },
            };
            tree.nodes.insert(
                id,
                Entry {
                    parent: dir_id,
                    name: entry.name,
                    content,
                },
            );
        }
    }
    Ok(tree)
}

/// What [`write_version`] built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The version's UnixFS root.
    pub root: Cid,
    /// Its cumulative DAG size.
    pub tsize: u64,
    /// Its id tree.
    pub ids: Cid,
}

/// Builds `tree` as a version: UnixFS directories over its files (whose blocks must exist),
/// symlinks, and the id tree, all given to `sink`. Directories carry no mode or mtime.
pub fn write_version(
    tree: &Tree,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Written, IdentityError> {
    let mut children: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for (id, e) in &tree.nodes {
        if e.parent != ROOT && tree.nodes.get(&e.parent).map(|p| &p.content) != Some(&Content::Dir)
        {
            return Err(IdentityError::NotATree(format!(
                "node {id:x} is inside {:x}, which is not a directory",
                e.parent
            )));
        }
        children.entry(e.parent).or_default().push(*id);
    }
    // Post-order without recursion: a directory is built once its subdirectories are.
    let mut built: HashMap<NodeId, (Cid, u64, Cid)> = HashMap::new();
    let mut stack: Vec<(NodeId, bool)> = vec![(ROOT, false)];
    let mut depth_guard = 0usize;
    while let Some((dir, ready)) = stack.pop() {
        depth_guard += 1;
        if depth_guard > 2 * (tree.nodes.len() + 1) + 1 {
            return Err(IdentityError::NotATree("a cycle".into()));
        }
        let kids = children.get(&dir).map(Vec::as_slice).unwrap_or(&[]);
        if !ready {
            stack.push((dir, true));
            for k in kids {
                if tree.nodes[k].content == Content::Dir {
                    stack.push((*k, false));
                }
            }
            continue;
        }
        let mut entries: Vec<(&str, NodeId)> = kids
            .iter()
            .map(|k| (tree.nodes[k].name.as_str(), *k))
            .collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut dir_children = Vec::with_capacity(entries.len());
        let mut ids = IdEntries::new();
        for w in entries.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(IdentityError::NotATree(format!(
                    "two nodes named {:?}",
                    w[0].0
                )));
            }
        }
        for (name, id) in entries {
            let e = &tree.nodes[&id];
            let (cid, tsize, nonempty_dir) = match &e.content {
                Content::File { cid, size } => {
                    if id != derived_id(dir, name) {
                        ids.insert(name.to_string(), (id, None));
                    }
                    (*cid, *size, false)
                }
                Content::Symlink(target) => {
                    if id != derived_id(dir, name) {
                        ids.insert(name.to_string(), (id, None));
                    }
                    let s = build_symlink(target, opts, sink)?;
                    (s.cid, s.tsize, false)
                }
                Content::Dir => {
                    let (cid, tsize, sub) = built
                        .remove(&id)
                        .ok_or_else(|| IdentityError::NotATree("a cycle".into()))?;
                    ids.insert(name.to_string(), (id, Some(sub)));
                    (cid, tsize, children.get(&id).is_some_and(|c| !c.is_empty()))
                }
            };
            dir_children.push(DirChild {
                name: name.to_string(),
                cid,
                tsize,
                nonempty_dir,
            });
        }
        let node = build_directory(dir_children, None, None, opts, sink)?;
        let block = id_block(&ids)?;
        let id_cid = *block.cid();
        sink.put_blocks(vec![block])?;
        built.insert(dir, (node.cid, node.tsize, id_cid));
    }
    let (root, tsize, ids) = built
        .remove(&ROOT)
        .ok_or_else(|| IdentityError::NotATree("no root".into()))?;
    if !built.is_empty() {
        return Err(IdentityError::NotATree(
            "directories not reachable from the root (a cycle)".into(),
        ));
    }
    Ok(Written { root, tsize, ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_blocks::MemBlocks as Mem;

    fn file(mem: &Mem, text: &str) -> Content {
        let imported = crate::import_file(
            text.as_bytes(),
            text.len() as u64,
            None,
            None,
            &ImportOptions::default(),
            mem,
        )
        .unwrap();
        Content::File {
            cid: imported.cid,
            size: imported.tsize,
        }
    }

    fn e(parent: NodeId, name: &str, content: Content) -> Entry {
        Entry {
            parent,
            name: name.into(),
            content,
        }
    }

    #[tokio::test]
    async fn a_version_round_trips_with_its_ids_and_merges_renames_by_id() {
        let mem = Mem::default();
        let opts = ImportOptions::default();
        let mut base = Tree::default();
        base.nodes.insert(10, e(ROOT, "docs", Content::Dir));
        base.nodes
            .insert(11, e(10, "report.txt", file(&mem, "draft")));
        base.nodes.insert(
            12,
            e(ROOT, "link", Content::Symlink("docs/report.txt".into())),
        );
        base.nodes.insert(13, e(10, "deep", Content::Dir));
        base.nodes.insert(14, e(13, "x.bin", file(&mem, "x")));
        let w = write_version(&base, &opts, &mem).unwrap();
        let reader = DagReader::new(mem.clone());
        let back = read_version(&reader, w.root, Some(w.ids)).await.unwrap();
        assert_eq!(back, base);
        // The UnixFS side reads as a plain directory tree.
        let top: Vec<String> = reader
            .read_dir(&w.root)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(top, ["docs", "link"]);
        // Same tree, same CIDs: a version is a function of its tree.
        assert_eq!(write_version(&back, &opts, &mem).unwrap(), w);

        // Alice renames the report, Bob edits it: read back from the blocks, the merge puts
        // Bob's edit at Alice's new name.
        let mut a = base.clone();
        a.nodes.get_mut(&11).unwrap().name = "final.txt".into();
        let mut b = base.clone();
        b.nodes.get_mut(&11).unwrap().content = file(&mem, "reviewed");
        let (wa, wb) = (
            write_version(&a, &opts, &mem).unwrap(),
            write_version(&b, &opts, &mem).unwrap(),
        );
        let ra = read_version(&reader, wa.root, Some(wa.ids)).await.unwrap();
        let rb = read_version(&reader, wb.root, Some(wb.ids)).await.unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        let m = crate::merge::merge(
            &base,
            crate::merge::Side {
                tree: &ra,
                writer: "alice",
                time: t,
            },
            crate::merge::Side {
                tree: &rb,
                writer: "bob",
                time: t,
            },
        );
        let wm = write_version(&m.tree, &opts, &mem).unwrap();
        let cid = reader
            .resolve(&wm.root, &["docs", "final.txt"])
            .await
            .unwrap();
        assert_eq!(&reader.read(&cid, 0, 100).await.unwrap()[..], b"reviewed");
    }

    #[tokio::test]
    async fn versions_without_ids_get_the_same_derived_ids_everywhere() {
        let mem = Mem::default();
        let opts = ImportOptions::default();
        let mut t = Tree::default();
        t.nodes.insert(5, e(ROOT, "a", Content::Dir));
        t.nodes.insert(6, e(5, "b.txt", file(&mem, "b")));
        let w = write_version(&t, &opts, &mem).unwrap();
        let reader = DagReader::new(mem.clone());
        let plain = read_version(&reader, w.root, None).await.unwrap();
        let again = read_version(&reader, w.root, None).await.unwrap();
        assert_eq!(plain, again);
        let a = derived_id(ROOT, "a");
        assert_eq!(plain.nodes[&a].name, "a");
        assert_eq!(plain.nodes[&derived_id(a, "b.txt")].parent, a);
        // A damaged id block is refused, not guessed around.
        let bad = Block::encode(1, DAG_CBOR, HashAlg::Sha2_256, Bytes::from_static(b"\xff"));
        mem.put_blocks(vec![bad.clone()]).unwrap();
        assert!(read_version(&reader, w.root, Some(*bad.cid()))
            .await
            .is_err());
        // Not a tree: a node inside a file, two nodes under one name.
        let mut broken = t.clone();
        broken.nodes.insert(7, e(6, "c", file(&mem, "c")));
        assert!(write_version(&broken, &opts, &mem).is_err());
        let mut twice = t.clone();
        twice.nodes.insert(8, e(5, "b.txt", file(&mem, "other")));
        assert!(write_version(&twice, &opts, &mem).is_err());
    }
}
