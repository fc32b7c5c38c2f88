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
mod update;

pub use update::{
    build_directory, build_symlink, import_file, needs_sharding, update_sharded_directory,
    DirChild, DirNode, UpdateError,
};

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
        ImportOptions {
            cid_version,
            raw_leaves: cid_version >= 1,
            ..Default::default()
        }
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
    #[error("cannot read {}", path.display())]
    Read {
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading the input stream of [`import_reader`] failed.
    #[error("cannot read input")]
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
    #[error("storing blocks failed")]
    Store(#[from] StoreError),
    /// The options are unusable.
    #[error("invalid import options")]
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
        Batcher {
            sink,
            blocks: Vec::with_capacity(Self::MAX_BLOCKS),
            bytes: 0,
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use bytes::Bytes;
    use proptest::prelude::*;

    use crate::hash::{verify, RAW};
    use crate::pb::PbNode;
    use crate::sink::NullSink;
    use crate::unixfs::{DataType, UnixFsData};

    /// Keeps every block, and counts the batches.
    #[derive(Default)]
    struct MemSink {
        blocks: Mutex<HashMap<Cid, Bytes>>,
        batches: Mutex<usize>,
    }

    impl BlockSink for MemSink {
        fn put_blocks(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
            *self.batches.lock().unwrap() += 1;
            let mut map = self.blocks.lock().unwrap();
            for b in blocks {
                verify(b.cid(), b.data()).unwrap();
                let (cid, data) = b.into_parts();
                map.insert(cid, data);
            }
            Ok(())
        }
    }

    impl MemSink {
        fn get(&self, cid: &Cid) -> Bytes {
            self.blocks
                .lock()
                .unwrap()
                .get(cid)
                .cloned()
                .unwrap_or_else(|| panic!("missing block {cid}"))
        }

        /// Reassembles a file by walking the DAG; checks filesize/blocksizes on the way.
        /// Returns the bytes and the cumulative DAG size.
        fn cat(&self, cid: &Cid, out: &mut Vec<u8>) -> u64 {
            let bytes = self.get(cid);
            if cid.codec() == RAW {
                out.extend_from_slice(&bytes);
                return bytes.len() as u64;
            }
            let node = PbNode::decode(&bytes).unwrap();
            let fs = UnixFsData::decode(node.data.as_ref().unwrap()).unwrap();
            assert_eq!(fs.kind, DataType::File);
            let start = out.len();
            if let Some(d) = &fs.data {
                out.extend_from_slice(d);
            }
            let mut tsize = bytes.len() as u64;
            assert!(node.links.is_empty() || fs.blocksizes.len() == node.links.len());
            for (i, link) in node.links.iter().enumerate() {
                assert_eq!(link.name.as_deref(), Some(""));
                let before = out.len();
                let t = self.cat(&link.cid, out);
                assert_eq!(link.tsize, Some(t));
                assert_eq!(fs.blocksizes[i], (out.len() - before) as u64);
                tsize += t;
            }
            assert_eq!(fs.filesize, Some((out.len() - start) as u64));
            tsize
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn round_trip(data: &[u8], opts: &ImportOptions) -> Imported {
        let sink = MemSink::default();
        let mut last = 0;
        let root = import_reader(data, opts, &sink, &mut |n| last = n).unwrap();
        assert_eq!(last, data.len() as u64, "progress reaches the total");
        assert_eq!(root.size, data.len() as u64);
        let mut out = Vec::new();
        let tsize = sink.cat(&root.cid, &mut out);
        assert_eq!(out, data);
        assert_eq!(tsize, root.tsize);
        let stored: u64 = sink
            .blocks
            .lock()
            .unwrap()
            .values()
            .map(|b| b.len() as u64)
            .sum();
        assert!(
            stored <= root.tsize,
            "no stray blocks beyond the DAG (dedup aside)"
        );
        root
    }

    #[test]
    fn boundary_sizes_round_trip_under_every_layout() {
        let c = 1024;
        for opts in [
            ImportOptions {
                chunker: ChunkerSpec::Fixed(c),
                max_links: 3,
                ..Default::default()
            },
            ImportOptions {
                chunker: ChunkerSpec::Fixed(c),
                max_links: 3,
                ..ImportOptions::with_cid_version(0)
            },
            ImportOptions {
                chunker: ChunkerSpec::Fixed(c),
                max_links: 174,
                raw_leaves: true,
                ..ImportOptions::with_cid_version(0)
            },
            ImportOptions {
                chunker: ChunkerSpec::FastCdc {
                    min: 256,
                    avg: 1024,
                    max: 4096,
                },
                max_links: 4,
                ..Default::default()
            },
        ] {
            for len in [
                0,
                1,
                c - 1,
                c,
                c + 1,
                3 * c,
                3 * c + 1,
                9 * c,
                9 * c + 1,
                40 * c + 17,
            ] {
                round_trip(&pseudo_random(len, len as u64), &opts);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn bytes_to_dag_to_bytes(
            len in 0usize..200_000,
            seed in any::<u64>(),
            chunk in 1usize..5000,
            max_links in 2usize..12,
            v0 in any::<bool>(),
            raw in any::<bool>(),
            cdc in any::<bool>(),
        ) {
            let chunker = if cdc {
                ChunkerSpec::FastCdc { min: 64, avg: 256 + chunk, max: 1024 + 4 * chunk }
            } else {
                ChunkerSpec::Fixed(chunk)
            };
            let opts = ImportOptions { chunker, max_links, raw_leaves: raw, ..ImportOptions::with_cid_version(u8::from(!v0)) };
            round_trip(&pseudo_random(len, seed), &opts);
        }
    }

    #[test]
    fn parallel_and_serial_paths_agree() {
        let data = pseudo_random(5 << 20, 7);
        for opts in [
            ImportOptions {
                chunker: ChunkerSpec::Fixed(4096),
                ..Default::default()
            },
            ImportOptions {
                chunker: ChunkerSpec::Fixed(8192),
                ..ImportOptions::with_cid_version(0)
            },
        ] {
            let sink = MemSink::default();
            let mut out = Batcher::new(&sink);
            let meta = file::FileMeta::default();
            let serial = file::import_serial(
                &data[..],
                &opts,
                &meta,
                &mut out,
                &mut |_| {},
                &ImportError::Input,
            )
            .unwrap();
            let parallel = import_reader(&data[..], &opts, &NullSink, &mut |_| {}).unwrap();
            assert_eq!(serial, parallel);
        }
    }

    #[test]
    fn blocks_reach_the_sink_in_batches() {
        let sink = MemSink::default();
        let data = pseudo_random(4 << 20, 1);
        let opts = ImportOptions {
            chunker: ChunkerSpec::Fixed(16 << 10),
            ..Default::default()
        };
        import_reader(&data[..], &opts, &sink, &mut |_| {}).unwrap();
        let blocks = sink.blocks.lock().unwrap().len();
        let batches = *sink.batches.lock().unwrap();
        assert!(
            blocks >= 256 && batches * 16 <= blocks,
            "{blocks} blocks in {batches} batches"
        );
    }

    #[test]
    fn a_failing_sink_or_reader_stops_the_import() {
        struct Failing;
        impl BlockSink for Failing {
            fn put_blocks(&self, _: Vec<Block>) -> Result<(), StoreError> {
                Err(StoreError::Internal("disk full"))
            }
        }
        let data = pseudo_random(8 << 20, 3);
        let err =
            import_reader(&data[..], &ImportOptions::default(), &Failing, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImportError::Store(_)), "{err}");

        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 > 3 << 20 {
                    return Err(io::Error::other("cable unplugged"));
                }
                self.0 += buf.len();
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let err = import_reader(Broken(0), &ImportOptions::default(), &NullSink, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, ImportError::Input(_)), "{err}");
    }

    #[test]
    fn options_are_validated() {
        let bad = ImportOptions {
            max_links: 1,
            ..Default::default()
        };
        assert!(matches!(
            import_reader(&b"x"[..], &bad, &NullSink, &mut |_| {}),
            Err(ImportError::Options(_))
        ));
        let bad = ImportOptions {
            cid_version: 2,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert!(!ImportOptions::with_cid_version(0).raw_leaves);
        assert!(ImportOptions::with_cid_version(1).raw_leaves);
    }

    /// Shared leaves between two imports, as a fraction of the second import's leaves.
    fn shared_leaf_fraction(a: &[u8], b: &[u8], chunker: ChunkerSpec) -> f64 {
        let opts = ImportOptions {
            chunker,
            ..Default::default()
        };
        let leaves = |data: &[u8]| -> Vec<Cid> {
            let sink = MemSink::default();
            import_reader(data, &opts, &sink, &mut |_| {}).unwrap();
            let map = sink.blocks.lock().unwrap();
            map.keys().filter(|c| c.codec() == RAW).copied().collect()
        };
        let la: HashSet<Cid> = leaves(a).into_iter().collect();
        let lb = leaves(b);
        lb.iter().filter(|c| la.contains(c)).count() as f64 / lb.len() as f64
    }

    #[test]
    fn fastcdc_keeps_most_blocks_after_an_edit_in_the_middle() {
        let original = pseudo_random(20 << 20, 99);
        let mut edited = original.clone();
        let mid = edited.len() / 2;
        edited.splice(mid..mid, *b"inserted!");
        edited[mid / 2] ^= 0xff;
        let cdc = shared_leaf_fraction(
            &original,
            &edited,
            ChunkerSpec::FastCdc {
                min: 65_536,
                avg: 262_144,
                max: 1 << 20,
            },
        );
        let fixed = shared_leaf_fraction(&original, &edited, ChunkerSpec::default());
        eprintln!("after a 9-byte insertion and a 1-byte change: fastcdc shares {:.1}% of leaves, size-262144 {:.1}%", cdc * 100.0, fixed * 100.0);
        assert!(cdc > 0.9, "fastcdc shared only {cdc}");
        assert!(
            fixed < cdc,
            "fixed-size ({fixed}) should do worse than fastcdc ({cdc})"
        );
    }

    #[cfg(unix)]
    #[test]
    fn trees_report_entries_and_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        std::fs::create_dir_all(root.join("sub/empty")).unwrap();
        std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join(".hidden"), b"h").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("ln")).unwrap();
        let mut added = Vec::new();
        let imported = import_path(&root, &ImportOptions::default(), &NullSink, &mut |ev| {
            if let ImportEvent::Added { path, .. } = ev {
                added.push(path);
            }
        })
        .unwrap();
        assert_eq!(
            added,
            [
                "d/.hidden",
                "d/a.txt",
                "d/ln",
                "d/sub/b.txt",
                "d/sub/empty",
                "d/sub",
                "d"
            ]
        );
        assert_eq!(imported.size, 3);

        let missing = import_path(
            &tmp.path().join("nope"),
            &ImportOptions::default(),
            &NullSink,
            &mut |_| {},
        );
        assert!(matches!(missing, Err(ImportError::NotFound { .. })));

        let sock_path = root.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let err =
            import_path(&root, &ImportOptions::default(), &NullSink, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, ImportError::Unsupported { kind: "socket", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("sock"), "{err}");
        std::fs::remove_file(&sock_path).unwrap();

        use std::os::unix::ffi::OsStrExt;
        let bad = root.join(std::ffi::OsStr::from_bytes(b"bad-\xff"));
        if std::fs::write(&bad, b"x").is_ok() {
            let err =
                import_path(&root, &ImportOptions::default(), &NullSink, &mut |_| {}).unwrap_err();
            assert!(matches!(err, ImportError::NonUtf8 { .. }), "{err}");
        }
    }

    #[test]
    fn metadata_is_recorded_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let sink = MemSink::default();
        let opts = ImportOptions {
            preserve_mode: true,
            preserve_mtime: true,
            ..Default::default()
        };
        let root = import_path(&f, &opts, &sink, &mut |_| {}).unwrap();
        assert_eq!(
            root.cid.codec(),
            crate::hash::DAG_PB,
            "a single chunk with metadata is wrapped"
        );
        let node = PbNode::decode(&sink.get(&root.cid)).unwrap();
        let fs = UnixFsData::decode(node.data.as_ref().unwrap()).unwrap();
        assert_eq!(fs.data.as_deref(), Some(&b"hello"[..]));
        #[cfg(unix)]
        assert_eq!(fs.mode, Some(0o600));
        assert!(fs.mtime.is_some_and(|t| t.seconds > 1_600_000_000));
    }

    /// Prints import throughput next to single-threaded sha2-256 over the same bytes.
    /// `cargo test -p cairn-store --release throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "prints throughput figures; run in release mode"]
    fn throughput() {
        use std::time::Instant;
        let data = pseudo_random(256 << 20, 5);
        let mb = data.len() as f64 / 1e6;
        let t = Instant::now();
        let _ = crate::hash::HashAlg::Sha2_256.digest(&data);
        let sha = mb / t.elapsed().as_secs_f64();
        eprintln!("reference: sha2-256 on one thread {sha:.0} MB/s");

        let t = Instant::now();
        import_reader(&data[..], &ImportOptions::default(), &NullSink, &mut |_| {}).unwrap();
        let r = mb / t.elapsed().as_secs_f64();
        eprintln!(
            "import_reader(memory) -> NullSink {r:.0} MB/s ({:.2}x sha2)",
            r / sha
        );

        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("big.bin");
        std::fs::write(&file, &data).unwrap();
        for (label, opts) in [
            ("CIDv1 raw leaves", ImportOptions::default()),
            ("CIDv0 dag-pb leaves", ImportOptions::with_cid_version(0)),
        ] {
            let t = Instant::now();
            import_path(&file, &opts, &NullSink, &mut |_| {}).unwrap();
            let r = mb / t.elapsed().as_secs_f64();
            eprintln!(
                "import_path(file, {label}) -> NullSink {r:.0} MB/s ({:.2}x sha2)",
                r / sha
            );

            let store = std::sync::Arc::new(
                crate::sled_store::SledStore::open(&tmp.path().join(label), Default::default())
                    .unwrap(),
            );
            let sink = crate::sink::StoreSink(store.clone());
            let t = Instant::now();
            import_path(&file, &opts, &sink, &mut |_| {}).unwrap();
            crate::blockstore::Blockstore::flush(&*store).unwrap();
            let r = mb / t.elapsed().as_secs_f64();
            eprintln!(
                "import_path(file, {label}) -> SledStore (+flush) {r:.0} MB/s ({:.2}x sha2)",
                r / sha
            );
        }
    }
}
