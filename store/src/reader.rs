//! Reading UnixFS DAGs through a [`BlockSource`]: stat, ranged reads, sequential cursors,
//! streamed directory listings (plain and HAMT-sharded, [`DirCursor`]), name lookups and path
//! resolution.
//!
//! Everything read from a DAG is treated as hostile: entry names are validated
//! ([`is_safe_name`], [`MAX_NAME_LEN`]), size arithmetic is checked, nesting is bounded by
//! [`MAX_DEPTH`], and a node whose `blocksizes` disagree with its links or with its children is
//! [`ReadError::Malformed`]. Listings stream one entry at a time, so memory does not grow with
//! the size of a directory; a HAMT that is not laid out as a HAMT (a shard reached twice,
//! entries in slots their hash does not give, bitfield and links that disagree) is refused
//! rather than expanded (see `reader/dir.rs`), and no directory yields more than
//! [`MAX_DIR_ENTRIES`]. Every error names the CID it is about.
//!
//! A file node contributes its own `Data` bytes first, then its children in link order; a
//! child's byte range comes from the parent's `blocksizes`, so reads fetch only the nodes that
//! cover the requested range.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use cid::Cid;

use crate::hamt;
use crate::hash::{DAG_PB, RAW};
use crate::pb::{PbError, PbLink, PbNode};
use crate::source::{BlockSource, GetError};
use crate::unixfs::{DataType, UnixFsData, UnixFsError, UnixTime};

mod dir;

pub use dir::DirCursor;

/// How many levels of nodes below a root the reader follows before giving up: the depth of a
/// file's tree, and of the shards of one HAMT directory.
pub const MAX_DEPTH: usize = 64;

/// The most entries one directory may have; listing one with more fails with
/// [`ReadError::TooManyEntries`]. A listing streams, so this bounds time, not memory; a valid
/// HAMT with this many entries is about 700 MB of shard blocks.
pub const MAX_DIR_ENTRIES: u64 = 1 << 24;

/// The longest entry name accepted, in bytes (FUSE's own limit; Linux file names stop at 255).
pub const MAX_NAME_LEN: usize = 1024;

/// How many directories deep a path below a root may go, for those who materialise paths
/// (`cairn get`, a mount); deeper trees are refused (longer paths than this do not fit in
/// Linux's 4096-byte `PATH_MAX` anyway unless names are very short).
pub const MAX_DIR_DEPTH: usize = 256;

/// The hash function code of UnixFS HAMT shards (murmur3-x64-64).
const HAMT_MURMUR3: u64 = 0x22;

/// Bytes of decoded nodes a reader's node cache holds at most (an estimate of their heap size).
const NODE_CACHE_BYTES: usize = 32 << 20;

/// Plain directories with more links than this get a name index on their first lookup.
const INDEX_LINKS: usize = 64;

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
    /// Links of the node's root block: for a plain directory its entries, for a HAMT its
    /// occupied top-level slots (0 means an empty directory either way).
    pub links: usize,
}

impl NodeInfo {
    /// A raw block as a file of `size` bytes (the size its link gives), known without a fetch.
    pub fn raw_file(cid: Cid, size: u64) -> NodeInfo {
        NodeInfo {
            cid,
            kind: EntryKind::File,
            size,
            mode: None,
            mtime: None,
            symlink_target: None,
            is_sharded: false,
            links: 0,
        }
    }
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

/// A leaf of a file: its CID, where its bytes start in the file, and how many there are.
pub type Leaf = (Cid, u64, u64);

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
    /// A HAMT directory reaches one of its shards twice: a valid HAMT never does, and
    /// following it would list the same entries over and over.
    #[error(
        "HAMT directory {dir} reaches its shard {shard} more than once; refusing a directory that repeats its own shards"
    )]
    RepeatedShard {
        /// The directory (its root shard).
        dir: Cid,
        /// The shard met again (boxed: two CIDs would make every `ReadError` large).
        shard: Box<Cid>,
    },
    /// A directory has more than [`MAX_DIR_ENTRIES`] entries.
    #[error("directory {dir} has more than {max} entries; refusing to list it")]
    TooManyEntries {
        /// The directory.
        dir: Cid,
        /// The limit.
        max: u64,
    },
    /// An entry name is longer than [`MAX_NAME_LEN`].
    #[error("directory {dir} has an entry name of {len} bytes, over the {max}-byte limit")]
    NameTooLong {
        /// The directory holding the entry.
        dir: Cid,
        /// The name's length in bytes.
        len: usize,
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
            ReadError::UnsafeName { dir, .. }
            | ReadError::NotFound { dir, .. }
            | ReadError::RepeatedShard { dir, .. }
            | ReadError::TooManyEntries { dir, .. }
            | ReadError::NameTooLong { dir, .. } => Some(dir),
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
    /// Name -> link index, built on the first lookup in a big plain directory.
    index: OnceLock<HashMap<Box<str>, usize>>,
}

impl PbDecoded {
    /// A rough size of the decoded node on the heap (with the name index it may get).
    fn cost(&self) -> usize {
        let names: usize = self
            .links
            .iter()
            .map(|l| l.name.as_ref().map_or(0, String::len))
            .sum();
        let per_link = std::mem::size_of::<PbLink>();
        let indexed = if self.links.len() > INDEX_LINKS { 2 } else { 1 };
        std::mem::size_of::<Self>()
            + self.block_len as usize
            + self.links.len() * per_link
            + names * indexed
            + self.links.len() * (indexed - 1) * 32
    }

    /// The link named `name` of a plain directory.
    fn find_link(&self, name: &str) -> Option<&PbLink> {
        if self.links.len() <= INDEX_LINKS {
            return self.links.iter().find(|l| l.name.as_deref() == Some(name));
        }
        let index = self.index.get_or_init(|| {
            let mut m = HashMap::with_capacity(self.links.len());
            for (i, l) in self.links.iter().enumerate() {
                // The first link of a name wins, as in a linear search.
                m.entry(l.name.clone().unwrap_or_default().into_boxed_str())
                    .or_insert(i);
            }
            m
        });
        index.get(name).and_then(|&i| self.links.get(i))
    }
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
///
/// Two generations, an approximate LRU: new nodes go into the current one; when it is full (half
/// the node count, or half of [`NODE_CACHE_BYTES`]) it becomes the previous one and the old
/// previous one is dropped; a hit in the previous generation moves the node back into the
/// current one. So nodes in use (a HAMT's root and upper shards during a `find`, a big file's
/// upper levels) survive however many others pass through, and memory stays within the bound.
#[derive(Debug)]
struct NodeCache {
    map: Mutex<CacheMap>,
    /// Nodes per generation.
    capacity: usize,
}

#[derive(Debug, Default)]
struct CacheMap {
    current: HashMap<Cid, (Arc<PbDecoded>, usize)>,
    previous: HashMap<Cid, (Arc<PbDecoded>, usize)>,
    /// Cost of the current generation.
    bytes: usize,
}

impl CacheMap {
    fn get(&mut self, cid: &Cid, capacity: usize) -> Option<Arc<PbDecoded>> {
        if let Some((n, _)) = self.current.get(cid) {
            return Some(n.clone());
        }
        let (n, cost) = self.previous.remove(cid)?;
        self.insert(*cid, n.clone(), cost, capacity);
        Some(n)
    }

    fn insert(&mut self, cid: Cid, node: Arc<PbDecoded>, cost: usize, capacity: usize) {
        if self.current.len() >= capacity || self.bytes + cost > NODE_CACHE_BYTES / 2 {
            self.previous = std::mem::take(&mut self.current);
            self.bytes = 0;
        }
        if self.current.insert(cid, (node, cost)).is_none() {
            self.bytes += cost;
        }
    }
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
            map: Mutex::new(CacheMap::default()),
            capacity: (nodes / 2).max(1),
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
        if let Some(n) = self.cached(cid) {
            return Ok(Node::Pb(n));
        }
        let bytes = self.source.get(cid).await?;
        let node = decode(cid, bytes)?;
        if let (Some(cache), Node::Pb(pb)) = (&self.cache, &node) {
            let cost = pb.cost();
            if !pb.links.is_empty() && cost <= NODE_CACHE_BYTES / 8 {
                lock(&cache.map).insert(*cid, pb.clone(), cost, cache.capacity);
            }
        }
        Ok(node)
    }

    /// A decoded node from the cache, if it is there.
    fn cached(&self, cid: &Cid) -> Option<Arc<PbDecoded>> {
        let cache = self.cache.as_ref()?;
        lock(&cache.map).get(cid, cache.capacity)
    }

    /// A node from the cache or, if the source has it at hand ([`BlockSource::get_now`]),
    /// from the source; `None` if getting it would mean waiting.
    fn fetch_now(&self, cid: &Cid) -> Option<Result<Node, ReadError>> {
        if let Some(n) = self.cached(cid) {
            return Some(Ok(Node::Pb(n)));
        }
        let bytes = self.source.get_now(cid)?;
        let node = match decode(cid, bytes) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if let (Some(cache), Node::Pb(pb)) = (&self.cache, &node) {
            let cost = pb.cost();
            if !pb.links.is_empty() && cost <= NODE_CACHE_BYTES / 8 {
                lock(&cache.map).insert(*cid, pb.clone(), cost, cache.capacity);
            }
        }
        Some(Ok(node))
    }

    /// The kind, size and metadata of `cid`.
    pub async fn stat(&self, cid: &Cid) -> Result<NodeInfo, ReadError> {
        let node = self.fetch(cid).await?;
        node_info(cid, &node)
    }

    /// [`DagReader::stat`] without waiting: `None` if the node is neither cached nor at hand
    /// in the source (see [`BlockSource::get_now`]).
    pub fn stat_now(&self, cid: &Cid) -> Option<Result<NodeInfo, ReadError>> {
        Some(self.fetch_now(cid)?.and_then(|node| node_info(cid, &node)))
    }
}

/// The metadata of a fetched node.
fn node_info(cid: &Cid, node: &Node) -> Result<NodeInfo, ReadError> {
    let mut info = NodeInfo {
        cid: *cid,
        kind: EntryKind::File,
        size: 0,
        mode: None,
        mtime: None,
        symlink_target: None,
        is_sharded: false,
        links: 0,
    };
    let pb = match node {
        Node::Raw(b) => {
            info.size = b.len() as u64;
            return Ok(info);
        }
        Node::Pb(pb) => pb,
    };
    info.mode = pb.fs.mode;
    info.mtime = pb.fs.mtime;
    info.links = pb.links.len();
    match pb.fs.kind {
        DataType::File | DataType::Raw => info.size = file_layout(cid, node)?.total,
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

impl<S: BlockSource> DagReader<S> {
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

    /// [`DagReader::leaves`] without waiting: from cached nodes and nodes the source has at
    /// hand ([`BlockSource::get_now`]). `None` if a node it needs is neither (ask `leaves`).
    pub fn leaves_now(
        &self,
        root: &Cid,
        offset: u64,
        len: u64,
    ) -> Option<Result<Vec<Leaf>, ReadError>> {
        let (from, to) = (offset, offset.saturating_add(len));
        let mut out = Vec::new();
        if len == 0 {
            return Some(Ok(out));
        }
        let mut stack: Vec<(Cid, u64, Option<u64>, usize)> = vec![(*root, 0, None, 0)];
        while let Some((cid, start, expected, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Some(Err(ReadError::TooDeep {
                    cid,
                    max: MAX_DEPTH,
                }));
            }
            if let (RAW, Some(len)) = (cid.codec(), expected) {
                out.push((cid, start, len));
                continue;
            }
            let node = match self.fetch_now(&cid)? {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            let layout = match file_layout(&cid, &node) {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            if expected.is_some_and(|e| e != layout.total) {
                return Some(Err(malformed(
                    &cid,
                    "size disagrees with the parent's blocksizes",
                )));
            }
            let data_len = layout.data.len() as u64;
            if data_len > 0 && overlaps(start, data_len, from, to) {
                out.push((cid, start, data_len));
            }
            let mut child_start = start.checked_add(data_len)?;
            let mut covering = Vec::new();
            for (child, size) in layout.children {
                if size > 0 && overlaps(child_start, size, from, to) {
                    covering.push((child, child_start, Some(size), depth + 1));
                }
                child_start = child_start.checked_add(size)?;
                if child_start >= to {
                    break;
                }
            }
            stack.extend(covering.into_iter().rev());
        }
        Some(Ok(out))
    }

    /// A streamed listing of directory `cid`, in stored order (for a HAMT: depth-first, link
    /// order). Nothing is fetched until the first [`DirCursor::next_entry`].
    pub fn dir_cursor(&self, cid: &Cid) -> DirCursor<S>
    where
        S: Clone,
    {
        DirCursor::new(self.clone(), *cid)
    }

    /// Every entry of directory `cid`, in stored order. This holds the whole listing in
    /// memory: for directories that may be big, stream them with [`DagReader::dir_cursor`].
    pub async fn read_dir(&self, cid: &Cid) -> Result<Vec<DirEntry>, ReadError>
    where
        S: Clone,
    {
        let mut cursor = self.dir_cursor(cid);
        let mut out = Vec::new();
        while let Some(e) = cursor.next_entry().await? {
            out.push(e);
        }
        Ok(out)
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
        Ok(self.lookup_entry(dir, name).await?.map(|e| e.cid))
    }

    /// Like [`DagReader::lookup`], with the link's cumulative size.
    pub async fn lookup_entry(&self, dir: &Cid, name: &str) -> Result<Option<DirEntry>, ReadError> {
        if !is_safe_name(name) || name.len() > MAX_NAME_LEN {
            return Ok(None);
        }
        let node = self.fetch(dir).await?;
        let Node::Pb(pb) = node else {
            return Err(ReadError::NotADirectory { cid: *dir });
        };
        match pb.fs.kind {
            DataType::Directory => Ok(pb.find_link(name).map(|l| DirEntry {
                name: name.to_string(),
                cid: l.cid,
                tsize: l.tsize,
            })),
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
        node: Arc<PbDecoded>,
        name: &str,
    ) -> Result<Option<DirEntry>, ReadError> {
        let mut walk = HamtLookup::new(root, node, name)?;
        loop {
            match walk.step()? {
                Step::Done(found) => return Ok(found),
                Step::Descend(child) => {
                    let node = self.shard(&child).await?;
                    walk.enter(child, node)?;
                }
            }
        }
    }

    /// [`DagReader::lookup_entry`] without waiting: from cached nodes and nodes the source has
    /// at hand ([`BlockSource::get_now`]: small local blocks, never peers). `None` if a node it
    /// needs is neither (ask `lookup_entry`). For callers that must answer at once, such as a
    /// FUSE thread.
    pub fn lookup_entry_now(
        &self,
        dir: &Cid,
        name: &str,
    ) -> Option<Result<Option<DirEntry>, ReadError>> {
        if !is_safe_name(name) || name.len() > MAX_NAME_LEN {
            return Some(Ok(None));
        }
        let at_hand = |cid: &Cid| match self.fetch_now(cid)? {
            Ok(Node::Pb(pb)) => Some(Ok(pb)),
            Ok(Node::Raw(_)) => Some(Err(ReadError::NotADirectory { cid: *cid })),
            Err(e) => Some(Err(e)),
        };
        let node = match at_hand(dir)? {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        match node.fs.kind {
            DataType::Directory => Some(Ok(node.find_link(name).map(|l| DirEntry {
                name: name.to_string(),
                cid: l.cid,
                tsize: l.tsize,
            }))),
            DataType::HamtShard => {
                let mut walk = match HamtLookup::new(dir, node, name) {
                    Ok(w) => w,
                    Err(e) => return Some(Err(e)),
                };
                loop {
                    match walk.step() {
                        Ok(Step::Done(found)) => return Some(Ok(found)),
                        Ok(Step::Descend(child)) => {
                            let node = match at_hand(&child)? {
                                Ok(n) => n,
                                Err(_) => return None,
                            };
                            if node.fs.kind != DataType::HamtShard {
                                return Some(Err(malformed(
                                    &child,
                                    "a HAMT shard links to a child shard that is not a HAMTShard node",
                                )));
                            }
                            if let Err(e) = walk.enter(child, node) {
                                return Some(Err(e));
                            }
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
            _ => Some(Err(ReadError::NotADirectory { cid: *dir })),
        }
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

/// A name's way down a HAMT (see `crate::hamt`): at each depth the slot is the next
/// `log2(fanout)` bits of the name's hash (hashed once); the link in that slot is either the
/// entry (label + name) or a sub-shard (label alone). One node per level.
struct HamtLookup<'a> {
    name: &'a str,
    hash: hamt::HashStream<'a>,
    fanout: u64,
    bits: u32,
    max: usize,
    depth: usize,
    node: Arc<PbDecoded>,
}

enum Step {
    Done(Option<DirEntry>),
    Descend(Cid),
}

impl<'a> HamtLookup<'a> {
    fn new(root: &Cid, node: Arc<PbDecoded>, name: &'a str) -> Result<Self, ReadError> {
        hamt_pad(root, &node.fs)?;
        let fanout = node.fs.fanout.unwrap_or_default();
        let bits = hamt::fanout_bits(fanout)
            .ok_or_else(|| malformed(root, "HAMT fanout is not a power of two"))?;
        Ok(HamtLookup {
            name,
            hash: hamt::HashStream::new(name.as_bytes()),
            fanout,
            bits,
            max: hamt::max_shard_depth(bits).min(MAX_DEPTH),
            depth: 0,
            node,
        })
    }

    fn step(&mut self) -> Result<Step, ReadError> {
        let slot = self.hash.slot(self.depth, self.bits);
        Ok(match slot_link(&self.node, self.fanout, slot) {
            None => Step::Done(None),
            Some((link, "")) => Step::Descend(link.cid),
            Some((link, rest)) => Step::Done((rest == self.name).then(|| DirEntry {
                name: self.name.to_string(),
                cid: link.cid,
                tsize: link.tsize,
            })),
        })
    }

    fn enter(&mut self, child: Cid, node: Arc<PbDecoded>) -> Result<(), ReadError> {
        self.depth += 1;
        if self.depth > self.max {
            return Err(malformed(
                &child,
                "HAMT shards nest deeper than the hash of a name allows",
            ));
        }
        hamt_pad(&child, &node.fs)?;
        if node.fs.fanout != Some(self.fanout) {
            return Err(malformed(
                &child,
                "HAMT shard fanout differs from its root's",
            ));
        }
        self.node = node;
        Ok(())
    }
}

/// The link in `slot` of a shard, and the entry name after its label (empty: a sub-shard).
/// The bitfield says whether the slot is taken and, counting the slots before it, which link
/// holds it; a shard whose links are not in slot order is searched link by link.
fn slot_link(node: &PbDecoded, fanout: u64, slot: usize) -> Option<(&PbLink, &str)> {
    fn label(l: &PbLink, fanout: u64, slot: usize) -> Option<&str> {
        let (s, rest) = hamt::split_link_name(l.name.as_deref().unwrap_or_default(), fanout)?;
        (s == slot).then_some(rest)
    }
    let bitfield = node.fs.data.as_deref().unwrap_or_default();
    if !hamt::bitfield_has(bitfield, slot) {
        return None;
    }
    if let Some(link) = node.links.get(hamt::ones_before(bitfield, slot)) {
        if let Some(rest) = label(link, fanout, slot) {
            return Some((link, rest));
        }
    }
    node.links
        .iter()
        .find_map(|l| label(l, fanout, slot).map(|rest| (l, rest)))
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
                index: OnceLock::new(),
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
    if name.len() > MAX_NAME_LEN {
        return Err(ReadError::NameTooLong {
            dir: *dir,
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
