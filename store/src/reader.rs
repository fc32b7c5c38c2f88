//! Reading UnixFS DAGs through a [`BlockSource`]: stat, ranged reads, sequential cursors,
//! directory listings (plain and HAMT-sharded), name lookups and path resolution.
//!
//! Everything read from a DAG is treated as hostile: entry names are validated
//! ([`is_safe_name`]), size arithmetic is checked, nesting is bounded by [`MAX_DEPTH`], and a
//! node whose `blocksizes` disagree with its links or with its children is
//! [`ReadError::Malformed`]. Every error names the CID it is about.
//!
//! A file node contributes its own `Data` bytes first, then its children in link order; a
//! child's byte range comes from the parent's `blocksizes`, so reads fetch only the nodes that
//! cover the requested range.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cid::Cid;

use crate::hamt;
use crate::hash::{DAG_PB, RAW};
use crate::pb::{PbError, PbLink, PbNode};
use crate::source::{BlockSource, GetError};
use crate::unixfs::{DataType, UnixFsData, UnixFsError, UnixTime};

/// How many levels of nodes below a root the reader follows before giving up.
pub const MAX_DEPTH: usize = 64;

/// The hash function code of UnixFS HAMT shards (murmur3-x64-64).
const HAMT_MURMUR3: u64 = 0x22;

/// What a node is, as a filesystem sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (a raw block, or a dag-pb File/Raw node).
    File,
    /// A directory (plain or HAMT-sharded).
    Directory,
    /// A symbolic link.
    Symlink,
}

/// The metadata of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub cid: Cid,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// File: its length in bytes. Symlink: the target's length. Directory: the root block's size.
    pub size: u64,
    /// Unix permission bits, when the DAG records them.
    pub mode: Option<u32>,
    /// Modification time, when the DAG records it.
    pub mtime: Option<UnixTime>,
    /// The target of a symlink.
    pub symlink_target: Option<String>,
    /// Whether this is a HAMT-sharded directory.
    pub is_sharded: bool,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry name (validated with [`is_safe_name`]).
    pub name: String,
    /// The entry's root node.
    pub cid: Cid,
    /// The cumulative size of the entry's DAG, as the link claims it.
    pub tsize: Option<u64>,
}

/// Why a DAG could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A block could not be had.
    #[error(transparent)]
    Get(#[from] GetError),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb")]
    Pb {
        /// The block.
        cid: Cid,
        /// The decoder's complaint.
        #[source]
        source: PbError,
    },
    /// A dag-pb block carries no valid UnixFS data.
    #[error("block {cid} has no valid UnixFS data")]
    UnixFs {
        /// The block.
        cid: Cid,
        /// The decoder's complaint.
        #[source]
        source: UnixFsError,
    },
    /// The CID's codec is neither dag-pb nor raw.
    #[error("block {cid} has codec 0x{codec:x}; only dag-pb (0x70) and raw (0x55) can be read")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
    /// The node decodes but does not make sense.
    #[error("malformed DAG at {cid}: {reason}")]
    Malformed {
        /// The offending node.
        cid: Cid,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A directory entry name that could escape or confuse a filesystem.
    #[error(
        "directory {dir} has an unsafe entry name {name:?} (empty, \".\", \"..\", or containing '/' or NUL); refusing to use it"
    )]
    UnsafeName {
        /// The directory holding the entry.
        dir: Cid,
        /// The name as stored.
        name: String,
    },
    /// A directory operation on something else.
    #[error("{cid} is not a directory")]
    NotADirectory {
        /// The node.
        cid: Cid,
    },
    /// A file operation on something else.
    #[error("{cid} is not a file")]
    NotAFile {
        /// The node.
        cid: Cid,
    },
    /// A path segment names no entry.
    #[error("no entry {name:?} in directory {dir}")]
    NotFound {
        /// The directory searched.
        dir: Cid,
        /// The missing name.
        name: String,
    },
    /// The DAG nests deeper than [`MAX_DEPTH`].
    #[error("DAG at {cid} is nested more than {max} levels deep")]
    TooDeep {
        /// The node at which the limit was hit.
        cid: Cid,
        /// The limit.
        max: usize,
    },
}

impl ReadError {
    /// The CID this error is about, where there is one.
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            ReadError::Get(e) => e.cid(),
            ReadError::Pb { cid, .. }
            | ReadError::UnixFs { cid, .. }
            | ReadError::UnsupportedCodec { cid, .. }
            | ReadError::Malformed { cid, .. }
            | ReadError::NotADirectory { cid }
            | ReadError::NotAFile { cid }
            | ReadError::TooDeep { cid, .. } => Some(cid),
            ReadError::UnsafeName { dir, .. } | ReadError::NotFound { dir, .. } => Some(dir),
        }
    }
}

/// Whether `name` may be used as a directory entry: not empty, not `.` or `..`,
/// and free of `/` and NUL.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A decoded dag-pb node with its UnixFS data.
#[derive(Debug)]
struct PbDecoded {
    links: Vec<PbLink>,
    fs: UnixFsData,
    block_len: u64,
}

#[derive(Debug, Clone)]
enum Node {
    Raw(Bytes),
    Pb(Arc<PbDecoded>),
}

/// A file node's own bytes and the byte ranges of its children.
struct FileLayout {
    data: Bytes,
    /// (child, size) in link order; the first child starts right after `data`.
    children: Vec<(Cid, u64)>,
    total: u64,
}

/// A bounded cache of decoded interior nodes (nodes with links), shared by clones of a reader.
/// When full it is emptied: simple, bounded, and interior nodes are few compared to leaves.
#[derive(Debug)]
struct NodeCache {
    map: Mutex<HashMap<Cid, Arc<PbDecoded>>>,
    capacity: usize,
}

/// Reads UnixFS DAGs from a [`BlockSource`].
#[derive(Debug, Clone)]
pub struct DagReader<S> {
    source: S,
    cache: Option<Arc<NodeCache>>,
}

/// One piece of a file: a node's own bytes at a file offset.
struct Piece {
    cid: Cid,
    start: u64,
    len: u64,
    data: Option<Bytes>,
}

impl<S: BlockSource> DagReader<S> {
    /// A reader without a node cache.
    pub fn new(source: S) -> Self {
        DagReader {
            source,
            cache: None,
        }
    }

    /// A reader that keeps up to `nodes` decoded interior nodes (file trees' upper levels,
    /// directories) in memory, so that many small reads of one file do not re-fetch its root.
    pub fn with_node_cache(source: S, nodes: usize) -> Self {
        let cache = NodeCache {
            map: Mutex::new(HashMap::new()),
            capacity: nodes.max(1),
        };
        DagReader {
            source,
            cache: Some(Arc::new(cache)),
        }
    }

    /// The source blocks are read from.
    pub fn source(&self) -> &S {
        &self.source
    }

    async fn fetch(&self, cid: &Cid) -> Result<Node, ReadError> {
        if let Some(cache) = &self.cache {
            if let Some(n) = lock(&cache.map).get(cid) {
                return Ok(Node::Pb(n.clone()));
            }
        }
        let bytes = self.source.get(cid).await?;
        let node = decode(cid, bytes)?;
        if let (Some(cache), Node::Pb(pb)) = (&self.cache, &node) {
            if !pb.links.is_empty() {
                let mut map = lock(&cache.map);
                if map.len() >= cache.capacity {
                    map.clear();
                }
                map.insert(*cid, pb.clone());
            }
        }
        Ok(node)
    }

    /// The kind, size and metadata of `cid`.
    pub async fn stat(&self, cid: &Cid) -> Result<NodeInfo, ReadError> {
        let node = self.fetch(cid).await?;
        let mut info = NodeInfo {
            cid: *cid,
            kind: EntryKind::File,
            size: 0,
            mode: None,
            mtime: None,
            symlink_target: None,
            is_sharded: false,
        };
        let pb = match &node {
            Node::Raw(b) => {
                info.size = b.len() as u64;
                return Ok(info);
            }
            Node::Pb(pb) => pb,
        };
        info.mode = pb.fs.mode;
        info.mtime = pb.fs.mtime;
        match pb.fs.kind {
            DataType::File | DataType::Raw => info.size = file_layout(cid, &node)?.total,
            DataType::Directory => {
                info.kind = EntryKind::Directory;
                info.size = pb.block_len;
            }
            DataType::HamtShard => {
                info.kind = EntryKind::Directory;
                info.size = pb.block_len;
                info.is_sharded = true;
            }
            DataType::Symlink => {
                let raw = pb.fs.data.clone().unwrap_or_default();
                let target = std::str::from_utf8(&raw)
                    .map_err(|_| malformed(cid, "symlink target is not UTF-8"))?;
                info.kind = EntryKind::Symlink;
                info.size = raw.len() as u64;
                info.symlink_target = Some(target.to_string());
            }
            DataType::Metadata => {
                return Err(malformed(cid, "UnixFS Metadata nodes are not supported"))
            }
        }
        Ok(info)
    }

    /// Up to `len` bytes of file `cid` from `offset`; fewer at the end of the file, none past it.
    /// Only the nodes covering the range are fetched.
    pub async fn read(&self, cid: &Cid, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        let end = offset.saturating_add(len as u64);
        let pieces = self.pieces(cid, offset, end, true).await?;
        let mut parts = Vec::with_capacity(pieces.len());
        for p in pieces {
            let Some(data) = p.data else {
                return Err(malformed(&p.cid, "leaf was not fetched"));
            };
            let from = offset.max(p.start) - p.start;
            let to = end.min(p.start + p.len) - p.start;
            // from < to <= p.len == data.len(), checked when the piece was made.
            parts.push(data.slice(from as usize..to as usize));
        }
        Ok(match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for p in parts {
                    out.extend_from_slice(&p);
                }
                out.freeze()
            }
        })
    }

    /// The blocks holding the bytes of file `cid` in `offset..offset + len`, in file order:
    /// `(block, file offset of the block's bytes, number of bytes)`. The ranges are the blocks'
    /// whole contents, so they may extend past the requested range. Raw leaves are not fetched;
    /// get their bytes with [`DagReader::node_data`].
    pub async fn leaves(
        &self,
        cid: &Cid,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(Cid, u64, u64)>, ReadError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let pieces = self
            .pieces(cid, offset, offset.saturating_add(len), false)
            .await?;
        Ok(pieces
            .into_iter()
            .map(|p| (p.cid, p.start, p.len))
            .collect())
    }

    /// The file bytes a single node holds itself: a raw block's content, or a dag-pb file node's
    /// `Data` (not its children's).
    pub async fn node_data(&self, cid: &Cid) -> Result<Bytes, ReadError> {
        let node = self.fetch(cid).await?;
        Ok(file_layout(cid, &node)?.data)
    }

    /// A sequential reader of file `cid` starting at `offset`.
    pub fn cursor(&self, cid: &Cid, offset: u64) -> FileCursor<S>
    where
        S: Clone,
    {
        FileCursor {
            reader: self.clone(),
            pos: offset,
            stack: vec![Frame {
                children: vec![(*cid, 0, None)],
                next: 0,
            }],
        }
    }

    /// Walks the file tree under `root`, collecting the pieces overlapping `from..to` in order.
    async fn pieces(
        &self,
        root: &Cid,
        from: u64,
        to: u64,
        fetch_raw: bool,
    ) -> Result<Vec<Piece>, ReadError> {
        let mut out = Vec::new();
        // (node, file offset, size the parent says it has, depth)
        let mut stack: Vec<(Cid, u64, Option<u64>, usize)> = vec![(*root, 0, None, 0)];
        while let Some((cid, start, expected, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(ReadError::TooDeep {
                    cid,
                    max: MAX_DEPTH,
                });
            }
            if let (false, RAW, Some(len)) = (fetch_raw, cid.codec(), expected) {
                out.push(Piece {
                    cid,
                    start,
                    len,
                    data: None,
                });
                continue;
            }
            let node = self.fetch(&cid).await?;
            let layout = file_layout(&cid, &node)?;
            if expected.is_some_and(|e| e != layout.total) {
                return Err(malformed(
                    &cid,
                    "size disagrees with the parent's blocksizes",
                ));
            }
            let data_len = layout.data.len() as u64;
            if data_len > 0 && overlaps(start, data_len, from, to) {
                out.push(Piece {
                    cid,
                    start,
                    len: data_len,
                    data: Some(layout.data),
                });
            }
            let mut child_start = start.checked_add(data_len).ok_or_else(|| overflow(&cid))?;
            let mut covering = Vec::new();
            for (child, size) in layout.children {
                if size > 0 && overlaps(child_start, size, from, to) {
                    covering.push((child, child_start, Some(size), depth + 1));
                }
                child_start = child_start
                    .checked_add(size)
                    .ok_or_else(|| overflow(&cid))?;
                if child_start >= to {
                    break;
                }
            }
            stack.extend(covering.into_iter().rev());
        }
        Ok(out)
    }

    /// The entries of directory `cid`, in stored order (for a HAMT: depth-first, link order).
    pub async fn read_dir(&self, cid: &Cid) -> Result<Vec<DirEntry>, ReadError> {
        let node = self.fetch(cid).await?;
        let Node::Pb(pb) = node else {
            return Err(ReadError::NotADirectory { cid: *cid });
        };
        match pb.fs.kind {
            DataType::Directory => pb
                .links
                .iter()
                .map(|l| entry(cid, l, l.name.as_deref()))
                .collect(),
            DataType::HamtShard => {
                let mut out = Vec::new();
                // Frames of (shard, its node, next link index, depth).
                let mut stack = vec![(*cid, pb, 0usize, 0usize)];
                while let Some(top) = stack.last_mut() {
                    let (shard, node, idx, depth) = (top.0, top.1.clone(), top.2, top.3);
                    let Some(link) = node.links.get(idx) else {
                        stack.pop();
                        continue;
                    };
                    top.2 += 1;
                    let pad = hamt_pad(&shard, &node.fs)?;
                    match hamt_link(&shard, link, pad)? {
                        HamtLink::Entry(name) => out.push(entry(&shard, link, Some(name))?),
                        HamtLink::Shard => {
                            if depth + 1 > MAX_DEPTH {
                                return Err(ReadError::TooDeep {
                                    cid: link.cid,
                                    max: MAX_DEPTH,
                                });
                            }
                            let child = self.shard(&link.cid).await?;
                            stack.push((link.cid, child, 0, depth + 1));
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(ReadError::NotADirectory { cid: *cid }),
        }
    }

    async fn shard(&self, cid: &Cid) -> Result<Arc<PbDecoded>, ReadError> {
        match self.fetch(cid).await? {
            Node::Pb(pb) if pb.fs.kind == DataType::HamtShard => Ok(pb),
            _ => Err(malformed(
                cid,
                "a HAMT shard links to a child shard that is not a HAMTShard node",
            )),
        }
    }

    /// The entry `name` of directory `dir`, if there is one. Names that [`is_safe_name`]
    /// rejects are never found.
    pub async fn lookup(&self, dir: &Cid, name: &str) -> Result<Option<Cid>, ReadError> {
        if !is_safe_name(name) {
            return Ok(None);
        }
        let node = self.fetch(dir).await?;
        let Node::Pb(pb) = node else {
            return Err(ReadError::NotADirectory { cid: *dir });
        };
        match pb.fs.kind {
            DataType::Directory => Ok(pb
                .links
                .iter()
                .find(|l| l.name.as_deref() == Some(name))
                .map(|l| l.cid)),
            DataType::HamtShard => self.hamt_lookup(dir, pb, name).await,
            _ => Err(ReadError::NotADirectory { cid: *dir }),
        }
    }

    /// Follows the hash path of `name` down a HAMT (see `crate::hamt`): at each depth the slot
    /// is the next `log2(fanout)` bits of the name's hash; the link labelled with that slot is
    /// either the entry (label + name) or a sub-shard (label alone). Only one node per level is
    /// fetched.
    async fn hamt_lookup(
        &self,
        root: &Cid,
        mut node: Arc<PbDecoded>,
        name: &str,
    ) -> Result<Option<Cid>, ReadError> {
        let mut cid = *root;
        for depth in 0..=MAX_DEPTH {
            hamt_pad(&cid, &node.fs)?;
            let fanout = node.fs.fanout.unwrap_or_default();
            let bits = hamt::fanout_bits(fanout)
                .ok_or_else(|| malformed(&cid, "HAMT fanout is not a power of two"))?;
            let slot = hamt::bucket_index(name.as_bytes(), depth, bits);
            let found = node.links.iter().find_map(|l| {
                let (s, rest) =
                    hamt::split_link_name(l.name.as_deref().unwrap_or_default(), fanout)?;
                (s == slot).then_some((l.cid, rest))
            });
            match found {
                None => return Ok(None),
                Some((child, "")) => {
                    node = self.shard(&child).await?;
                    cid = child;
                }
                Some((child, rest)) => return Ok((rest == name).then_some(child)),
            }
        }
        Err(ReadError::TooDeep {
            cid,
            max: MAX_DEPTH,
        })
    }

    /// The node reached from `root` by following `segments` (symlinks are not followed).
    pub async fn resolve<T: AsRef<str>>(
        &self,
        root: &Cid,
        segments: &[T],
    ) -> Result<Cid, ReadError> {
        let mut cur = *root;
        for seg in segments {
            let name = seg.as_ref();
            if !is_safe_name(name) {
                return Err(ReadError::UnsafeName {
                    dir: cur,
                    name: name.to_string(),
                });
            }
            cur = self
                .lookup(&cur, name)
                .await?
                .ok_or_else(|| ReadError::NotFound {
                    dir: cur,
                    name: name.to_string(),
                })?;
        }
        Ok(cur)
    }
}

/// A sequential reader over one file that keeps its place in the tree, so reading a whole
/// file fetches each block once.
#[derive(Debug)]
pub struct FileCursor<S> {
    reader: DagReader<S>,
    pos: u64,
    stack: Vec<Frame>,
}

#[derive(Debug)]
struct Frame {
    /// (node, file offset, size the parent says it has)
    children: Vec<(Cid, u64, Option<u64>)>,
    next: usize,
}

impl<S: BlockSource> FileCursor<S> {
    /// The file offset of the next byte `next_chunk` returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next non-empty run of bytes, or `None` at the end of the file.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            let depth = self.stack.len();
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(&(cid, start, expected)) = frame.children.get(frame.next) else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            if expected.is_some_and(|size| start.saturating_add(size) <= self.pos) {
                continue;
            }
            if depth > MAX_DEPTH {
                return Err(ReadError::TooDeep {
                    cid,
                    max: MAX_DEPTH,
                });
            }
            let node = self.reader.fetch(&cid).await?;
            let layout = file_layout(&cid, &node)?;
            if expected.is_some_and(|e| e != layout.total) {
                return Err(malformed(
                    &cid,
                    "size disagrees with the parent's blocksizes",
                ));
            }
            let data_len = layout.data.len() as u64;
            let mut child_start = start.checked_add(data_len).ok_or_else(|| overflow(&cid))?;
            let mut children = Vec::with_capacity(layout.children.len());
            for (child, size) in layout.children {
                children.push((child, child_start, Some(size)));
                child_start = child_start
                    .checked_add(size)
                    .ok_or_else(|| overflow(&cid))?;
            }
            if !children.is_empty() {
                self.stack.push(Frame { children, next: 0 });
            }
            let skip = self.pos.saturating_sub(start);
            if skip < data_len {
                self.pos = start + data_len;
                return Ok(Some(layout.data.slice(skip as usize..)));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn malformed(cid: &Cid, reason: &'static str) -> ReadError {
    ReadError::Malformed { cid: *cid, reason }
}

fn overflow(cid: &Cid) -> ReadError {
    malformed(cid, "file size overflows 64 bits")
}

fn overlaps(start: u64, len: u64, from: u64, to: u64) -> bool {
    start < to && start.saturating_add(len) > from
}

fn decode(cid: &Cid, bytes: Bytes) -> Result<Node, ReadError> {
    match cid.codec() {
        RAW => Ok(Node::Raw(bytes)),
        DAG_PB => {
            let block_len = bytes.len() as u64;
            let pb =
                PbNode::decode(&bytes).map_err(|source| ReadError::Pb { cid: *cid, source })?;
            let data = pb.data.unwrap_or_default();
            let fs = UnixFsData::decode(&data)
                .map_err(|source| ReadError::UnixFs { cid: *cid, source })?;
            Ok(Node::Pb(Arc::new(PbDecoded {
                links: pb.links,
                fs,
                block_len,
            })))
        }
        codec => Err(ReadError::UnsupportedCodec { cid: *cid, codec }),
    }
}

fn file_layout(cid: &Cid, node: &Node) -> Result<FileLayout, ReadError> {
    let pb = match node {
        Node::Raw(b) => {
            return Ok(FileLayout {
                data: b.clone(),
                children: Vec::new(),
                total: b.len() as u64,
            })
        }
        Node::Pb(pb) => pb,
    };
    if !matches!(pb.fs.kind, DataType::File | DataType::Raw) {
        return Err(ReadError::NotAFile { cid: *cid });
    }
    if pb.fs.blocksizes.len() != pb.links.len() {
        return Err(malformed(
            cid,
            "the number of blocksizes differs from the number of links",
        ));
    }
    let data = pb.fs.data.clone().unwrap_or_default();
    let mut total = data.len() as u64;
    let mut children = Vec::with_capacity(pb.links.len());
    for (link, &size) in pb.links.iter().zip(&pb.fs.blocksizes) {
        total = total.checked_add(size).ok_or_else(|| overflow(cid))?;
        children.push((link.cid, size));
    }
    if pb.fs.filesize.is_some_and(|f| f != total) {
        return Err(malformed(
            cid,
            "filesize disagrees with the node's data and blocksizes",
        ));
    }
    Ok(FileLayout {
        data,
        children,
        total,
    })
}

fn entry(dir: &Cid, link: &PbLink, name: Option<&str>) -> Result<DirEntry, ReadError> {
    let name = name.unwrap_or_default();
    if !is_safe_name(name) {
        return Err(ReadError::UnsafeName {
            dir: *dir,
            name: name.to_string(),
        });
    }
    Ok(DirEntry {
        name: name.to_string(),
        cid: link.cid,
        tsize: link.tsize,
    })
}

/// Length of the hex bucket prefix of the link names of a HAMT shard.
fn hamt_pad(cid: &Cid, fs: &UnixFsData) -> Result<usize, ReadError> {
    if fs.hash_type != Some(HAMT_MURMUR3) {
        return Err(malformed(cid, "HAMT shard does not use murmur3-x64-64"));
    }
    let fanout = fs
        .fanout
        .ok_or_else(|| malformed(cid, "HAMT shard has no fanout"))?;
    if !(2..=1 << 16).contains(&fanout) || !fanout.is_power_of_two() {
        return Err(malformed(
            cid,
            "HAMT fanout is not a power of two between 2 and 65536",
        ));
    }
    let bits = fanout.trailing_zeros() as usize;
    Ok(bits.div_ceil(4))
}

enum HamtLink<'a> {
    Shard,
    Entry(&'a str),
}

fn hamt_link<'a>(shard: &Cid, link: &'a PbLink, pad: usize) -> Result<HamtLink<'a>, ReadError> {
    let name = link.name.as_deref().unwrap_or_default();
    match name.len().cmp(&pad) {
        std::cmp::Ordering::Less => Err(malformed(
            shard,
            "HAMT link name is shorter than its bucket prefix",
        )),
        std::cmp::Ordering::Equal => Ok(HamtLink::Shard),
        std::cmp::Ordering::Greater => name
            .get(pad..)
            .map(HamtLink::Entry)
            .ok_or_else(|| malformed(shard, "HAMT link name has a bucket prefix that is not hex")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
