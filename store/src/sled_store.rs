//! [`SledStore`]: the on-disk blockstore — a sled index plus flat files for large blocks.
//!
//! Blocks are keyed by their **multihash** alone (as Kubo does), so a CIDv0 and a CIDv1-dag-pb
//! of the same bytes, or a raw and a dag-pb CID of the same bytes, are one stored block. The
//! codec of the first CID a block was stored under is kept in its index entry and is what
//! [`Blockstore::cids`] reports (always as CIDv1); lookups take the codec from the CID asked for.
//!
//! Blocks up to [`StoreOptions::inline_max`] bytes live inside sled; larger ones are plain files
//! under `files/`, because sled 0.34 rewrites large values when it consolidates pages and
//! measured 1.6–2.8× disk space for 256 KiB values (see `docs/DESIGN.md`). The sled tree
//! `blocks` holds, with one-byte prefixes:
//!
//! | key                  | value                                                       |
//! |----------------------|-------------------------------------------------------------|
//! | `i` ++ multihash     | index entry: size (u64 LE), location (0 inline, 1 file), codec (uvarint) |
//! | `d` ++ multihash     | the bytes of an inline block                                |
//! | `m:stats`            | blocks (u64 LE), bytes (u64 LE), file bytes (u64 LE)         |
//!
//! A file block lives at `files/<last digest byte, 2 hex>/<multihash hex>`. It is written (by
//! `write(2)`) before the sled batch that indexes it, and its index entry is removed (and sled
//! flushed) before the file is unlinked, so a killed process leaves at worst an unindexed file
//! (GC removes those), never an index entry without its bytes. [`Blockstore::flush`] makes the files durable (`syncfs`) before sled.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use crate::block::Block;
use crate::blockstore::{Blockstore, StoreError, StoreStats};
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
const INLINE: u8 = 0;
const FILE: u8 = 1;

/// Tuning of a [`SledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    /// Blocks larger than this are stored as files, not in sled.
    pub inline_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            inline_max: 16 * 1024,
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

/// An index entry: where a block is and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: u64,
    pub in_file: bool,
    pub codec: u64,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.push(if self.in_file { FILE } else { INLINE });
        varint::put_uvarint(&mut v, self.codec);
        v
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let size = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let in_file = match *b.get(8)? {
            INLINE => false,
            FILE => true,
            _ => return None,
        };
        let (codec, _) = varint::read_uvarint(b.get(9..)?)?;
        Some(Entry {
            size,
            in_file,
            codec,
        })
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
    StoreError::Db(e.to_string())
}

fn io_err(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Db(format!("{what} {}: {e}", path.display()))
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

/// The sled-backed blockstore. Cheap to share behind an `Arc`; all writes go through one
/// mutex so that the counters stay exact.
pub struct SledStore {
    db: sled::Db,
    blocks: sled::Tree,
    files: PathBuf,
    opts: StoreOptions,
    /// Serialises writers; guards the counters and the file directory.
    write: Mutex<Counters>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("files", &self.files)
            .field("opts", &self.opts)
            .finish()
    }
}

impl SledStore {
    /// Opens (creating if needed) a store in directory `dir`: sled in `dir/db`, files in `dir/files`.
    ///
    /// The caller must ensure no other process has it open (a [`crate::Repo`] holds a lock).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let files = dir.join("files");
        fs::create_dir_all(&files).map_err(|e| io_err("cannot create", &files, e))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(opts.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(db_err)?;
        Self::from_db(db, files, opts)
    }

    /// A store in a temporary directory that disappears when dropped (for tests).
    pub fn temporary(dir: &Path) -> Result<Self, StoreError> {
        let files = dir.join("files");
        fs::create_dir_all(&files).map_err(|e| io_err("cannot create", &files, e))?;
        let db = sled::Config::new().temporary(true).open().map_err(db_err)?;
        Self::from_db(db, files, StoreOptions::default())
    }

    fn from_db(db: sled::Db, files: PathBuf, opts: StoreOptions) -> Result<Self, StoreError> {
        let blocks = db.open_tree("blocks").map_err(db_err)?;
        let counters = blocks
            .get(STATS_KEY)
            .map_err(db_err)?
            .map(|v| Counters::decode(&v))
            .unwrap_or_default();
        Ok(SledStore {
            db,
            blocks,
            files,
            opts,
            write: Mutex::new(counters),
        })
    }

    /// The sled database, for the other trees of a repo (pins, roots).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    fn file_path(&self, key: &[u8]) -> PathBuf {
        let shard = key.last().copied().unwrap_or(0);
        self.files.join(hex(&[shard])).join(hex(key))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
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

    fn write_file(&self, key: &[u8], data: &[u8]) -> Result<(), StoreError> {
        let path = self.file_path(key);
        let mut f = match fs::File::create(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))?;
                }
                fs::File::create(&path).map_err(|e| io_err("cannot create", &path, e))?
            }
            Err(e) => return Err(io_err("cannot create", &path, e)),
        };
        f.write_all(data)
            .map_err(|e| io_err("cannot write", &path, e))
    }

    /// Deletes the blocks under `keys` in one batch; returns (blocks, bytes) removed.
    /// `keep` is asked, under the write lock, whether a key must be kept after all.
    pub(crate) fn delete_keys(
        &self,
        keys: &[Vec<u8>],
        mut keep: impl FnMut(&[u8]) -> bool,
        removed: &mut Vec<(Vec<u8>, Entry)>,
    ) -> Result<(), StoreError> {
        let mut counters = self.lock();
        let mut next = *counters;
        let mut batch = sled::Batch::default();
        let mut files = Vec::new();
        let start = removed.len();
        for key in keys {
            if keep(key) {
                continue;
            }
            let Some(entry) = self.entry(key)? else {
                continue;
            };
            batch.remove(prefixed(b'i', key));
            if entry.in_file {
                files.push(self.file_path(key));
                next.file_bytes = next.file_bytes.saturating_sub(entry.size);
            } else {
                batch.remove(prefixed(b'd', key));
            }
            next.blocks = next.blocks.saturating_sub(1);
            next.bytes = next.bytes.saturating_sub(entry.size);
            removed.push((key.clone(), entry));
        }
        if removed.len() == start {
            return Ok(());
        }
        batch.insert(STATS_KEY, &next.encode()[..]);
        self.blocks.apply_batch(batch).map_err(db_err)?;
        *counters = next;
        if !files.is_empty() {
            // The removal must be durable before the files go: otherwise a crash could bring
            // back index entries whose files are gone (sled buffers writes in memory).
            self.db.flush().map_err(db_err)?;
        }
        for path in files {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &path, e)),
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
        let shards =
            fs::read_dir(&self.files).map_err(|e| io_err("cannot list", &self.files, e))?;
        for shard in shards {
            let shard = shard
                .map_err(|e| io_err("cannot list", &self.files, e))?
                .path();
            let Ok(entries) = fs::read_dir(&shard) else {
                continue;
            };
            for entry in entries {
                let path = entry.map_err(|e| io_err("cannot list", &shard, e))?.path();
                let Some(key) = path.file_name().and_then(|n| n.to_str()).and_then(unhex) else {
                    continue;
                };
                let _w = self.lock();
                if self.entry(&key)?.is_some_and(|e| e.in_file) {
                    continue;
                }
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        removed.0 += 1;
                        removed.1 += len;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("cannot remove", &path, e)),
                }
            }
        }
        Ok(removed)
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
        let mut counters = self.lock();
        let mut next = *counters;
        let mut batch = sled::Batch::default();
        let mut in_batch: HashSet<Vec<u8>> = HashSet::new();
        for b in blocks {
            if b.cid().hash().code() == IDENTITY {
                continue;
            }
            let key = block_key(b.cid());
            let ikey = prefixed(b'i', &key);
            if in_batch.contains(&key) || self.blocks.contains_key(&ikey).map_err(db_err)? {
                continue;
            }
            let data = b.data();
            let in_file = data.len() > self.opts.inline_max;
            if in_file {
                self.write_file(&key, data)?;
                next.file_bytes += data.len() as u64;
            } else {
                batch.insert(prefixed(b'd', &key), &data[..]);
            }
            let entry = Entry {
                size: data.len() as u64,
                in_file,
                codec: b.cid().codec(),
            };
            batch.insert(ikey, entry.encode());
            next.blocks += 1;
            next.bytes += data.len() as u64;
            in_batch.insert(key);
        }
        if in_batch.is_empty() {
            return Ok(0);
        }
        batch.insert(STATS_KEY, &next.encode()[..]);
        self.blocks.apply_batch(batch).map_err(db_err)?;
        *counters = next;
        Ok(in_batch.len())
    }

    fn sync_files(&self) -> Result<(), StoreError> {
        let dir = fs::File::open(&self.files).map_err(|e| io_err("cannot open", &self.files, e))?;
        syncfs(&dir).map_err(|e| io_err("cannot sync", &self.files, e))
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
        let Some(entry) = self.entry(&key)? else {
            return Ok(None);
        };
        if !entry.in_file {
            return match self.blocks.get(prefixed(b'd', &key)).map_err(db_err)? {
                Some(v) => Ok(Some(Bytes::from_owner(v))),
                None => Err(StoreError::Corrupt { cid: *cid }),
            };
        }
        let path = self.file_path(&key);
        match fs::read(&path) {
            Ok(v) => Ok(Some(Bytes::from(v))),
            // Deleted between the index lookup and the read (GC): absent. Otherwise the
            // index names a block whose bytes are gone, which is corruption.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.entry(&key)?.is_some() {
                    Err(StoreError::Corrupt { cid: *cid })
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(io_err("cannot read", &path, e)),
        }
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
        let c = *self.lock();
        let sled_bytes = self.db.size_on_disk().map_err(db_err)?;
        Ok(StoreStats {
            blocks: c.blocks,
            bytes: c.bytes,
            disk_bytes: sled_bytes + c.file_bytes,
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
}
