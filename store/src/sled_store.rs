//! [`SledStore`]: the on-disk blockstore — block files are the truth, sled is their index.
//!
//! Blocks are keyed by their **multihash** alone (as Kubo does), so a CIDv0 and a CIDv1-dag-pb
//! of the same bytes, or a raw and a dag-pb CID of the same bytes, are one stored block. The
//! codec of the first CID a block was stored under is kept in its index entry and is what
//! [`Blockstore::cids`] reports (always as CIDv1); lookups take the codec from the CID asked for.
//!
//! Where the bytes live:
//! - blocks larger than [`StoreOptions::inline_max`] are plain files
//!   `files/<last digest byte, 2 hex>/<multihash hex>`;
//! - smaller ones are records appended to pack files `packs/<seq>.pack` (see `pack.rs`), with a
//!   tombstone record appended when one is deleted.
//!
//! Either way every block can be found again without sled: [`SledStore::rebuild`] (`cairn repo
//! repair`) scans the files and replays the packs, verifying every block, and writes a new
//! index. The sled tree `blocks` holds, with one-byte prefixes:
//!
//! | key                  | value                                                       |
//! |----------------------|-------------------------------------------------------------|
//! | `i` ++ multihash     | index entry: size (u64 LE), location (1 file, 2 pack), codec (uvarint), for packs: pack (u32 LE), data offset (u64 LE) |
//! | `m:stats`            | blocks (u64 LE), bytes (u64 LE), file bytes (u64 LE)         |
//! | `m:format`           | `1`: this index was built by this code (absent: new or lost) |
//!
//! Order of writes (crash argument, see `docs/DESIGN.md`): block bytes (file or pack append)
//! before the sled batch that indexes them; tombstones before the batch that unindexes; the
//! unindexing batch flushed before a file is unlinked. So a killed process leaves at worst
//! bytes that no index entry points at (GC removes them, repair indexes them), never an index
//! entry without its bytes. [`Blockstore::flush`] makes the files durable (`syncfs`) before sled.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use cid::Cid;

use crate::block::Block;
use crate::blockstore::{Blockstore, IndexError, IndexProblem, StoreError, StoreStats};
use crate::fault::crash_point;
use crate::pack::{self, Record, KIND_BLOCK, KIND_TOMBSTONE, PACK_MAGIC, PACK_TARGET};
use crate::space::Guard;
use crate::varint;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Multihash code of the identity "hash": the digest is the data itself.
const IDENTITY: u64 = 0x00;
const STATS_KEY: &[u8] = b"m:stats";
const FORMAT_KEY: &[u8] = b"m:format";
const FORMAT: &[u8] = b"1";
/// Index entries of an older layout: the bytes are in sled under `d` ++ multihash.
const INLINE: u8 = 0;
const FILE: u8 = 1;
const PACK: u8 = 2;

/// Tuning of a [`SledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    /// Blocks larger than this are stored as files; smaller ones in pack files.
    pub inline_max: usize,
    /// Free space that writes must leave on the disk: `None` automatic (see `space.rs`),
    /// `Some(0)` no guard.
    pub reserve: Option<u64>,
    /// A pack file is closed, and a new one started, once it holds this many bytes.
    pub pack_target: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            inline_max: 16 * 1024,
            reserve: None,
            pack_target: PACK_TARGET,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    blocks: u64,
    bytes: u64,
    file_bytes: u64,
}

impl Counters {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.blocks.to_le_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        out[16..].copy_from_slice(&self.file_bytes.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Counters {
        let word = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map_or(0, u64::from_le_bytes)
        };
        Counters {
            blocks: word(0),
            bytes: word(1),
            file_bytes: word(2),
        }
    }
}

/// Where a block's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Older layout: inside sled (migrated to a pack when the store opens).
    Inline,
    /// A file of its own.
    File,
    /// In pack `pack` at byte `offset`.
    Pack { pack: u32, offset: u64 },
}

/// An index entry: where a block is and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: u64,
    pub loc: Loc,
    pub codec: u64,
}

impl Entry {
    /// This entry with its bytes at `offset` in pack `pack`.
    fn in_pack(self, pack: u32, offset: u64) -> Entry {
        Entry {
            loc: Loc::Pack { pack, offset },
            ..self
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.push(match self.loc {
            Loc::Inline => INLINE,
            Loc::File => FILE,
            Loc::Pack { .. } => PACK,
        });
        varint::put_uvarint(&mut v, self.codec);
        if let Loc::Pack { pack, offset } = self.loc {
            v.extend_from_slice(&pack.to_le_bytes());
            v.extend_from_slice(&offset.to_le_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let size = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let tag = *b.get(8)?;
        let (codec, n) = varint::read_uvarint(b.get(9..)?)?;
        let rest = b.get(9 + n..)?;
        let loc = match tag {
            INLINE => Loc::Inline,
            FILE => Loc::File,
            PACK => Loc::Pack {
                pack: u32::from_le_bytes(rest.get(..4)?.try_into().ok()?),
                offset: u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?),
            },
            _ => return None,
        };
        Some(Entry { size, loc, codec })
    }
}

/// The key a block is stored under: its multihash bytes.
pub(crate) fn block_key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(prefix);
    k.extend_from_slice(key);
    k
}

pub(crate) fn db_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(source) if crate::blockstore::is_enospc(&source) => StoreError::DiskFull {
            op: "write",
            path: PathBuf::from("the block index (blocks/db)"),
        },
        e => StoreError::Index(IndexError(e)),
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    if crate::blockstore::is_enospc(&source) {
        return StoreError::DiskFull {
            op,
            path: path.to_path_buf(),
        };
    }
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Creates `dir` (and parents) private to this user.
pub(crate) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create", dir, e))
}

/// The pack being appended to.
#[derive(Debug)]
struct OpenPack {
    seq: u32,
    file: fs::File,
    len: u64,
}

/// Writer state, behind one mutex: counters, the open pack and the pack sizes.
#[derive(Debug)]
struct Writer {
    counters: Counters,
    pack: Option<OpenPack>,
    /// Bytes of every pack file (for `stats` and compaction).
    pack_sizes: HashMap<u32, u64>,
}

/// What [`SledStore::rebuild`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Blocks indexed from pack files.
    pub pack_blocks: u64,
    /// Blocks indexed from block files.
    pub file_blocks: u64,
    /// Bytes of all indexed blocks.
    pub bytes: u64,
    /// Pack records dropped because a later tombstone deleted them.
    pub tombstoned: u64,
    /// Damaged stretches of pack files skipped, and torn pack tails.
    pub damaged_records: u64,
    /// Blocks whose bytes do not match their CID (moved to `blocks/quarantine/`).
    pub corrupt: Vec<String>,
    /// Pack files read.
    pub packs: u64,
    /// Where the old index was moved to (removed once the new one is complete).
    pub old_index: Option<String>,
}

/// Blocks found on disk by a census (no index involved).
#[derive(Debug, Default)]
pub(crate) struct Census {
    /// Multihash keys of live pack records, with the CID they were written under.
    pub packed: HashMap<Vec<u8>, Cid>,
    /// Multihash keys of block files.
    pub files: HashSet<Vec<u8>>,
    /// Damaged stretches met.
    pub damaged: u64,
}

impl Census {
    /// Every key on disk.
    pub(crate) fn len(&self) -> u64 {
        self.files.len() as u64
            + self
                .packed
                .keys()
                .filter(|k| !self.files.contains(*k))
                .count() as u64
    }
}

/// The sled-indexed blockstore. Cheap to share behind an `Arc`; all writes go through one
/// mutex so that the counters stay exact.
pub struct SledStore {
    db: sled::Db,
    blocks: sled::Tree,
    dir: PathBuf,
    files: PathBuf,
    packs: PathBuf,
    opts: StoreOptions,
    guard: Guard,
    /// Serialises writers; guards the counters, the open pack and the file directory.
    write: Mutex<Writer>,
    /// Open read handles of pack files.
    readers: RwLock<HashMap<u32, Arc<fs::File>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

/// Removes sled snapshot files that were being written when a process died or the disk filled
/// up. sled 0.34 takes the newest `snap.*` file as its snapshot, unfinished ones included, and
/// then refuses to open ("Read corrupted data"); an unfinished one is never needed, because
/// sled renames a snapshot to its final name only once it is complete and synced.
fn remove_unfinished_snapshots(db: &Path) -> Result<(), StoreError> {
    let entries = match fs::read_dir(db) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list", db, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing an unfinished sled snapshot");
            fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))?;
        }
    }
    Ok(())
}

fn open_db(db: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    remove_unfinished_snapshots(db)?;
    sled::Config::new()
        .path(db)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(source) => io_err("open the index", db, source),
            other => StoreError::Untrusted {
                problem: IndexProblem::Damaged {
                    path: db.to_path_buf(),
                    reason: other.to_string(),
                },
            },
        })
}

/// Whether any block file exists under `files` (stops at the first).
fn any_file(files: &Path) -> bool {
    let Ok(shards) = fs::read_dir(files) else {
        return false;
    };
    shards.flatten().any(|shard| {
        fs::read_dir(shard.path())
            .map(|mut e| e.next().is_some())
            .unwrap_or(false)
    })
}

impl SledStore {
    /// Opens (creating if needed) a store in directory `dir`: sled in `dir/db`, block files in
    /// `dir/files`, pack files in `dir/packs`.
    ///
    /// Fails with [`StoreError::Untrusted`] when the index is damaged or missing while block
    /// files exist: [`SledStore::rebuild`] then rebuilds it. The caller must ensure no other
    /// process has the store open (a [`crate::Repo`] holds a lock).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let store = Self::open_unchecked(dir, opts)?;
        if store.blocks.get(FORMAT_KEY).map_err(db_err)?.is_none() {
            let has_entries = store.blocks.scan_prefix(b"i").next().is_some();
            let packs = pack::list_packs(&store.packs)?;
            let has_bytes = any_file(&store.files)
                || packs.iter().any(|(_, p)| {
                    fs::metadata(p)
                        .map(|m| m.len() > PACK_MAGIC.len() as u64)
                        .unwrap_or(false)
                });
            if !has_entries && has_bytes {
                let census = store.census(false)?;
                return Err(StoreError::Untrusted {
                    problem: IndexProblem::Missing {
                        path: dir.join("db"),
                        files: census.len(),
                    },
                });
            }
            // A new store, or one indexed by an older cairn (trusted as it is).
            store.blocks.insert(FORMAT_KEY, FORMAT).map_err(db_err)?;
            store.migrate_inline()?;
            store.db.flush().map_err(db_err)?;
        }
        Ok(store)
    }

    fn open_unchecked(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let files = dir.join("files");
        let packs = dir.join("packs");
        private_dir(dir)?;
        private_dir(&files)?;
        private_dir(&packs)?;
        let db = open_db(&dir.join("db"), opts.cache_bytes)?;
        let blocks = db.open_tree("blocks").map_err(db_err)?;
        let counters = blocks
            .get(STATS_KEY)
            .map_err(db_err)?
            .map(|v| Counters::decode(&v))
            .unwrap_or_default();
        let mut pack_sizes = HashMap::new();
        for (seq, path) in pack::list_packs(&packs)? {
            let len = fs::metadata(&path)
                .map_err(|e| io_err("stat", &path, e))?
                .len();
            pack_sizes.insert(seq, len);
        }
        Ok(SledStore {
            db,
            blocks,
            guard: Guard::new(dir.to_path_buf(), opts.reserve),
            dir: dir.to_path_buf(),
            files,
            packs,
            opts,
            write: Mutex::new(Writer {
                counters,
                pack: None,
                pack_sizes,
            }),
            readers: RwLock::default(),
        })
    }

    /// Rebuilds the index of the store in `dir` from its block files and pack files, verifying
    /// every block: the old database (if any) is moved aside, a new one is written, and the old
    /// one is removed once the new one is complete and flushed. Blocks whose bytes do not match
    /// their CID are moved to `dir/quarantine/`.
    pub fn rebuild(
        dir: &Path,
        opts: StoreOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<(SledStore, RebuildReport), StoreError> {
        let mut report = RebuildReport::default();
        let db_path = dir.join("db");
        let aside = dir.join(format!(
            "db.old-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ));
        if db_path.exists() {
            fs::rename(&db_path, &aside).map_err(|e| io_err("move aside", &db_path, e))?;
            report.old_index = Some(aside.display().to_string());
        }
        let store = Self::open_unchecked(dir, opts)?;
        let quarantine = dir.join("quarantine");
        let mut batch = sled::Batch::default();
        let mut counters = Counters::default();
        let mut seen = 0u64;

        // Packs, replayed in order: a tombstone deletes what came before it.
        let mut live: HashMap<Vec<u8>, (Entry, Cid)> = HashMap::new();
        for (seq, path) in pack::list_packs(&store.packs)? {
            report.packs += 1;
            let damage = pack::scan(
                &path,
                |rec: Record, data| {
                    let key = block_key(&rec.cid);
                    if rec.kind == KIND_TOMBSTONE {
                        if live.remove(&key).is_some() {
                            report.tombstoned += 1;
                        }
                        return Ok(());
                    }
                    seen += 1;
                    progress(seen);
                    let data = data.unwrap_or_default();
                    if crate::hash::verify(&rec.cid, data).is_err() {
                        report.corrupt.push(rec.cid.to_string());
                        return Ok(());
                    }
                    let entry = Entry {
                        size: u64::from(rec.data_len),
                        loc: Loc::Pack {
                            pack: seq,
                            offset: rec.data_offset,
                        },
                        codec: rec.cid.codec(),
                    };
                    live.insert(key, (entry, rec.cid));
                    Ok(())
                },
                true,
            )?;
            report.damaged_records += damage.damaged + u64::from(damage.torn_tail);
        }
        // Block files: named by multihash; the codec is guessed from the content (dag-pb if
        // it decodes as a UnixFS node, raw otherwise); lookups take it from the CID asked for.
        for (key, path) in store.file_paths()? {
            seen += 1;
            progress(seen);
            let data = Bytes::from(fs::read(&path).map_err(|e| io_err("read", &path, e))?);
            let Ok(mh) = multihash::Multihash::<64>::from_bytes(&key) else {
                continue;
            };
            let raw = Cid::new_v1(crate::hash::RAW, mh);
            if crate::hash::verify(&raw, &data).is_err() {
                report.corrupt.push(raw.to_string());
                private_dir(&quarantine)?;
                let to = quarantine.join(hex(&key));
                fs::rename(&path, &to).map_err(|e| io_err("quarantine", &path, e))?;
                continue;
            }
            let codec = if crate::pb::PbNode::decode(&data).is_ok_and(|n| {
                crate::unixfs::UnixFsData::decode(&n.data.unwrap_or_default()).is_ok()
            }) {
                crate::hash::DAG_PB
            } else {
                crate::hash::RAW
            };
            live.remove(&key);
            let entry = Entry {
                size: data.len() as u64,
                loc: Loc::File,
                codec,
            };
            report.file_blocks += 1;
            counters.file_bytes += entry.size;
            counters.blocks += 1;
            counters.bytes += entry.size;
            batch.insert(prefixed(b'i', &key), entry.encode());
        }
        for (key, (entry, _)) in live {
            report.pack_blocks += 1;
            counters.blocks += 1;
            counters.bytes += entry.size;
            batch.insert(prefixed(b'i', &key), entry.encode());
        }
        report.bytes = counters.bytes;
        batch.insert(STATS_KEY, &counters.encode()[..]);
        batch.insert(FORMAT_KEY, FORMAT);
        store.blocks.apply_batch(batch).map_err(db_err)?;
        store.flush()?;
        store.lock().counters = counters;
        if aside.exists() {
            fs::remove_dir_all(&aside).map_err(|e| io_err("remove", &aside, e))?;
        }
        Ok((store, report))
    }

    /// The sled database, for other trees of a repo.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// `Ok` if `incoming` bytes can be written while leaving the free-space reserve.
    pub fn check_space(&self, incoming: u64) -> Result<(), StoreError> {
        self.guard.check(incoming)
    }

    fn file_path(&self, key: &[u8]) -> PathBuf {
        let shard = key.last().copied().unwrap_or(0);
        self.files.join(hex(&[shard])).join(hex(key))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave the counters half-updated (they are
        // only assigned after the batch is applied), so a poisoned lock is still usable.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn entry(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        match self.blocks.get(prefixed(b'i', key)).map_err(db_err)? {
            Some(v) => Entry::decode(&v)
                .map(Some)
                .ok_or(StoreError::BadKey { len: key.len() }),
            None => Ok(None),
        }
    }

    /// Every stored block as (multihash key, index entry), without reading any block.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Entry), StoreError>> + Send + '_ {
        self.blocks.scan_prefix(b"i").map(|r| {
            let (k, v) = r.map_err(db_err)?;
            let entry = Entry::decode(&v).ok_or(StoreError::BadKey { len: k.len() })?;
            Ok((k[1..].to_vec(), entry))
        })
    }

    /// Rebuilds the CID (v1, stored codec) of an index entry.
    pub(crate) fn cid_of(key: &[u8], entry: &Entry) -> Result<Cid, StoreError> {
        let mh = multihash::Multihash::<64>::from_bytes(key)
            .map_err(|_| StoreError::BadKey { len: key.len() })?;
        Ok(Cid::new_v1(entry.codec, mh))
    }

    /// Every block file as (multihash key, path).
    fn file_paths(&self) -> Result<Vec<(Vec<u8>, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        let shards = fs::read_dir(&self.files).map_err(|e| io_err("list", &self.files, e))?;
        for shard in shards {
            let shard = shard.map_err(|e| io_err("list", &self.files, e))?.path();
            let Ok(entries) = fs::read_dir(&shard) else {
                continue;
            };
            for entry in entries {
                let path = entry.map_err(|e| io_err("list", &shard, e))?.path();
                if let Some(key) = path.file_name().and_then(|n| n.to_str()).and_then(unhex) {
                    out.push((key, path));
                }
            }
        }
        Ok(out)
    }

    /// The blocks on disk, found without the index: block files, and pack records replayed
    /// (tombstones applied). With `verify`, pack records whose bytes do not match are left out.
    pub(crate) fn census(&self, verify: bool) -> Result<Census, StoreError> {
        let mut census = Census::default();
        for (_, path) in pack::list_packs(&self.packs)? {
            let damage = pack::scan(
                &path,
                |rec, data| {
                    let key = block_key(&rec.cid);
                    if rec.kind == KIND_TOMBSTONE {
                        census.packed.remove(&key);
                    } else if data.is_none_or(|d| crate::hash::verify(&rec.cid, d).is_ok()) {
                        census.packed.insert(key, rec.cid);
                    }
                    Ok(())
                },
                verify,
            )?;
            census.damaged += damage.damaged;
        }
        census.files = self.file_paths()?.into_iter().map(|(k, _)| k).collect();
        Ok(census)
    }

    /// Appends `records` to the open pack (starting a new one when needed); returns the pack's
    /// sequence number and the offset at which the buffer starts.
    fn append_pack(&self, w: &mut Writer, buf: &[u8]) -> Result<(u32, u64), StoreError> {
        if w.pack
            .as_ref()
            .is_none_or(|p| p.len >= self.opts.pack_target)
        {
            let seq = w.pack_sizes.keys().max().map_or(1, |m| m + 1);
            let path = self.packs.join(pack::pack_name(seq));
            let mut file = fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_err("create", &path, e))?;
            file.write_all(PACK_MAGIC)
                .map_err(|e| io_err("write", &path, e))?;
            let len = PACK_MAGIC.len() as u64;
            w.pack_sizes.insert(seq, len);
            w.pack = Some(OpenPack { seq, file, len });
        }
        let Some(p) = w.pack.as_mut() else {
            return Err(StoreError::Internal("no open pack"));
        };
        let start = p.len;
        if let Err(e) = p.file.write_all(buf) {
            // Cut a torn append off, so the next record starts where the index expects.
            let _ = p.file.set_len(start);
            return Err(io_err("write", &self.packs.join(pack::pack_name(p.seq)), e));
        }
        p.len += buf.len() as u64;
        w.pack_sizes.insert(p.seq, p.len);
        Ok((p.seq, start))
    }

    fn pack_reader(&self, seq: u32) -> Result<Option<Arc<fs::File>>, StoreError> {
        if let Some(f) = self
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
        {
            return Ok(Some(f.clone()));
        }
        let path = self.packs.join(pack::pack_name(seq));
        let file = match fs::File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &path, e)),
        };
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, file.clone());
        Ok(Some(file))
    }

    fn write_file(&self, key: &[u8], data: &[u8]) -> Result<(), StoreError> {
        let path = self.file_path(key);
        let create = || {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
        };
        let mut f = match create() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    private_dir(parent)?;
                }
                create().map_err(|e| io_err("create", &path, e))?
            }
            Err(e) => return Err(io_err("create", &path, e)),
        };
        if let Err(e) = f.write_all(data) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(io_err("write", &path, e));
        }
        Ok(())
    }

    /// Moves blocks of the older layout (bytes inside sled) into a pack, once.
    fn migrate_inline(&self) -> Result<(), StoreError> {
        let mut moved: Vec<(Vec<u8>, Entry, sled::IVec)> = Vec::new();
        for r in self.blocks.scan_prefix(b"d") {
            let (k, v) = r.map_err(db_err)?;
            let key = k[1..].to_vec();
            if let Some(entry) = self.entry(&key)? {
                moved.push((key, entry, v));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let mut w = self.lock();
        for chunk in moved.chunks(4096) {
            let mut buf = Vec::new();
            let mut offsets = Vec::new();
            for (key, entry, data) in chunk {
                let cid = Self::cid_of(key, entry)?;
                let start = buf.len();
                let rel = pack::encode_record(&mut buf, KIND_BLOCK, &cid.to_bytes(), data);
                offsets.push((start + rel) as u64);
            }
            let (seq, base) = self.append_pack(&mut w, &buf)?;
            self.sync_files()?;
            let mut batch = sled::Batch::default();
            for ((key, entry, _), off) in chunk.iter().zip(offsets) {
                batch.insert(prefixed(b'i', key), entry.in_pack(seq, base + off).encode());
                batch.remove(prefixed(b'd', key));
            }
            self.blocks.apply_batch(batch).map_err(db_err)?;
        }
        tracing::info!(
            blocks = moved.len(),
            "moved small blocks from the index into pack files"
        );
        Ok(())
    }

    /// Deletes the blocks under `keys` in one batch; returns (blocks, bytes) removed.
    /// `keep` is asked, under the write lock, whether a key must be kept after all.
    pub(crate) fn delete_keys(
        &self,
        keys: &[Vec<u8>],
        mut keep: impl FnMut(&[u8]) -> bool,
        removed: &mut Vec<(Vec<u8>, Entry)>,
    ) -> Result<(), StoreError> {
        let mut w = self.lock();
        let mut next = w.counters;
        let mut batch = sled::Batch::default();
        let mut files = Vec::new();
        let mut tombstones = Vec::new();
        let start = removed.len();
        for key in keys {
            if keep(key) {
                continue;
            }
            let Some(entry) = self.entry(key)? else {
                continue;
            };
            batch.remove(prefixed(b'i', key));
            match entry.loc {
                Loc::File => {
                    files.push(self.file_path(key));
                    next.file_bytes = next.file_bytes.saturating_sub(entry.size);
                }
                Loc::Inline => batch.remove(prefixed(b'd', key)),
                Loc::Pack { .. } => {
                    let cid = Self::cid_of(key, &entry)?;
                    pack::encode_record(&mut tombstones, KIND_TOMBSTONE, &cid.to_bytes(), &[]);
                }
            }
            next.blocks = next.blocks.saturating_sub(1);
            next.bytes = next.bytes.saturating_sub(entry.size);
            removed.push((key.clone(), entry));
        }
        if removed.len() == start {
            return Ok(());
        }
        if !tombstones.is_empty() {
            // Tombstones before the index forgets the blocks: a repair replaying the packs
            // must not bring them back.
            self.append_pack(&mut w, &tombstones)?;
            crash_point("tombstoned");
        }
        batch.insert(STATS_KEY, &next.encode()[..]);
        self.blocks.apply_batch(batch).map_err(db_err)?;
        w.counters = next;
        if !files.is_empty() {
            // The removal must be durable before the files go: otherwise a crash could bring
            // back index entries whose files are gone (sled buffers writes in memory).
            self.db.flush().map_err(db_err)?;
            crash_point("unindexed");
        }
        for path in files {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path, e)),
            }
        }
        Ok(())
    }

    /// Removes block files that no index entry points at (left by a process killed between
    /// writing a file and indexing it, or between unindexing and unlinking). Returns
    /// (files, bytes) removed. Each file is checked under the writer lock, so a concurrent
    /// `put_many` (which writes and indexes under that lock) is never disturbed.
    pub fn remove_orphan_files(&self) -> Result<(u64, u64), StoreError> {
        let mut removed = (0u64, 0u64);
        for (key, path) in self.file_paths()? {
            let _w = self.lock();
            if self.entry(&key)?.is_some_and(|e| e.loc == Loc::File) {
                continue;
            }
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed.0 += 1;
                    removed.1 += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path, e)),
            }
        }
        Ok(removed)
    }

    /// Rewrites pack files that are mostly dead (deleted or never-indexed records): their live
    /// blocks are appended to the open pack, the index is pointed at the copies and made
    /// durable, then the old pack is removed. Tombstones of blocks that are not indexed are
    /// carried over, so that older packs' records stay dead for a repair. Returns
    /// (packs rewritten, bytes reclaimed).
    pub(crate) fn compact_packs(&self) -> Result<(u64, u64), StoreError> {
        let mut live: HashMap<u32, u64> = HashMap::new();
        for e in self.entries() {
            let (_, entry) = e?;
            if let Loc::Pack { pack, .. } = entry.loc {
                *live.entry(pack).or_default() += entry.size + 64;
            }
        }
        let mut w = self.lock();
        let current = w.pack.as_ref().map(|p| p.seq);
        let mut victims: Vec<(u32, u64)> = w
            .pack_sizes
            .iter()
            .filter(|(seq, len)| {
                Some(**seq) != current
                    && **len > PACK_MAGIC.len() as u64
                    && live.get(seq).copied().unwrap_or(0) * 2 < **len
            })
            .map(|(s, l)| (*s, *l))
            .collect();
        victims.sort();
        let mut reclaimed = (0u64, 0u64);
        for (seq, len) in victims {
            let path = self.packs.join(pack::pack_name(seq));
            let mut buf = Vec::new();
            let mut moves: Vec<(Vec<u8>, Entry, u64)> = Vec::new();
            pack::scan(
                &path,
                |rec, data| {
                    let key = block_key(&rec.cid);
                    let entry = self.entry(&key)?;
                    if rec.kind == KIND_TOMBSTONE {
                        if entry.is_none() {
                            pack::encode_record(&mut buf, KIND_TOMBSTONE, &rec.cid.to_bytes(), &[]);
                        }
                        return Ok(());
                    }
                    let here = Loc::Pack {
                        pack: seq,
                        offset: rec.data_offset,
                    };
                    if let Some(entry) = entry.filter(|e| e.loc == here) {
                        let start = buf.len();
                        let rel = pack::encode_record(
                            &mut buf,
                            KIND_BLOCK,
                            &rec.cid.to_bytes(),
                            data.unwrap_or_default(),
                        );
                        moves.push((key, entry, (start + rel) as u64));
                    }
                    Ok(())
                },
                true,
            )?;
            let mut batch = sled::Batch::default();
            if !buf.is_empty() {
                let (new_seq, base) = self.append_pack(&mut w, &buf)?;
                crash_point("compact-copied");
                for (key, entry, off) in &moves {
                    batch.insert(
                        prefixed(b'i', key),
                        entry.in_pack(new_seq, base + off).encode(),
                    );
                }
            }
            self.blocks.apply_batch(batch).map_err(db_err)?;
            // Copies and index durable before the old pack goes.
            self.sync_files()?;
            self.db.flush().map_err(db_err)?;
            crash_point("compact-indexed");
            fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))?;
            w.pack_sizes.remove(&seq);
            self.readers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seq);
            reclaimed.0 += 1;
            reclaimed.1 += len.saturating_sub(buf.len() as u64);
        }
        Ok(reclaimed)
    }

    /// Stores a block's bytes without checking them (tests use it to plant corruption).
    #[doc(hidden)]
    pub fn put_unchecked_for_tests(&self, cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
        let key = block_key(cid);
        let _ = self.delete(cid)?;
        self.put(&Block::trusted(*cid, Bytes::copy_from_slice(data)))
            .map(|_| ())?;
        debug_assert!(self.entry(&key)?.is_some());
        Ok(())
    }

    /// Stores blocks in one sled batch; returns how many were new.
    pub fn put_counted(&self, blocks: &[Block]) -> Result<usize, StoreError> {
        let mut w = self.lock();
        let mut fresh: Vec<(&Block, Vec<u8>)> = Vec::new();
        let mut in_batch: HashSet<Vec<u8>> = HashSet::new();
        let mut incoming = 0u64;
        for b in blocks {
            if b.cid().hash().code() == IDENTITY {
                continue;
            }
            let key = block_key(b.cid());
            if in_batch.contains(&key)
                || self
                    .blocks
                    .contains_key(prefixed(b'i', &key))
                    .map_err(db_err)?
            {
                continue;
            }
            incoming += b.data().len() as u64 + 128;
            in_batch.insert(key.clone());
            fresh.push((b, key));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        self.guard.check(incoming)?;
        let mut next = w.counters;
        let mut batch = sled::Batch::default();
        let mut packed = Vec::new();
        let mut records = Vec::new();
        for (b, key) in &fresh {
            let data = b.data();
            let entry = Entry {
                size: data.len() as u64,
                loc: Loc::File,
                codec: b.cid().codec(),
            };
            if data.len() > self.opts.inline_max {
                self.write_file(key, data)?;
                crash_point("file-written");
                next.file_bytes += entry.size;
                batch.insert(prefixed(b'i', key), entry.encode());
            } else {
                let start = records.len();
                let rel = pack::encode_record(&mut records, KIND_BLOCK, &b.cid().to_bytes(), data);
                packed.push((key, entry, (start + rel) as u64));
            }
            next.blocks += 1;
            next.bytes += entry.size;
        }
        if !records.is_empty() {
            let (seq, base) = self.append_pack(&mut w, &records)?;
            crash_point("pack-appended");
            for (key, entry, offset) in packed {
                batch.insert(
                    prefixed(b'i', key),
                    entry.in_pack(seq, base + offset).encode(),
                );
            }
        }
        batch.insert(STATS_KEY, &next.encode()[..]);
        self.blocks.apply_batch(batch).map_err(db_err)?;
        crash_point("indexed");
        w.counters = next;
        Ok(fresh.len())
    }

    fn sync_files(&self) -> Result<(), StoreError> {
        let dir = fs::File::open(&self.dir).map_err(|e| io_err("open", &self.dir, e))?;
        syncfs(&dir).map_err(|e| io_err("sync", &self.dir, e))
    }

    /// Tightens permissions of what sled created (its files get the process umask): the store
    /// is private to the repo's owner.
    pub(crate) fn make_private(&self) {
        let db = self.dir.join("db");
        let Ok(entries) = fs::read_dir(&db) else {
            return;
        };
        let _ = fs::set_permissions(&db, fs::Permissions::from_mode(0o700));
        for e in entries.flatten() {
            let mode = if e.path().is_dir() { 0o700 } else { 0o600 };
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(mode));
        }
    }

    fn read_at(&self, cid: &Cid, key: &[u8], entry: Entry) -> Result<Option<Bytes>, StoreError> {
        match entry.loc {
            Loc::Inline => match self.blocks.get(prefixed(b'd', key)).map_err(db_err)? {
                Some(v) => Ok(Some(Bytes::from_owner(v))),
                None => Err(StoreError::Corrupt { cid: *cid }),
            },
            Loc::Pack { pack, offset } => {
                let Some(file) = self.pack_reader(pack)? else {
                    return Err(StoreError::Corrupt { cid: *cid });
                };
                let len =
                    usize::try_from(entry.size).map_err(|_| StoreError::Corrupt { cid: *cid })?;
                let mut buf = vec![0u8; len];
                match file.read_exact_at(&mut buf, offset) {
                    Ok(()) => Ok(Some(Bytes::from(buf))),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        Err(StoreError::Corrupt { cid: *cid })
                    }
                    Err(e) => Err(io_err("read", &self.packs.join(pack::pack_name(pack)), e)),
                }
            }
            Loc::File => {
                let path = self.file_path(key);
                match fs::read(&path) {
                    Ok(v) => Ok(Some(Bytes::from(v))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("read", &path, e)),
                }
            }
        }
    }
}

/// Flushes every dirty file of the filesystem holding `f` (one syscall instead of an fsync per
/// block file).
#[allow(unsafe_code)]
fn syncfs(f: &fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `syncfs` only reads the descriptor, which `f` keeps open for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Blockstore for SledStore {
    fn put(&self, block: &Block) -> Result<bool, StoreError> {
        Ok(self.put_counted(std::slice::from_ref(block))? > 0)
    }

    fn put_many(&self, blocks: &[Block]) -> Result<(), StoreError> {
        self.put_counted(blocks).map(|_| ())
    }

    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        if cid.hash().code() == IDENTITY {
            return Ok(Some(Bytes::copy_from_slice(cid.hash().digest())));
        }
        let key = block_key(cid);
        let mut entry = self.entry(&key)?;
        // A compaction or GC may move or delete the bytes between the lookup and the read:
        // look again, and only call it corruption if the index still names the same place.
        for _ in 0..3 {
            let Some(e) = entry else {
                return Ok(None);
            };
            match self.read_at(cid, &key, e) {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) | Err(StoreError::Corrupt { .. }) => {
                    let again = self.entry(&key)?;
                    if again == Some(e) {
                        return Err(StoreError::Corrupt { cid: *cid });
                    }
                    entry = again;
                }
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Corrupt { cid: *cid })
    }

    fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        match self.get(cid)? {
            Some(data) if cid.hash().code() == IDENTITY => Ok(Some(data)),
            Some(data) => {
                crate::hash::verify(cid, &data).map_err(|_| StoreError::Corrupt { cid: *cid })?;
                Ok(Some(data))
            }
            None => Ok(None),
        }
    }

    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        if cid.hash().code() == IDENTITY {
            return Ok(true);
        }
        self.blocks
            .contains_key(prefixed(b'i', &block_key(cid)))
            .map_err(db_err)
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        if cid.hash().code() == IDENTITY {
            return Ok(Some(cid.hash().digest().len() as u64));
        }
        Ok(self.entry(&block_key(cid))?.map(|e| e.size))
    }

    fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        let mut removed = Vec::new();
        self.delete_keys(&[block_key(cid)], |_| false, &mut removed)?;
        Ok(!removed.is_empty())
    }

    fn cids(&self) -> Box<dyn Iterator<Item = Result<Cid, StoreError>> + Send + '_> {
        Box::new(
            self.entries()
                .map(|r| r.and_then(|(k, e)| SledStore::cid_of(&k, &e))),
        )
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let (c, packs) = {
            let w = self.lock();
            (w.counters, w.pack_sizes.values().sum::<u64>())
        };
        let sled_bytes = self.db.size_on_disk().map_err(db_err)?;
        Ok(StoreStats {
            blocks: c.blocks,
            bytes: c.bytes,
            disk_bytes: sled_bytes + c.file_bytes + packs,
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Files first: once sled's index is durable, the bytes it points at must be too.
        self.sync_files()?;
        self.db.flush().map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashAlg, DAG_PB, RAW};

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(
            dir.path(),
            StoreOptions {
                inline_max: 8,
                ..Default::default()
            },
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn v0_and_v1_share_a_block() {
        let (_d, s) = store();
        let data = Bytes::from_static(b"\x0a\x02\x08\x01");
        let v0 = Block::encode(0, DAG_PB, HashAlg::Sha2_256, data.clone());
        assert!(s.put(&v0).unwrap());
        let v1 = Cid::new_v1(DAG_PB, *v0.cid().hash());
        assert!(s.has(&v1).unwrap());
        assert_eq!(s.get_verified(&v1).unwrap(), Some(data));
        assert!(!s.put(&Block::trusted(v1, v0.data().clone())).unwrap());
        assert_eq!(s.stats().unwrap().blocks, 1);
        assert_eq!(s.cids().next().unwrap().unwrap(), v1);
    }

    #[test]
    fn counters_survive_reopen_and_track_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            inline_max: 8,
            ..Default::default()
        };
        let blocks: Vec<Block> = (0..20u8)
            .map(|i| {
                Block::encode(
                    1,
                    RAW,
                    HashAlg::Sha2_256,
                    Bytes::from(vec![i; usize::from(i)]),
                )
            })
            .collect();
        {
            let s = SledStore::open(dir.path(), opts).unwrap();
            s.put_many(&blocks).unwrap();
            s.put_many(&blocks).unwrap();
            assert!(s.delete(blocks[19].cid()).unwrap());
            assert!(!s.delete(blocks[19].cid()).unwrap());
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path(), opts).unwrap();
        let st = s.stats().unwrap();
        assert_eq!(st.blocks, 19);
        assert_eq!(st.bytes, (0..19u64).sum::<u64>());
        assert_eq!(s.get(blocks[12].cid()).unwrap().unwrap(), blocks[12].data());
        assert_eq!(s.get(blocks[19].cid()).unwrap(), None);
    }

    #[test]
    fn missing_file_is_reported_as_corruption_of_that_cid() {
        let (_d, s) = store();
        let b = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![7u8; 100]));
        s.put(&b).unwrap();
        fs::remove_file(s.file_path(&block_key(b.cid()))).unwrap();
        match s.get(b.cid()) {
            Err(StoreError::Corrupt { cid }) => assert_eq!(cid, *b.cid()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn orphan_files_are_removed_and_indexed_ones_kept() {
        let (_d, s) = store();
        let kept = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![1u8; 100]));
        let orphan = Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![2u8; 100]));
        s.put_many(&[kept.clone(), orphan.clone()]).unwrap();
        // Unindex `orphan` behind the store's back, as a crash between the steps would.
        s.blocks
            .remove(prefixed(b'i', &block_key(orphan.cid())))
            .unwrap();
        assert_eq!(s.remove_orphan_files().unwrap(), (1, 100));
        assert!(!s.file_path(&block_key(orphan.cid())).exists());
        assert_eq!(s.get_verified(kept.cid()).unwrap().unwrap(), kept.data());
        assert_eq!(unhex(&hex(&[0, 0xab, 0xff])).unwrap(), vec![0, 0xab, 0xff]);
    }

    #[test]
    fn identity_cids_are_always_present() {
        let (_d, s) = store();
        let mh = multihash::Multihash::<64>::wrap(IDENTITY, b"hi").unwrap();
        let cid = Cid::new_v1(RAW, mh);
        assert!(s.has(&cid).unwrap());
        assert_eq!(s.get_verified(&cid).unwrap().unwrap(), &b"hi"[..]);
    }

    fn small_blocks(n: u8) -> Vec<Block> {
        (0..n)
            .map(|i| {
                Block::encode(
                    1,
                    RAW,
                    HashAlg::Sha2_256,
                    Bytes::from(vec![i; 40 + usize::from(i)]),
                )
            })
            .collect()
    }

    #[test]
    fn lost_index_is_detected_and_rebuilt_from_packs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            inline_max: 100,
            ..Default::default()
        };
        let blocks = small_blocks(150);
        {
            let s = SledStore::open(dir.path(), opts).unwrap();
            s.put_many(&blocks).unwrap();
            // Deleted blocks stay deleted after a rebuild (tombstones), from packs and files.
            assert!(s.delete(blocks[3].cid()).unwrap());
            assert!(s.delete(blocks[120].cid()).unwrap());
            s.flush().unwrap();
        }
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        match SledStore::open(dir.path(), opts) {
            Err(e @ StoreError::Untrusted { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("missing or empty"), "{msg}");
                assert!(msg.contains("148 block files"), "{msg}");
                assert!(msg.contains("cairn repo repair"), "{msg}");
            }
            other => panic!("lost index not detected: {other:?}"),
        }
        let (s, report) = SledStore::rebuild(dir.path(), opts, |_| {}).unwrap();
        assert_eq!(report.pack_blocks + report.file_blocks, 148, "{report:?}");
        assert!(
            report.file_blocks > 0 && report.pack_blocks > 0,
            "{report:?}"
        );
        assert_eq!(report.tombstoned, 1);
        assert!(report.corrupt.is_empty());
        for (i, b) in blocks.iter().enumerate() {
            let got = s.get_verified(b.cid()).unwrap();
            if i == 3 || i == 120 {
                assert_eq!(got, None);
            } else {
                assert_eq!(got.as_ref(), Some(b.data()), "block {i}");
            }
        }
        assert_eq!(s.stats().unwrap().blocks, 148);
        drop(s);
        // And the rebuilt index opens normally.
        assert_eq!(
            SledStore::open(dir.path(), opts)
                .unwrap()
                .stats()
                .unwrap()
                .blocks,
            148
        );
    }

    #[test]
    fn damaged_index_database_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = small_blocks(20);
        {
            let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
            s.put_many(&blocks).unwrap();
            s.flush().unwrap();
        }
        // Flip bytes all over sled's log and snapshot.
        for e in fs::read_dir(dir.path().join("db")).unwrap().flatten() {
            if e.path().is_file() {
                let mut b = fs::read(e.path()).unwrap();
                for i in (0..b.len()).step_by(97) {
                    b[i] ^= 0x5a;
                }
                fs::write(e.path(), b).unwrap();
            }
        }
        if let Err(e) = SledStore::open(dir.path(), StoreOptions::default()) {
            assert!(e.to_string().contains("cairn repo repair"), "{e}");
        }
        let (s, report) = SledStore::rebuild(dir.path(), StoreOptions::default(), |_| {}).unwrap();
        assert_eq!(report.pack_blocks, 20);
        for b in &blocks {
            assert_eq!(s.get_verified(b.cid()).unwrap().as_ref(), Some(b.data()));
        }
    }

    #[test]
    fn compaction_keeps_live_blocks_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            inline_max: 1 << 20,
            ..Default::default()
        };
        let s = SledStore::open(dir.path(), opts).unwrap();
        // Two packs: force a rotation by filling the first one past its target.
        let big: Vec<Block> = (0..70u8)
            .map(|i| Block::encode(1, RAW, HashAlg::Sha2_256, Bytes::from(vec![i; 1 << 20])))
            .collect();
        s.put_many(&big).unwrap();
        let small = small_blocks(10);
        s.put_many(&small).unwrap();
        for b in &big[..60] {
            assert!(s.delete(b.cid()).unwrap());
        }
        let (packs, reclaimed) = s.compact_packs().unwrap();
        assert_eq!(packs, 1);
        assert!(reclaimed > 50 << 20, "{reclaimed}");
        for b in big[60..].iter().chain(&small) {
            assert_eq!(s.get_verified(b.cid()).unwrap().as_ref(), Some(b.data()));
        }
        s.flush().unwrap();
        drop(s);
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let (s, report) = SledStore::rebuild(dir.path(), opts, |_| {}).unwrap();
        assert_eq!(report.pack_blocks, 20, "{report:?}");
        for b in &big[..60] {
            assert_eq!(s.get(b.cid()).unwrap(), None);
        }
    }

    #[test]
    fn unfinished_sled_snapshots_do_not_break_opening() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = small_blocks(5);
        {
            let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
            s.put_many(&blocks).unwrap();
            s.flush().unwrap();
        }
        // What a full disk left behind: an empty snapshot being generated.
        fs::write(
            dir.path()
                .join("db")
                .join("snap.FFFFFFFFFFFFFFFF.generating"),
            b"",
        )
        .unwrap();
        let s = SledStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            s.get_verified(blocks[4].cid()).unwrap().as_ref(),
            Some(blocks[4].data())
        );
    }
}
