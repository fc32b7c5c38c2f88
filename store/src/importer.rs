//! The importer: files and directory trees into UnixFS DAGs, byte-identical to Kubo's `ipfs add`
//! and the JS `ipfs-unixfs-importer` under the same settings.
//!
//! # Files
//! Chunks (see [`ChunkerSpec`]) become leaves: raw blocks (codec 0x55, always CIDv1) with
//! `raw_leaves`, otherwise dag-pb nodes `{ Type: File, Data: chunk, filesize }`. Leaves are laid out
//! in a balanced tree of at most `max_links` children per node; parents are dag-pb
//! `{ Type: File, filesize, blocksizes }` with unnamed links (`Name: ""`) whose Tsize is the child's
//! cumulative DAG size. A one-chunk file is its leaf; an empty file is one empty leaf (with raw
//! leaves, the empty raw block). The tree is built level by level as chunks stream in, so memory
//! stays bounded by a few batches of chunks plus `max_links` links per level.
//!
//! Reading, hashing and storing overlap: a reader thread cuts chunks, hashing workers encode and
//! hash batches of them, and the calling thread assembles the tree in order and hands blocks to
//! the [`BlockSink`] in batches. The result never depends on the number of threads.
//!
//! # Directories
//! `import_path` walks a tree without following symlinks (they are stored as UnixFS symlinks).
//! Entries are added in name-byte order, depth first; hidden files are included. A directory is a
//! dag-pb `{ Type: Directory }` node with links sorted by name, or a HAMT shard (see the `hamt`
//! module) when its estimated size exceeds `hamt_shard_threshold`. The estimate is the JS
//! importer's (`links-bytes`): the sum of `name bytes + CID bytes` of its entries, where a
//! non-empty subdirectory only counts transiently (between being listed and receiving its first
//! entry). Kubo counts every link; both agree for directories without non-empty subdirectories.
//!
//! With `preserve_mode` / `preserve_mtime`, files and directories carry UnixFS 1.5 `mode`
//! (permission bits, omitted when 0644 for files / 0755 for directories) and `mtime`; symlinks
//! carry neither. As in the JS importer, a one-chunk file with metadata becomes a dag-pb File node
//! holding the chunk, and every parent node of a file carries the metadata.

mod dir;
mod file;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::block::Block;
use crate::blockstore::StoreError;
use crate::chunker::{ChunkerError, ChunkerSpec};
use crate::hash::HashAlg;
use crate::sink::BlockSink;

/// Settings of an import. [`Default`] is the JS importer's and Kubo's CIDv1 profile:
/// CIDv1, raw leaves, `size-262144`, sha2-256, 174 links per node, sharding past 256 KiB.
/// [`ImportOptions::with_cid_version`]`(0)` is Kubo's default `ipfs add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes (0 or 1). Raw leaves are always CIDv1.
    pub cid_version: u8,
    /// Store chunks as raw blocks instead of dag-pb UnixFS File leaves.
    pub raw_leaves: bool,
    /// How to cut files into chunks.
    pub chunker: ChunkerSpec,
    /// Hash function of every block (CIDv0 needs sha2-256; other functions yield CIDv1).
    pub hash: HashAlg,
    /// Most links per file node (174 in Kubo and the JS importer). At least 2.
    pub max_links: usize,
    /// A directory whose estimated node size exceeds this many bytes is HAMT-sharded.
    pub hamt_shard_threshold: usize,
    /// Record files' and directories' permission bits (UnixFS 1.5).
    pub preserve_mode: bool,
    /// Record files' and directories' modification times (UnixFS 1.5).
    pub preserve_mtime: bool,
}

/// Kubo's and the JS importer's maximum number of links per file node.
pub const DEFAULT_MAX_LINKS: usize = 174;
/// Kubo's and the JS importer's sharding threshold, in bytes of estimated directory node size.
pub const DEFAULT_HAMT_SHARD_THRESHOLD: usize = 262_144;

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cid_version: 1,
            raw_leaves: true,
            chunker: ChunkerSpec::default(),
            hash: HashAlg::Sha2_256,
            max_links: DEFAULT_MAX_LINKS,
            hamt_shard_threshold: DEFAULT_HAMT_SHARD_THRESHOLD,
            preserve_mode: false,
            preserve_mtime: false,
        }
    }
}

impl ImportOptions {
    /// Defaults for a CID version as Kubo chooses them: CIDv0 uses dag-pb leaves, CIDv1 raw leaves.
    /// Set `raw_leaves` afterwards to override.
    pub fn with_cid_version(cid_version: u8) -> Self {
        ImportOptions { cid_version, raw_leaves: cid_version >= 1, ..Default::default() }
    }

    /// Checks that the options are usable.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.cid_version > 1 {
            return Err(OptionsError::CidVersion(self.cid_version));
        }
        if self.max_links < 2 {
            return Err(OptionsError::MaxLinks(self.max_links));
        }
        self.chunker.validate()?;
        Ok(())
    }
}

/// Why import options are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Only CID versions 0 and 1 exist.
    #[error("CID version {0} is not supported (use 0 or 1)")]
    CidVersion(u8),
    /// Fewer than two links per node cannot form a tree.
    #[error("max links per node must be at least 2, got {0}")]
    MaxLinks(usize),
    /// The chunker is invalid.
    #[error(transparent)]
    Chunker(#[from] ChunkerError),
}

/// The root of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The root CID.
    pub cid: Cid,
    /// Bytes of file content under the root (0 for a symlink).
    pub size: u64,
    /// Cumulative size of the root's DAG: the sum of its blocks' sizes (the Tsize a parent records).
    pub tsize: u64,
}

/// What [`import_path`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportEvent {
    /// An entry was added, like a line of `ipfs add -r`: every file and symlink as soon as it is
    /// done (in walk order), then every directory, children before parents.
    Added {
        /// The entry's root.
        cid: Cid,
        /// Kubo-style name relative to the parent of the imported path: `"dir"`, `"dir/a.txt"`.
        path: String,
        /// Cumulative DAG size of the entry (Kubo's `Size`).
        size: u64,
    },
    /// Total bytes of file content read so far in this import.
    Progress {
        /// Bytes read.
        bytes: u64,
    },
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The path to import does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A file, directory or symlink could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading the input stream of [`import_reader`] failed.
    #[error("cannot read input: {0}")]
    Input(#[source] io::Error),
    /// A socket, FIFO or device node: UnixFS cannot store it.
    #[error("{}: cannot import a {kind}; only files, directories and symlinks can be added (remove it or add the other entries one by one)", path.display())]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// What it is ("socket", "FIFO", "device").
        kind: &'static str,
    },
    /// An entry name or symlink target is not valid UTF-8 (UnixFS names are UTF-8).
    #[error("{}: name or symlink target is not valid UTF-8; rename it to import it", path.display())]
    NonUtf8 {
        /// The entry.
        path: PathBuf,
    },
    /// The block sink failed.
    #[error("storing blocks failed: {0}")]
    Store(#[from] StoreError),
    /// The options are unusable.
    #[error("invalid import options: {0}")]
    Options(#[from] OptionsError),
}

/// Imports a byte stream as one UnixFS file. `progress` receives the total bytes read so far.
pub fn import_reader<R: Read + Send>(
    r: R,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    progress: &mut dyn FnMut(u64),
) -> Result<Imported, ImportError> {
    opts.validate()?;
    let mut out = Batcher::new(sink);
    let meta = file::FileMeta::default();
    let root = file::import_parallel(r, opts, &meta, &mut out, progress, &ImportError::Input)?;
    out.flush()?;
    Ok(root)
}

/// Imports a file, symlink or directory tree (recursively, without following symlinks).
/// Reports each entry and the progress through `events`.
pub fn import_path(
    path: &Path,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
    events: &mut dyn FnMut(ImportEvent),
) -> Result<Imported, ImportError> {
    opts.validate()?;
    let mut out = Batcher::new(sink);
    let root = dir::import_tree(path, opts, &mut out, events)?;
    out.flush()?;
    Ok(root)
}

/// Collects blocks and hands them to the sink in batches.
pub(crate) struct Batcher<'a> {
    sink: &'a dyn BlockSink,
    blocks: Vec<Block>,
    bytes: usize,
}

impl<'a> Batcher<'a> {
    const MAX_BLOCKS: usize = 32;
    const MAX_BYTES: usize = 8 << 20;

    fn new(sink: &'a dyn BlockSink) -> Self {
        Batcher { sink, blocks: Vec::with_capacity(Self::MAX_BLOCKS), bytes: 0 }
    }

    /// Queues a block, writing the batch when it is full.
    pub(crate) fn push(&mut self, block: Block) -> Result<(), StoreError> {
        self.bytes += block.data().len();
        self.blocks.push(block);
        if self.blocks.len() >= Self::MAX_BLOCKS || self.bytes >= Self::MAX_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is queued.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        if !self.blocks.is_empty() {
            self.bytes = 0;
            let batch = std::mem::replace(&mut self.blocks, Vec::with_capacity(Self::MAX_BLOCKS));
            self.sink.put_blocks(batch)?;
        }
        Ok(())
    }
}
